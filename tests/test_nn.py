"""Modules: registration and dotted names, modes, state_dict round trips and clear errors;
batch-norm statistics; the layers' shapes."""

from __future__ import annotations

import numpy as np
import pytest

from minitorch_compress import Tensor, no_grad, use_kernels
from minitorch_compress.models import resnet20
from minitorch_compress.models.resnet import ConvBN, ResNet20
from minitorch_compress.nn import (
    BatchNorm2d,
    Conv2d,
    Linear,
    Module,
    Parameter,
    ReLU,
    Sequential,
    StateDictError,
)


class TwoLayer(Module):
    def __init__(self):
        super().__init__()
        self.body = Sequential(Linear(4, 3), ReLU(), Linear(3, 2))
        self.scale = Parameter(np.ones(2))

    def forward(self, x):
        return self.body(x) * self.scale


def test_named_parameters_use_dotted_names():
    names = [n for n, _ in TwoLayer().named_parameters()]
    assert names == ["scale", "body.0.weight", "body.0.bias", "body.2.weight", "body.2.bias"]


def test_resnet20_names_match_the_course_checkpoint():
    model = resnet20()
    state = model.state_dict()
    for key in ["head_conv.0.conv.weight", "head_conv.1.running_var",
                "head_conv.1.num_batches_tracked", "body_op.0.conv1.0.conv.weight",
                "body_op.8.conv2.1.bias", "body_op.3.id_mapping.0.conv.weight",
                "body_op.6.id_mapping.1.running_mean", "final_fc.linear.weight",
                "final_fc.linear.bias"]:
        assert key in state, key
    assert not any("id_mapping" in k for k in state if k.startswith("body_op.1."))
    conv_fc = sum(v.size for k, v in state.items()
                  if k.endswith("conv.weight") or k == "final_fc.linear.weight")
    assert conv_fc == 270_896  # SPEC: conv/fc weights, the two 1x1 shortcut convs included
    # the same parameter counts in total as the reference architecture (0.27 M)
    assert sum(p.size for p in model.parameters()) == 272_474


def test_state_dict_round_trip_and_in_place_load():
    a, b = TwoLayer(), TwoLayer()
    a.body[0].weight.data[...] = 7.0
    buffer_ref = b.body[0].weight.data
    b.load_state_dict(a.state_dict())
    assert np.all(b.body[0].weight.data == 7.0)
    assert b.body[0].weight.data is buffer_ref  # loaded in place


def test_load_state_dict_names_every_problem():
    model = TwoLayer()
    state = model.state_dict()
    del state["scale"]
    state["extra.weight"] = np.zeros(1)
    state["body.0.weight"] = np.zeros((5, 5))
    with pytest.raises(StateDictError) as info:
        model.load_state_dict(state)
    message = str(info.value)
    assert "missing keys: scale" in message
    assert "unexpected keys: extra.weight" in message
    assert "body.0.weight: checkpoint (5, 5) vs model (3, 4)" in message
    assert "\n" not in message


def test_train_eval_propagate():
    model = TwoLayer().eval()
    assert all(not m.training for _, m in model.named_modules())
    model.train()
    assert all(m.training for _, m in model.named_modules())


def test_batch_norm_train_normalises_and_updates_running_stats():
    rng = np.random.default_rng(0)
    x = rng.normal(3.0, 2.0, size=(8, 4, 5, 5)).astype(np.float32)
    bn = BatchNorm2d(4)
    bn.running_mean[...] = rng.standard_normal(4)
    old_mean, old_var = bn.running_mean.copy(), bn.running_var.copy()
    y = bn(Tensor(x)).data
    np.testing.assert_allclose(y.mean(axis=(0, 2, 3)), 0.0, atol=1e-5)
    np.testing.assert_allclose(y.var(axis=(0, 2, 3)), 1.0, rtol=1e-3)  # eps makes it < 1
    batch_mean = x.mean(axis=(0, 2, 3))
    unbiased = x.var(axis=(0, 2, 3), ddof=1)
    np.testing.assert_allclose(bn.running_mean, 0.9 * old_mean + 0.1 * batch_mean, rtol=1e-5)
    np.testing.assert_allclose(bn.running_var, 0.9 * old_var + 0.1 * unbiased, rtol=1e-5)
    assert int(bn.num_batches_tracked) == 1


def test_batch_norm_eval_uses_running_stats():
    rng = np.random.default_rng(1)
    bn = BatchNorm2d(3).eval()
    bn.running_mean[...] = [1.0, -1.0, 0.5]
    bn.running_var[...] = [4.0, 1.0, 0.25]
    bn.weight.data[...] = [1.0, 2.0, 3.0]
    bn.bias.data[...] = [0.0, 0.1, -0.1]
    x = rng.standard_normal((2, 3, 4, 4)).astype(np.float32)
    with no_grad():
        y = bn(Tensor(x)).data
    expected = ((x - bn.running_mean[:, None, None]) / np.sqrt(bn.running_var[:, None, None]
                + 1e-5) * bn.weight.data[:, None, None] + bn.bias.data[:, None, None])
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-6)
    assert int(bn.num_batches_tracked) == 0


def test_conv_with_mismatched_channels_is_a_clear_error():
    conv = Conv2d(3, 8, 3, padding=1)
    with pytest.raises(ValueError, match=r"Conv2d expects input \(N, 3, H, W\)"):
        conv(Tensor(np.zeros((1, 4, 8, 8), np.float32)))


def test_resnet20_forward_shape_and_backward_reaches_every_parameter():
    model = resnet20(rng=np.random.default_rng(0))
    x = Tensor(np.random.default_rng(1).standard_normal((2, 3, 32, 32)).astype(np.float32))
    logits = model(x)
    assert logits.shape == (2, 10) and logits.dtype == np.float32
    logits.sum().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    assert missing == []


def _resnet20_with_random_batch_norm(seed: int):
    """A ResNet-20 whose batch norms are not the identity, so their fusion is exercised."""
    rng = np.random.default_rng(seed)
    model = resnet20(rng=rng)
    for _, module in model.named_modules():
        if isinstance(module, BatchNorm2d):
            c = module.num_features
            module.running_mean[:] = 0.1 * rng.standard_normal(c)
            module.running_var[:] = rng.uniform(0.5, 2.0, c)
            module.weight.data[:] = rng.uniform(0.5, 1.5, c)
            module.bias.data[:] = 0.1 * rng.standard_normal(c)
    return model.eval()


@pytest.mark.parametrize("batch", [1, 5])
def test_resnet20_fused_inference_equals_the_differentiable_path(batch: int):
    # with gradients on, eval runs conv, batch norm and add+ReLU as separate autograd ops;
    # under no_grad the model takes the fused inference kernel: same numbers, bit for bit
    model = _resnet20_with_random_batch_norm(seed=batch)
    x = Tensor(np.random.default_rng(7).standard_normal((batch, 3, 32, 32)).astype(np.float32))
    separate = model(x)
    assert separate.requires_grad  # the differentiable path was taken
    with no_grad():
        fused = model(x)
    assert not fused.requires_grad
    np.testing.assert_array_equal(fused.data, separate.data)


def test_resnet20_fused_inference_on_the_reference_kernels_equals_the_separate_ops():
    # the reference fused op applies batch norm as y*a + b, the separate one formula by
    # formula: the same up to float64 rounding
    model = _resnet20_with_random_batch_norm(seed=3)
    for p in model.parameters():
        p.data = p.data.astype(np.float64)
    x = Tensor(np.random.default_rng(7).standard_normal((2, 3, 32, 32)))
    with use_kernels("reference"):
        separate = model(x)
        with no_grad():
            fused = model(x)
    assert separate.requires_grad and not fused.requires_grad
    np.testing.assert_allclose(fused.data, separate.data, rtol=1e-12, atol=1e-12)


def _count_fused_calls(model, x) -> int:
    calls = []
    for _, module in model.named_modules():
        if isinstance(module, ConvBN):
            original = module.fused_inference
            module.fused_inference = lambda *a, _f=original, **k: calls.append(1) or _f(*a, **k)
    with no_grad():
        model(x)
    return len(calls)


def test_fusion_at_inference_is_chosen_per_model():
    x = Tensor(np.random.default_rng(7).standard_normal((1, 3, 32, 32)).astype(np.float32))
    fused = resnet20(rng=np.random.default_rng(0)).eval()
    unfused = ResNet20(rng=np.random.default_rng(0), fuse_at_inference=False).eval()
    assert _count_fused_calls(unfused, x) == 0
    assert _count_fused_calls(fused, x) == 21  # every ConvBN: the other model is unaffected
    fused.set_fuse_at_inference(False)
    assert _count_fused_calls(fused, x) == 0
    assert "fuse_at_inference" not in vars(ConvBN)  # no class-level switch to flip


def test_resnet20_takes_any_image_size_but_only_three_channels():
    model = resnet20(rng=np.random.default_rng(0))
    assert model(Tensor(np.zeros((2, 3, 8, 8), np.float32))).shape == (2, 10)
    with pytest.raises(ValueError, match=r"ResNet20 expects images \(N, 3, H, W\)"):
        model(Tensor(np.zeros((2, 1, 32, 32), np.float32)))


def test_fused_conv_batch_norm_refuses_to_record_gradients():
    from minitorch_compress.ops.fused import conv2d_batch_norm_eval

    x, w = Tensor(np.zeros((1, 2, 4, 4), np.float32)), Tensor(np.zeros((3, 2, 3, 3), np.float32))
    ones = Tensor(np.ones(3, np.float32))
    with pytest.raises(RuntimeError, match="inside no_grad"):
        conv2d_batch_norm_eval(x, w, 1, 1, ones, ones, np.zeros(3), np.ones(3), 1e-5)


def test_a_narrower_resnet20_keeps_the_residual_widths_and_names():
    """Per-block internal widths (Lab 4's channel pruning): conv1 outputs and conv2 inputs
    shrink, the residual path and every checkpoint name stay."""
    mids = [4, 8, 16, 8, 16, 32, 16, 32, 64]
    model = resnet20(rng=np.random.default_rng(0), mid_channels=mids)
    state = model.state_dict()
    assert set(state) == set(resnet20().state_dict())
    assert state["body_op.0.conv1.0.conv.weight"].shape == (4, 16, 3, 3)
    assert state["body_op.0.conv2.0.conv.weight"].shape == (16, 4, 3, 3)
    assert state["body_op.8.conv1.1.running_var"].shape == (64,)
    x = Tensor(np.zeros((2, 3, 32, 32), np.float32))
    assert model.eval()(x).shape == (2, 10)
    with pytest.raises(ValueError, match="9 widths"):
        resnet20(mid_channels=[16] * 8)
