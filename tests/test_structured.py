"""Channel groups, group soft-thresholding and channel removal (compression.structured)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from minitorch_compress.autograd import no_grad
from minitorch_compress.autograd.tensor import Tensor
from minitorch_compress.compression.structured import (
    GroupLassoHook,
    at_least_one,
    block_group_norms,
    group_soft_threshold,
    group_soft_threshold_factors,
    group_tensors,
    l1_filter_keep,
    resnet20_macs,
    shrink,
    surviving_channels,
)
from minitorch_compress.models.resnet import ResNet20


def _trained_like(seed: int = 0) -> ResNet20:
    """A ResNet-20 with non-trivial batch-norm statistics and affine parameters."""
    rng = np.random.default_rng(seed)
    model = ResNet20(rng=rng)
    for name, value in model.state_dict().items():
        if name.endswith(("running_var",)):
            value[...] = rng.uniform(0.5, 2.0, value.shape)
        elif name.endswith(("running_mean", "1.weight", "1.bias")) and value.ndim == 1:
            value[...] = rng.normal(0.0, 0.5, value.shape)
    return model.eval()


def _logits(model: ResNet20, x: np.ndarray) -> np.ndarray:
    with no_grad():
        return model(Tensor(x)).data


@settings(max_examples=60, deadline=None)
@given(arrays(np.float64, st.integers(1, 12), elements=st.floats(0, 10)),
       st.floats(0, 5))
def test_group_soft_threshold_is_the_prox_of_the_group_norm(norms, threshold):
    factors = group_soft_threshold_factors(norms, threshold)
    assert np.all((factors >= 0) & (factors <= 1))
    assert np.all(factors[norms <= threshold] == 0)  # small groups vanish exactly
    kept = norms > threshold
    # the others keep their direction and lose exactly t of their norm
    np.testing.assert_allclose(norms[kept] * factors[kept], norms[kept] - threshold,
                               rtol=1e-12, atol=1e-12)


def test_thresholding_zeroes_whole_groups_and_only_them():
    model = _trained_like()
    block = model.body_op[4]
    norms = block_group_norms(block)
    threshold = float(np.median(norms))
    group_soft_threshold(model, threshold)
    after = block_group_norms(block)
    w1, gamma, beta, w2 = group_tensors(block)
    for k in range(norms.size):
        parts = [w1[k], gamma[k:k + 1], beta[k:k + 1], w2[:, k]]
        if norms[k] <= threshold:
            assert all(not np.any(p) for p in parts), k
        else:
            assert after[k] == pytest.approx(norms[k] - threshold, rel=1e-5)


def test_removing_zero_groups_changes_no_output_and_makes_the_model_smaller():
    model = _trained_like()
    norms = [block_group_norms(b) for b in model.body_op]
    group_soft_threshold(model, float(np.quantile(np.concatenate(norms), 0.6)))
    keep = at_least_one(surviving_channels(model), model)
    small = shrink(model, keep)
    assert small.mid_channels == tuple(len(k) for k in keep)
    assert sum(small.mid_channels) < sum(model.mid_channels)
    x = np.random.default_rng(1).normal(size=(4, 3, 32, 32)).astype(np.float32)
    np.testing.assert_allclose(_logits(small, x), _logits(model, x), rtol=1e-4, atol=1e-4)
    assert resnet20_macs(small.mid_channels) < resnet20_macs()


def test_a_shrunk_model_round_trips_through_the_model_file(tmp_path):
    from minitorch_compress.io import mtc

    model = _trained_like()
    small = shrink(model, [list(range(0, m, 2)) for m in model.mid_channels]).eval()
    mtc.save(tmp_path / "small.mtc", small)
    loaded = mtc.load_model(tmp_path / "small.mtc")
    assert loaded.mid_channels == small.mid_channels
    x = np.random.default_rng(2).normal(size=(2, 3, 32, 32)).astype(np.float32)
    np.testing.assert_array_equal(_logits(loaded, x), _logits(small, x))


def test_the_l1_baseline_keeps_the_largest_filters():
    model = _trained_like()
    block = model.body_op[0]
    w1 = group_tensors(block)[0]
    w1[...] = 0.01
    w1[3] = 1.0
    w1[7] = 0.5
    keep = l1_filter_keep(model, [2] + [4] * 8)
    assert keep[0] == [3, 7] and all(len(k) == 4 for k in keep[1:])


def test_resnet20_macs_counts_every_conv_and_the_fc():
    head = 32 * 32 * 3 * 16 * 9
    stage1 = 6 * 32 * 32 * 16 * 16 * 9
    stage2 = 16 * 16 * (16 * 32 * 9 + 5 * 32 * 32 * 9 + 16 * 32)  # first conv1 + shortcut
    stage3 = 8 * 8 * (32 * 64 * 9 + 5 * 64 * 64 * 9 + 32 * 64)
    assert resnet20_macs() == head + stage1 + stage2 + stage3 + 64 * 10
    # halving every internal width halves the block-internal convs' work
    half = resnet20_macs([8] * 3 + [16] * 3 + [32] * 3)
    assert half < resnet20_macs() and half > resnet20_macs() / 2


def test_the_hook_thresholds_with_the_current_learning_rate_and_clears_their_momentum():
    from minitorch_compress.optim import SGD

    model = _trained_like()
    optimizer = SGD(model.parameters(), lr=0.1, momentum=0.9)
    optimizer.momentum_buffers = [np.ones_like(p.data) for p in optimizer.params]
    trainer = type("T", (), {"model": model, "optimizer": optimizer})()
    norms = np.concatenate([block_group_norms(b) for b in model.body_op])
    hook = GroupLassoHook(strength=float(np.quantile(norms, 0.5)) / 0.1)
    hook.after_step(trainer)
    metrics: dict = {}
    hook.on_epoch_end(trainer, 0, metrics)
    assert 0.4 <= 1 - metrics["channel_fraction"] <= 0.6
    # momentum cannot carry a removed group back at the next step
    index = {id(p): i for i, p in enumerate(optimizer.params)}
    w1 = model.body_op[0].conv1[0].conv.weight
    buffer = optimizer.momentum_buffers[index[id(w1)]]
    assert np.all(buffer[w1.data == 0] == 0) and np.all(buffer[w1.data != 0] == 1)
    with pytest.raises(ValueError):
        GroupLassoHook(-1.0)


def test_a_channel_pruned_run_checkpoint_loads_as_its_smaller_model(tmp_path):
    """A Lab 4 (b) run saves the smaller model's weights in best.npz; `load_pretrained` (and
    so every --weights) builds the architecture they fit, and refuses a mis-shaped one."""
    from minitorch_compress.errors import CheckpointError
    from minitorch_compress.io.checkpoint import save_checkpoint
    from minitorch_compress.models.pretrained import load_pretrained

    mids = [5, 16, 9, 32, 3, 32, 64, 17, 64]
    small = ResNet20(rng=np.random.default_rng(0), mid_channels=mids)
    state = small.state_dict()
    save_checkpoint(tmp_path / "best.npz", {f"model.{k}": v for k, v in state.items()}, {})
    again = load_pretrained(tmp_path / "best.npz")
    assert again.mid_channels == tuple(mids)
    for name, value in state.items():
        np.testing.assert_array_equal(again.state_dict()[name], value)
    state["body_op.2.conv2.0.conv.weight"] = np.zeros((16, 8, 3, 3), np.float32)  # not 9
    save_checkpoint(tmp_path / "bad.npz", {f"model.{k}": v for k, v in state.items()}, {})
    with pytest.raises(CheckpointError, match="body_op.2.conv2"):
        load_pretrained(tmp_path / "bad.npz")
