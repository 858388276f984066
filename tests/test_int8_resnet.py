"""The integer ResNet-20 (`models/int8_resnet.py`) and its calibration."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from strategies import seeds

from minitorch_compress.autograd.engine import no_grad
from minitorch_compress.autograd.tensor import Tensor
from minitorch_compress.compression.calibration import (
    calibrate,
    float_activations,
    int8_model,
)
from minitorch_compress.compression.quant import quantize_array
from minitorch_compress.data.transforms import normalize
from minitorch_compress.kernels import int8_reference as ir
from minitorch_compress.kernels.reference import conv2d_forward
from minitorch_compress.models.int8_resnet import (
    Codes,
    find_grid,
    fold_batch_norm,
    integer_conv,
)
from minitorch_compress.models.pretrained import load_pretrained
from minitorch_compress.models.resnet import ResNet20
from minitorch_compress.nn import BatchNorm2d

LAB3_FILE = Path(__file__).resolve().parents[1] / "results" / "models" / "lab3_d_2bit.mtc"


def random_model(seed: int) -> ResNet20:
    """A ResNet-20 with random weights and batch-norm statistics (so folding matters)."""
    rng = np.random.default_rng(seed)
    model = ResNet20(rng=rng)
    for _, module in model.named_modules():
        if isinstance(module, BatchNorm2d):
            c = module.num_features
            module.weight.data[...] = rng.uniform(0.5, 1.5, c)
            module.bias.data[...] = rng.uniform(-0.2, 0.2, c)
            module.running_mean[...] = rng.uniform(-0.2, 0.2, c)
            module.running_var[...] = rng.uniform(0.5, 2.0, c)
    return model.eval()


def random_images(seed: int, n: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, 3, 32, 32), dtype=np.uint8)


# ------------------------------------------------------------------ grids
@settings(deadline=None)
@given(seeds, st.integers(1, 8), st.sampled_from(["asymmetric", "masked"]),
       st.floats(0.0, 0.8))
def test_find_grid_recovers_the_lab3_quantizers_levels(seed, bits, mode, sparsity):
    rng = np.random.default_rng(seed)
    w = rng.normal(0, 0.1, (4, 3, 3, 3)) * (rng.random((4, 3, 3, 3)) >= sparsity)
    wq = quantize_array(w.astype(np.float32), bits, mode)
    grid = find_grid(wq)
    assert grid is not None and grid.bits <= bits
    assert grid.codes.min() >= 0 and grid.codes.max() <= 2**bits - 1
    rebuilt = grid.mask * (grid.step[:, None, None, None] * grid.codes
                           + grid.beta[:, None, None, None])
    np.testing.assert_allclose(rebuilt, wq, rtol=0, atol=1e-6)
    np.testing.assert_array_equal(grid.mask, wq != 0)


def test_find_grid_rejects_float_weights():
    w = np.random.default_rng(0).normal(0, 0.1, (8, 8, 3, 3))
    assert find_grid(w) is None


def test_find_grid_falls_back_to_one_grid_per_channel():
    rng = np.random.default_rng(1)
    w = np.stack([quantize_array(rng.normal(0, s, (3, 3, 3)), 3) for s in (0.1, 0.3)])
    grid = find_grid(w)
    assert grid is not None and grid.bits == 3 and grid.step[0] != grid.step[1]


# ------------------------------------------------------------------ one layer
def test_fold_batch_norm_matches_the_float_layer():
    model = random_model(2)
    layer = model.body_op[0].conv1
    x = np.random.default_rng(3).normal(0, 1, (2, 16, 8, 8)).astype(np.float32)
    with no_grad():
        layer.activation = None  # compare before the ReLU
        expected = layer(Tensor(x)).data
    w, a, b = fold_batch_norm(layer)
    folded = conv2d_forward(x.astype(np.float64), w, 1, 1) * a[:, None, None] + b[:, None, None]
    np.testing.assert_allclose(folded, expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("bits", [None, 2, 4, 8])  # 8: codes centred to fit int8
def test_integer_conv_follows_the_float_layer(bits):
    """Codes within a few steps of the float ConvBN's output; a grid layer keeps its
    weights (grid kind), a float one is re-quantized per channel (s8)."""
    model = random_model(4)
    layer = model.body_op[0].conv1
    if bits is not None:
        weight = layer[0].conv.weight
        weight.data[...] = quantize_array(weight.data, bits, "masked")
    rng = np.random.default_rng(5)
    x_codes = Codes(0.02, 10)
    q = rng.integers(0, 256, (2, 16, 8, 8), dtype=np.uint8)
    x = ir.dequantize(q, x_codes.scale, x_codes.zero_point).astype(np.float32)
    with no_grad():
        expected = layer(Tensor(x)).data
    out = Codes.covering(0.0, float(expected.max()))
    int_layer, kind = integer_conv(layer, x_codes, out, relu=True)
    assert kind == ("s8" if bits is None else f"grid{bits}")
    got = ir.dequantize(ir.conv_layer(q, int_layer), out.scale, out.zero_point)
    assert np.abs(got - expected).max() <= 3 * out.scale


# ------------------------------------------------------------------ the network
def test_calibration_names_every_quantized_tensor_and_percentiles_lie_inside():
    model = random_model(6)
    images = random_images(7, 8)
    minmax = calibrate(model, images, "minmax", batch_size=4)
    x = np.zeros((1, 3, 32, 32), np.float32)
    assert list(minmax) == [name for name, _ in float_activations(model, x)]
    assert {"input", "head_conv", "body_op.3.id_mapping", "body_op.8"} <= set(minmax)
    assert minmax["head_conv"][0] >= 0  # after a ReLU
    percentile = calibrate(model, images, "percentile", batch_size=4)
    for name, (low, high) in percentile.items():
        assert minmax[name][0] <= low <= high <= minmax[name][1]
    with pytest.raises(ValueError):
        calibrate(model, images, "median")


def test_int8_resnet_tracks_the_float_model_and_every_kernel_agrees():
    model = random_model(8)
    images = random_images(9, 6)
    int_model = int8_model(model, images)
    assert set(int_model.weight_kinds.values()) == {"s8"}
    assert [name for name, _ in int_model.named_layers()] == list(int_model.weight_kinds)
    x = normalize(images)
    with no_grad():
        float_logits = model(Tensor(x)).data
    logits = int_model.logits(x)
    assert logits.shape == (6, 10)
    spread = float_logits.max() - float_logits.min()
    assert np.abs(logits - float_logits).max() <= 0.1 * spread
    blas_codes = int_model.codes(x[:2])
    for kernel in ("reference", "fast"):
        int_model.kernel = kernel
        np.testing.assert_array_equal(int_model.codes(x[:2]), blas_codes)


def test_a_lab3_file_runs_with_its_weights_on_their_grid():
    model = load_pretrained(LAB3_FILE)
    int_model = int8_model(model, random_images(10, 4))
    body = {k for n, k in int_model.weight_kinds.items() if n.startswith("body_op.")}
    assert body == {"grid2"}  # every body conv used exactly as trained
    assert int_model.weight_kinds["head_conv"] == "s8"  # Lab 3 keeps the head float
    x = normalize(random_images(11, 2))
    reference = int_model.codes(x)
    int_model.kernel = "fast"
    np.testing.assert_array_equal(int_model.codes(x), reference)


def test_a_channel_pruned_model_converts_too():
    """Lab 4's narrower blocks (odd widths: not a multiple of the 4-channel groups)."""
    rng = np.random.default_rng(12)
    model = ResNet20(rng=rng, mid_channels=[5, 16, 3, 7, 32, 9, 13, 64, 1]).eval()
    images = random_images(13, 3)
    int_model = int8_model(model, images)
    x = normalize(images)
    reference = int_model.codes(x)
    int_model.kernel = "fast"
    np.testing.assert_array_equal(int_model.codes(x), reference)
    assert int_model.logits(x).shape == (3, 10)


def test_a_model_naming_no_kernel_follows_the_kernel_switch(monkeypatch):
    from minitorch_compress import use_kernels
    from minitorch_compress.models import int8_resnet

    seen = []
    for name in ("fast", "reference_blas"):
        monkeypatch.setitem(int8_resnet.INT8_KERNELS, name, int8_resnet.IntKernel(
            lambda q, layer, *rest, _n=name: seen.append(_n) or q))
    model = int8_resnet.Int8ResNet20(input_codes=int8_resnet.Codes(1.0, 0), head=None,
                                     blocks=[], output_codes=int8_resnet.Codes(1.0, 0),
                                     fc_weight=np.zeros((10, 3)), fc_bias=np.zeros(10))
    x = np.zeros((1, 3, 4, 4))
    with use_kernels("reference"):
        model.codes(x)
    with use_kernels("fast"):
        model.codes(x)
    assert seen == ["reference_blas", "fast"]
