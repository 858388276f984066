"""Properties of magnitude pruning, masks, masked finetuning and the iterative schedule."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from strategies import distinct_magnitude_array, distinct_weights, prune_fractions, seeds

from minitorch_compress import ops
from minitorch_compress.autograd.tensor import Tensor
from minitorch_compress.compression import (
    IterativePruningHook,
    MaskHook,
    apply_masks,
    format_sparsity_table,
    global_prune_by_percentage,
    mask_from_weights,
    percentile_threshold,
    prunable_layers,
    prune_below,
    prune_by_percentage,
    prune_model_by_percentage,
    sparsity_report,
)
from minitorch_compress.models.resnet import resnet20
from minitorch_compress.nn import Conv2d, GlobalAvgPool2d, Linear, Module, ReLU, Sequential
from minitorch_compress.optim import SGD
from minitorch_compress.reports.figures import plot_sparsity


def expected_pruned_counts(q: float, n: int) -> set[int]:
    """How many of n distinct non-zero magnitudes a q-percentile threshold prunes.

    numpy interpolates at h = (n - 1) * (100 q / 100) between the floor(h)-th and the
    ceil(h)-th smallest magnitude, and we keep |w| >= threshold, so exactly ceil(h) are
    pruned. One float exception: when h lies a hair above an integer m, the interpolated
    threshold may round down onto the m-th magnitude, which then survives (m pruned).
    """
    h = (n - 1) * (100.0 * q / 100.0)  # the virtual index exactly as numpy computes it
    m = math.floor(h)
    if 0 < h - m < 1e-9:
        return {m, m + 1}
    return {math.ceil(h)}


def one_layer(weight: np.ndarray) -> Linear:
    """A Linear layer whose weight is `weight` (out, in); any shape is flattened to 2-D."""
    w2d = weight.reshape(weight.shape[0], -1) if weight.ndim > 1 else weight.reshape(1, -1)
    layer = Linear(w2d.shape[1], w2d.shape[0], bias=False)
    layer.weight.data[...] = w2d
    return layer


def mlp(sizes: list[int], seed: int) -> Sequential:
    """Linear/ReLU stack; its Linear layers are named "0", "2", ..."""
    rng = np.random.default_rng(seed)
    layers: list[Module] = []
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        layers.append(Linear(n_in, n_out, rng=rng))
        if i < len(sizes) - 2:
            layers.append(ReLU())
    return Sequential(*layers)


def set_distinct_weights(model: Module, seed: int) -> None:
    """Give all prunable weights of `model` together distinct magnitudes (no global ties)."""
    layers = prunable_layers(model)
    total = sum(layer.weight.size for layer in layers.values())
    values = distinct_magnitude_array(np.random.default_rng(seed), total)
    start = 0
    for layer in layers.values():
        layer.weight.data[...] = values[start:start + layer.weight.size].reshape(layer.weight.shape)
        start += layer.weight.size


def train_steps(trainer: SimpleNamespace, steps: int, rng: np.random.Generator,
                hook: object | None = None) -> None:
    """A few SGD steps on random data, calling `hook.after_step` as the trainer does."""
    first = next(iter(prunable_layers(trainer.model).values()))
    in_shape = (8, first.in_features) if isinstance(first, Linear) else (8, first.in_channels, 5, 5)
    for _ in range(steps):
        x = Tensor(rng.standard_normal(in_shape).astype(np.float32))
        labels = rng.integers(0, 3, 8)
        trainer.optimizer.zero_grad()
        ops.cross_entropy(trainer.model(x), labels).backward()
        trainer.optimizer.step()
        if hook is not None:
            hook.after_step(trainer)


def fake_trainer(model: Module, lr: float = 0.1) -> SimpleNamespace:
    """What the hooks use of the shared trainer; the course's momentum and weight decay."""
    optimizer = SGD(model.parameters(), lr=lr, momentum=0.875, weight_decay=1e-4)
    return SimpleNamespace(model=model, optimizer=optimizer)


# ------------------------------------------------------------------ per-layer pruning
@settings(deadline=None)
@given(w=distinct_weights(), q=prune_fractions)
def test_percentile_threshold_is_numpys_percentile(w, q):
    assert percentile_threshold(w, q) == np.percentile(np.abs(w.astype(np.float64)), 100 * q)


@settings(deadline=None)
@given(w=distinct_weights(), q=prune_fractions)
def test_prune_by_percentage_prunes_ceil_q_n_minus_1_smallest(w, q):
    layer = one_layer(w)
    original = layer.weight.data.copy()
    mask = prune_by_percentage(layer, q)
    pruned = mask == 0
    assert int(pruned.sum()) in expected_pruned_counts(q, w.size)
    # every kept magnitude is >= every pruned one, and kept weights are untouched
    if pruned.any() and not pruned.all():
        assert np.abs(original[~pruned]).min() >= np.abs(original[pruned]).max()
    np.testing.assert_array_equal(layer.weight.data[~pruned], original[~pruned])
    assert np.all(layer.weight.data[pruned] == 0)
    assert not np.signbit(layer.weight.data[pruned]).any()  # +0.0, not -0.0
    np.testing.assert_array_equal(mask, (layer.weight.data != 0).astype(np.float32))
    assert mask.dtype == np.float32 and mask.shape == layer.weight.shape


@settings(deadline=None)
@given(w=distinct_weights(), q1=prune_fractions, q2=prune_fractions)
def test_pruning_twice_equals_pruning_once_at_the_larger_fraction(w, q1, q2):
    # Re-pruning is not "prune q of what is left": the zeros are the smallest magnitudes, so
    # pruning at q2 after q1 gives the mask of max(q1, q2); at the same q it changes nothing.
    twice, once = one_layer(w), one_layer(w)
    prune_by_percentage(twice, q1)
    after_first = twice.weight.data.copy()
    mask = prune_by_percentage(twice, q2)
    expected = prune_by_percentage(once, max(q1, q2))
    np.testing.assert_array_equal(mask, expected)
    np.testing.assert_array_equal(twice.weight.data, once.weight.data)
    if q2 <= q1:
        np.testing.assert_array_equal(twice.weight.data, after_first)


def test_zero_weights_count_as_pruned_even_when_the_threshold_is_zero():
    layer = one_layer(np.array([[0.0, 0.0, 0.0, 1.0, -2.0]], np.float32))
    mask = prune_by_percentage(layer, 0.2)  # threshold = 0: |w| >= 0 holds for every weight
    np.testing.assert_array_equal(mask, [[0, 0, 0, 1, 1]])


def test_negative_pruned_weights_become_plus_zero():
    layer = one_layer(np.array([[-0.1, 0.5, -3.0, 2.0]], np.float32))
    prune_by_percentage(layer, 0.5)
    np.testing.assert_array_equal(layer.weight.data, [[0.0, 0.0, -3.0, 2.0]])
    assert not np.signbit(layer.weight.data[0, :2]).any()


def test_prune_fraction_outside_unit_interval_is_refused():
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        prune_by_percentage(one_layer(np.ones((2, 2), np.float32)), 80)


@settings(deadline=None, max_examples=30)
@given(seed=seeds, q=prune_fractions)
def test_model_pruning_uses_each_layers_own_threshold(seed, q):
    model = mlp([7, 11, 5, 3], seed)
    set_distinct_weights(model, seed)
    masks = prune_model_by_percentage(model, q)
    assert list(masks) == ["0", "2", "4"]
    for name, layer in prunable_layers(model).items():
        assert int((masks[name] == 0).sum()) in expected_pruned_counts(q, layer.weight.size)


# ---------------------------------------------------------------------- global pruning
@settings(deadline=None, max_examples=30)
@given(seed=seeds, q=prune_fractions)
def test_global_pruning_uses_one_threshold_across_layers(seed, q):
    model = mlp([7, 11, 5, 3], seed)
    set_distinct_weights(model, seed)
    before = {n: layer.weight.data.copy() for n, layer in prunable_layers(model).items()}
    masks, threshold = global_prune_by_percentage(model, q)
    total = sum(m.size for m in masks.values())
    pruned = sum(int((m == 0).sum()) for m in masks.values())
    assert pruned in expected_pruned_counts(q, total)
    _, report_total = sparsity_report(model)
    assert report_total == pruned / total
    for name, w in before.items():
        kept, cut = np.abs(w[masks[name] == 1]), np.abs(w[masks[name] == 0])
        if kept.size:
            assert kept.min() >= threshold
        if cut.size:
            assert cut.max() <= threshold


@settings(deadline=None, max_examples=30)
@given(seed=seeds, threshold=st.floats(0.0, 2.0))
def test_prune_below_zeroes_exactly_the_weights_under_the_threshold(seed, threshold):
    model = mlp([7, 11, 5, 3], seed)
    set_distinct_weights(model, seed)
    before = {n: layer.weight.data.copy() for n, layer in prunable_layers(model).items()}
    masks = prune_below(model, threshold)
    for name, layer in prunable_layers(model).items():
        small = np.abs(before[name]) < threshold
        np.testing.assert_array_equal(masks[name] == 0, small | (before[name] == 0))
        np.testing.assert_array_equal(layer.weight.data, np.where(small, 0.0, before[name]))
        assert not np.signbit(layer.weight.data[small]).any()  # +0.0, never -0.0


# ------------------------------------------------------------------------------ masks
def test_resnet20_prunable_layers_are_the_19_course_layers():
    names = list(prunable_layers(resnet20()))
    expected = (["head_conv.0.conv"]
                + [f"body_op.{i}.conv{j}.0.conv" for i in range(9) for j in (1, 2)]
                + ["final_fc.linear"])
    assert names == expected


def test_mask_from_weights_and_apply_masks_round_trip():
    model = mlp([4, 6, 3], 0)
    masks = prune_model_by_percentage(model, 0.5)
    recovered = mask_from_weights(model)
    assert recovered.keys() == masks.keys()
    for name in masks:
        np.testing.assert_array_equal(recovered[name], masks[name])
    fresh = mlp([4, 6, 3], 1)
    apply_masks(fresh, masks)
    for name, layer in prunable_layers(fresh).items():
        assert np.all(layer.weight.data[masks[name] == 0] == 0)


def test_apply_masks_rejects_unknown_layers_and_wrong_shapes():
    model = mlp([4, 6, 3], 0)
    with pytest.raises(KeyError, match="no Conv2d/Linear layer named nope"):
        apply_masks(model, {"nope": np.ones((6, 4), np.float32)})
    with pytest.raises(ValueError, match="shape"):
        apply_masks(model, {"0": np.ones((4, 6), np.float32)})


def small_conv_net(seed: int) -> Sequential:
    rng = np.random.default_rng(seed)
    return Sequential(Conv2d(2, 4, 3, padding=1, rng=rng), ReLU(), GlobalAvgPool2d(),
                      Linear(4, 3, rng=rng))


@settings(deadline=None, max_examples=20)
@given(seed=seeds, q=st.floats(0.3, 0.9), conv=st.booleans())
def test_masked_finetuning_keeps_pruned_weights_exactly_zero(seed, q, conv):
    model = small_conv_net(seed) if conv else mlp([5, 6, 3], seed)
    masks = prune_model_by_percentage(model, q)
    before = {n: layer.weight.data.copy() for n, layer in prunable_layers(model).items()}
    trainer, hook = fake_trainer(model), MaskHook(masks)
    hook.on_epoch_start(trainer, 0)
    rng = np.random.default_rng(seed)
    for _ in range(5):  # check after every step, not just at the end
        train_steps(trainer, 1, rng, hook)
        for name, layer in prunable_layers(model).items():
            pruned = masks[name] == 0
            assert np.all(layer.weight.data[pruned] == 0)
            assert not np.signbit(layer.weight.data[pruned]).any()
            i = next(k for k, p in enumerate(trainer.optimizer.params) if p is layer.weight)
            assert np.all(trainer.optimizer.momentum_buffers[i][pruned] == 0)
    metrics: dict[str, float] = {}
    hook.on_epoch_end(trainer, 0, metrics)
    assert metrics["sparsity"] >= sum((m == 0).sum() for m in masks.values()) / sum(
        m.size for m in masks.values())
    # the kept weights did train (the test would not notice a hook that froze everything)
    assert any(not np.array_equal(layer.weight.data[masks[n] == 1], before[n][masks[n] == 1])
               for n, layer in prunable_layers(model).items())


def test_without_the_mask_hook_pruned_weights_regrow():
    # control for the test above: momentum and gradients do move pruned weights off zero
    model = mlp([5, 6, 3], 0)
    masks = prune_model_by_percentage(model, 0.8)
    train_steps(fake_trainer(model), 3, np.random.default_rng(0))
    assert any(np.any(layer.weight.data[masks[n] == 0] != 0)
               for n, layer in prunable_layers(model).items())


def test_mask_hook_state_round_trip():
    masks = prune_model_by_percentage(mlp([4, 6, 3], 0), 0.6)
    restored = MaskHook({})
    restored.load_state_dict(MaskHook(masks).state_dict())
    for name, m in masks.items():
        np.testing.assert_array_equal(restored.masks[name], m)
        assert restored.masks[name].dtype == np.float32


# ------------------------------------------------------------------- iterative pruning
@settings(deadline=None, max_examples=15)
@given(seed=seeds, global_=st.booleans())
def test_iterative_schedule_prunes_8e_percent_before_epoch_e(seed, global_):
    model = mlp([6, 9, 3], seed)
    set_distinct_weights(model, seed)
    trainer, hook = fake_trainer(model), IterativePruningHook(0.8, 10, global_=global_)
    rng = np.random.default_rng(seed)
    regrew = False
    fixed: dict[str, np.ndarray] = {}
    for epoch in range(13):
        hook.on_epoch_start(trainer, epoch)
        e = epoch + 1
        layers = prunable_layers(model)
        for layer in layers.values():  # pruning also clears the pruned weights' momentum
            i = next(k for k, p in enumerate(trainer.optimizer.params) if p is layer.weight)
            momentum = trainer.optimizer.momentum_buffers[i]
            assert momentum is None or np.all(momentum[layer.weight.data == 0] == 0)
        if e <= 10:
            target = 0.08 * e
            assert hook.current_sparsity_target == pytest.approx(target)
            counts = {n: int((layer.weight.data == 0).sum()) for n, layer in layers.items()}
            if global_:
                total = sum(layer.weight.size for layer in layers.values())
                assert sum(counts.values()) in expected_pruned_counts(target, total)
            else:
                for n, layer in layers.items():
                    assert counts[n] in expected_pruned_counts(target, layer.weight.size)
        assert hook.mask_fixed == (e >= 10)
        if e == 10:
            fixed = {n: (layer.weight.data == 0) for n, layer in layers.items()}
        zeros_before = {n: layer.weight.data == 0 for n, layer in layers.items()}
        train_steps(trainer, 3, rng, hook)
        if e < 10:
            regrew |= any(np.any(layer.weight.data[zeros_before[n]] != 0)
                          for n, layer in layers.items())
        else:  # the mask is fixed from the last pruning step on
            for n, layer in layers.items():
                np.testing.assert_array_equal(layer.weight.data == 0, fixed[n])
    assert regrew, "pruned weights should be free to regrow before the last pruning step"


def test_iterative_hook_resumes_from_its_state_dict():
    model = mlp([6, 9, 3], 0)
    trainer, hook = fake_trainer(model), IterativePruningHook(0.8, 2)
    for epoch in range(2):
        hook.on_epoch_start(trainer, epoch)
        train_steps(trainer, 2, np.random.default_rng(epoch), hook)
    resumed = IterativePruningHook(0.8, 2)
    resumed.load_state_dict(hook.state_dict())
    assert resumed.mask_fixed and resumed.current_sparsity_target == pytest.approx(0.8)
    for name, m in hook.final_masks.items():
        np.testing.assert_array_equal(resumed.final_masks[name], m)
    before_state = IterativePruningHook(0.8, 2)
    before_state.load_state_dict(IterativePruningHook(0.8, 2).state_dict())
    assert not before_state.mask_fixed and before_state.current_sparsity_target == 0.0


# --------------------------------------------------------------------------- reports
def test_sparsity_report_table_and_plot(tmp_path):
    model = mlp([4, 5, 2], 0)
    model[0].weight.data[...] = 0.0  # 20 zeros of 20
    model[2].weight.data[0, :] = 0.0  # 5 zeros of 10
    per_layer, total = sparsity_report(model)
    assert per_layer == {"0": 1.0, "2": 0.5}
    assert total == pytest.approx(25 / 30)
    table = format_sparsity_table(per_layer, total)
    assert table.splitlines()[2] == "| 0         |   1.0000 |"
    assert table.splitlines()[-1].endswith("|   0.8333 |")
    plot_sparsity(per_layer, tmp_path / "sparsity.png", "test")
    assert (tmp_path / "sparsity.png").stat().st_size > 0


# ------------------------------------------------------- with the shared trainer
class _Interrupt(Exception):
    pass


class _StopBefore:
    """A hook that crashes the run before a given epoch, as a killed job would."""

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_epoch_start(self, trainer, epoch: int) -> None:
        if epoch == self.epoch:
            raise _Interrupt


def cifar_sized_net() -> Sequential:
    rng = np.random.default_rng(0)
    return Sequential(Conv2d(3, 4, 3, stride=2, padding=1, rng=rng), ReLU(), GlobalAvgPool2d(),
                      Linear(4, 10, rng=rng))


def test_iterative_pruning_in_the_trainer_resumes_exactly(tmp_path, tiny_cifar):
    from minitorch_compress.training import FinetuneConfig, Trainer

    train, test = tiny_cifar
    config = FinetuneConfig(epochs=4, batch_size=16, lr=0.05, seed=3, eval_batch_size=32)

    def run(run_dir, stop_before=None, resume=False):
        model = cifar_sized_net()
        hooks = [IterativePruningHook(0.5, prune_epochs=2)]
        if stop_before is not None:
            hooks.append(_StopBefore(stop_before))
        trainer = Trainer(model, train, test, config, hooks, run_dir=run_dir, progress=False)
        try:
            trainer.fit(resume=resume)
        except _Interrupt:
            pass
        return model, trainer

    straight, trainer = run(tmp_path / "a")
    assert [m["mask_fixed"] for m in trainer.history] == [False, True, True, True]
    assert [m["sparsity_target"] for m in trainer.history] == [0.25, 0.5, 0.5, 0.5]
    assert all(m["sparsity"] >= 0.5 - 1 / 40 for m in trainer.history[1:])
    run(tmp_path / "b", stop_before=3)  # killed after epoch 3, with the mask fixed
    resumed, _ = run(tmp_path / "b", resume=True)
    for (name, p), (_, q) in zip(straight.named_parameters(), resumed.named_parameters(),
                                 strict=True):
        np.testing.assert_array_equal(p.data, q.data, err_msg=name)
