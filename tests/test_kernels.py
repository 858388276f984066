"""The fast numba kernels agree with the slow NumPy reference, and the reference is right.

Two layers of checks:

* reference vs mathematics: the reference conv gradients satisfy the adjoint identities of
  a bilinear map, the reference batch-norm gradients match central finite differences, and
  a hand-computed convolution comes out exactly;
* fast vs reference: the conv entry points (on the kernels `kernels/dispatch.py` picks, and
  forced onto the others) and `kernels/batchnorm.py` equal their reference twins over drawn
  shapes, strides, paddings, dtypes and chunk sizes.

Tolerances: errors are bounded relative to the *sum of magnitudes* that forms each output
element (e.g. ``conv(|x|, |w|)`` for the conv forward), not relative to the output itself,
which may be a near-cancelling sum. rtol is 1e-4 of that magnitude in float32, 1e-10 in
float64.
"""

from __future__ import annotations

from contextlib import ExitStack, contextmanager
from unittest import mock

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from strategies import ConvSetting, conv_settings, float_dtypes, nchw_shapes, seeds

from minitorch_compress.kernels import batchnorm as bn
from minitorch_compress.kernels import conv, dispatch
from minitorch_compress.kernels import reference as ref

# the pool path, kernels split across two threads on any machine (conftest.kernel_threads)
KERNEL_THREADS = 2

RTOL = {np.dtype(np.float32): 1e-4, np.dtype(np.float64): 1e-10}

# None: the kernels' own chunk sizes (every drawn batch fits in one chunk); 1 byte: one
# image per chunk; 4000 bytes: a few images per chunk and usually a shorter last chunk
chunk_bytes = st.sampled_from([None, 1, 4000])

# which kernels the conv entry points take: the dispatch table's choice
# (`kernels/dispatch.py`: float32 3x3 convs on the register-tiled forward and the direct
# grad-weight); or im2col + GEMM for every forward, grad-input and grad-weight
kernel_paths = st.sampled_from(["auto", "im2col"])


def assert_close(actual: np.ndarray, expected: np.ndarray, magnitude: np.ndarray) -> None:
    """|actual - expected| <= rtol * magnitude (+ a tiny floor), elementwise, same dtype."""
    assert actual.shape == expected.shape
    assert actual.dtype == expected.dtype
    rtol = RTOL[actual.dtype]
    err = np.abs(actual.astype(np.float64) - expected.astype(np.float64))
    bound = rtol * np.asarray(magnitude, dtype=np.float64) + 1e-30
    worst = np.unravel_index(np.argmax(err - bound), err.shape)
    assert np.all(err <= bound), (
        f"max error {err[worst]:.3g} > bound {bound[worst]:.3g} at {worst} "
        f"(actual {actual[worst]}, expected {expected[worst]})"
    )


@contextmanager
def _conv_config(chunk: int | None, path: str = "auto"):
    """Temporarily set the conv kernels' chunk size and the kernels the table picks."""
    with ExitStack() as stack:
        if chunk is not None:
            stack.enter_context(mock.patch.object(conv, "_CHUNK_BYTES", chunk))
        if path == "im2col":
            stack.enter_context(mock.patch.object(dispatch, "forward_kernel",
                                                  lambda *_: dispatch.IM2COL_GEMM))
            stack.enter_context(mock.patch.object(dispatch, "grad_weight_kernel",
                                                  lambda *_: dispatch.GEMM_GRAD_WEIGHT))
        yield


def _conv_arrays(s: ConvSetting, dtype, seed: int):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(s.x_shape).astype(dtype)
    w = rng.standard_normal(s.w_shape).astype(dtype)
    gy = rng.standard_normal(s.y_shape).astype(dtype)
    return x, w, gy


# ------------------------------------------------------------------ conv: reference
def test_reference_conv_hand_computed():
    # 1 image, 1 channel, 3x3 input 1..9, 2x2 kernel of ones, padding 1, stride 2:
    # the padded input is 5x5 and the windows start at rows/cols 0 and 2
    x = np.arange(1.0, 10.0).reshape(1, 1, 3, 3)
    w = np.ones((1, 1, 2, 2))
    y = ref.conv2d_forward(x, w, stride=2, padding=1)
    np.testing.assert_array_equal(y[0, 0], [[1.0, 2.0 + 3.0], [4.0 + 7.0, 5.0 + 6.0 + 8.0 + 9.0]])


@settings(deadline=None, max_examples=25)
@given(s=conv_settings(), seed=seeds)
def test_reference_conv_gradients_are_adjoints(s: ConvSetting, seed: int):
    # conv is bilinear, so <conv(x, w), gy> = <x, grad_x(gy)> = <w, grad_w(gy)> exactly
    x, w, gy = _conv_arrays(s, np.float64, seed)
    y = ref.conv2d_forward(x, w, s.stride, s.padding)
    gx = ref.conv2d_grad_input(gy, w, s.x_shape, s.stride, s.padding)
    gw = ref.conv2d_grad_weight(gy, x, s.w_shape, s.stride, s.padding)
    lhs = np.sum(y * gy)
    scale = np.sum(np.abs(ref.conv2d_forward(np.abs(x), np.abs(w), s.stride, s.padding) * gy))
    assert abs(lhs - np.sum(x * gx)) <= 1e-12 * scale + 1e-300
    assert abs(lhs - np.sum(w * gw)) <= 1e-12 * scale + 1e-300


# ------------------------------------------------------------------- conv: fast == ref
@settings(deadline=None, max_examples=60)
@given(s=conv_settings(), dtype=float_dtypes, seed=seeds, chunk=chunk_bytes, path=kernel_paths)
def test_conv_forward_matches_reference(s: ConvSetting, dtype, seed: int, chunk, path: str):
    x, w, _ = _conv_arrays(s, dtype, seed)
    with _conv_config(chunk, path):
        y = conv.conv2d_forward(x, w, stride=s.stride, padding=s.padding)
    expected = ref.conv2d_forward(x, w, s.stride, s.padding)
    magnitude = ref.conv2d_forward(np.abs(x), np.abs(w), s.stride, s.padding)
    assert_close(y, expected, magnitude)


@settings(deadline=None, max_examples=60)
@given(s=conv_settings(), dtype=float_dtypes, seed=seeds, chunk=chunk_bytes, path=kernel_paths,
       relu=st.booleans(), with_residual=st.booleans())
def test_conv_affine_forward_equals_conv_then_batchnorm_then_add_relu(
    s: ConvSetting, dtype, seed: int, chunk, path: str, relu: bool, with_residual: bool
):
    """The fused inference epilogue is bit for bit the three separate kernels."""
    x, w, residual = _conv_arrays(s, dtype, seed)
    rng = np.random.default_rng(seed + 1)
    gamma, beta, mean = (rng.standard_normal(s.k).astype(dtype) for _ in range(3))
    var = rng.uniform(0.1, 3.0, s.k).astype(dtype)
    coef = bn.eval_coefficients(gamma, beta, mean, var, 1e-5, s.k, np.dtype(dtype))
    with _conv_config(chunk, path):
        y = conv.conv2d_affine_forward(x, w, s.stride, s.padding, coef, relu=relu,
                                       residual=residual if with_residual else None)
        separate = conv.conv2d_forward(x, w, stride=s.stride, padding=s.padding)
    if with_residual:
        separate = bn.batchnorm_eval_forward(separate, gamma, beta, mean, var, 1e-5)
        separate = separate + residual
        separate = np.maximum(separate, 0, dtype=dtype) if relu else separate
    else:
        separate = bn.batchnorm_eval_forward(separate, gamma, beta, mean, var, 1e-5, relu=relu)
    assert y.dtype == separate.dtype == dtype
    np.testing.assert_array_equal(y, separate)


def test_conv_affine_forward_rejects_bad_coef_and_residual():
    x, w = np.zeros((2, 3, 5, 5), np.float32), np.zeros((4, 3, 3, 3), np.float32)
    with pytest.raises(ValueError, match=r"coef must have shape \(4, 2\)"):
        conv.conv2d_affine_forward(x, w, 1, 1, np.zeros((3, 2)))
    with pytest.raises(ValueError, match=r"residual must have shape \(2, 4, 5, 5\)"):
        conv.conv2d_affine_forward(x, w, 1, 1, np.zeros((4, 2)), residual=np.zeros((2, 4, 5)))


@settings(deadline=None, max_examples=60)
@given(s=conv_settings(), dtype=float_dtypes, seed=seeds, chunk=chunk_bytes, path=kernel_paths)
def test_conv_backward_matches_reference(s: ConvSetting, dtype, seed: int, chunk, path: str):
    x, w, gy = _conv_arrays(s, dtype, seed)
    with _conv_config(chunk, path):
        gx, gw = conv.conv2d_backward(gy, x, w, s.stride, s.padding)
        gx_only = conv.conv2d_grad_input(gy, w, s.x_shape, s.stride, s.padding)
        gw_only = conv.conv2d_grad_weight(gy, x, s.w_shape, s.stride, s.padding)
    gx_ref = ref.conv2d_grad_input(gy, w, s.x_shape, s.stride, s.padding)
    gw_ref = ref.conv2d_grad_weight(gy, x, s.w_shape, s.stride, s.padding)
    gx_mag = ref.conv2d_grad_input(np.abs(gy), np.abs(w), s.x_shape, s.stride, s.padding)
    gw_mag = ref.conv2d_grad_weight(np.abs(gy), np.abs(x), s.w_shape, s.stride, s.padding)
    for got in (gx, gx_only):
        assert_close(got, gx_ref, gx_mag)
    for got in (gw, gw_only):
        assert_close(got, gw_ref, gw_mag)


@pytest.mark.parametrize(
    "kh, kw, stride, padding",
    [
        (2, 3, 1, 0),  # non-square, even kernel
        (3, 1, 1, 2),  # non-square: grad_x takes the scatter (col2im) path
        (3, 3, 1, 2),  # stride 1, padding kh-1: flipped-weight grad_x with padding 0
        (3, 3, 1, 3),  # padding > kh-1: scatter path even at stride 1
        (5, 5, 3, 2),  # stride 3
        (4, 4, 2, 3),
    ],
)
@pytest.mark.parametrize("path", ["auto", "im2col"])
def test_conv_general_geometry_matches_reference(
    kh: int, kw: int, stride: int, padding: int, path: str
):
    # the hypothesis tests draw ResNet-like settings; these cover the rest of the API
    s = ConvSetting(n=3, c=2, k=3, h=7, w=8, kh=kh, kw=kw, stride=stride, padding=padding)
    x, w, gy = _conv_arrays(s, np.float64, 7)
    with _conv_config(None, path):
        y = conv.conv2d_forward(x, w, stride, padding)
        gx, gw = conv.conv2d_backward(gy, x, w, stride, padding)
    np.testing.assert_allclose(y, ref.conv2d_forward(x, w, stride, padding), rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(
        gx, ref.conv2d_grad_input(gy, w, s.x_shape, stride, padding), rtol=1e-10, atol=1e-10
    )
    np.testing.assert_allclose(
        gw, ref.conv2d_grad_weight(gy, x, s.w_shape, stride, padding), rtol=1e-10, atol=1e-10
    )


@pytest.mark.parametrize("path", ["auto", "im2col"])
@pytest.mark.parametrize("shape", dispatch.RESNET20_CONVS, ids=lambda s: s.name)
def test_conv_resnet20_shapes_match_reference(shape: dispatch.ConvShape, path: str):
    # the real shapes (2 images), on the kernels the table picks for them, and forced
    c, k, size, ksize, stride, padding = shape[1:]
    s = ConvSetting(2, c, k, size, size, ksize, ksize, stride, padding)
    x, w, gy = _conv_arrays(s, np.float32, 11)
    with _conv_config(None, path):
        y = conv.conv2d_forward(x, w, stride, padding)
        gx, gw = conv.conv2d_backward(gy, x, w, stride, padding)
    assert_close(
        y,
        ref.conv2d_forward(x, w, stride, padding),
        ref.conv2d_forward(np.abs(x), np.abs(w), stride, padding),
    )
    assert_close(
        gx,
        ref.conv2d_grad_input(gy, w, s.x_shape, stride, padding),
        ref.conv2d_grad_input(np.abs(gy), np.abs(w), s.x_shape, stride, padding),
    )
    assert_close(
        gw,
        ref.conv2d_grad_weight(gy, x, s.w_shape, stride, padding),
        ref.conv2d_grad_weight(np.abs(gy), np.abs(x), s.w_shape, stride, padding),
    )


@pytest.mark.parametrize("need_x, need_w", [(True, False), (False, True), (False, False)])
def test_conv_backward_skips_unrequested_gradients(need_x: bool, need_w: bool):
    s = ConvSetting(n=2, c=3, k=4, h=5, w=6, kh=3, kw=3, stride=2, padding=1)
    x, w, gy = _conv_arrays(s, np.float32, 0)
    gx, gw = conv.conv2d_backward(gy, x, w, 2, 1, need_input_grad=need_x, need_weight_grad=need_w)
    assert (gx is None) != need_x
    assert (gw is None) != need_w
    if need_x:
        np.testing.assert_array_equal(gx, conv.conv2d_grad_input(gy, w, s.x_shape, 2, 1))
    if need_w:
        np.testing.assert_array_equal(gw, conv.conv2d_grad_weight(gy, x, s.w_shape, 2, 1))


def test_conv_accepts_non_contiguous_and_mixed_dtypes():
    s = ConvSetting(n=2, c=3, k=4, h=6, w=5, kh=3, kw=3, stride=1, padding=1)
    x, w, _ = _conv_arrays(s, np.float64, 1)
    x_t = np.ascontiguousarray(x.transpose(0, 1, 3, 2)).transpose(0, 1, 3, 2)  # F-ish view
    assert not x_t.flags.c_contiguous
    y = conv.conv2d_forward(x_t, w.astype(np.float32), stride=1, padding=1)
    assert y.dtype == np.float64  # float64 wins, as in grad checks
    np.testing.assert_allclose(y, ref.conv2d_forward(x, w, 1, 1), rtol=1e-6, atol=1e-6)


def test_conv_rejects_bad_inputs():
    x = np.zeros((2, 3, 8, 8), np.float32)
    w = np.zeros((16, 16, 3, 3), np.float32)
    expected = r"input has 3 channels but weight expects 16 \(weight shape \(16, 16, 3, 3\)\)"
    with pytest.raises(ValueError, match=expected):
        conv.conv2d_forward(x, w, 1, 1)
    w = np.zeros((4, 3, 3, 3), np.float32)
    with pytest.raises(ValueError, match="too small"):
        conv.conv2d_forward(x[:, :, :1, :1], w, 1, 0)
    with pytest.raises(ValueError, match="stride"):
        conv.conv2d_forward(x, w, 0, 1)
    with pytest.raises(ValueError, match="padding"):
        conv.conv2d_forward(x, w, 1, -1)
    with pytest.raises(ValueError, match="4-D"):
        conv.conv2d_forward(x[0], w, 1, 1)
    with pytest.raises(ValueError, match="grad_y has shape"):
        conv.conv2d_backward(np.zeros((2, 4, 7, 8), np.float32), x, w, 1, 1)


# ------------------------------------------------------------- batch-norm: reference
def _directional_derivative(f, args: list[np.ndarray], i: int, v: np.ndarray) -> float:
    """d/dt f(args with args[i] + t*v) at t = 0, by central differences (float64)."""
    h = 1e-6
    plus = [a + h * v if j == i else a for j, a in enumerate(args)]
    minus = [a - h * v if j == i else a for j, a in enumerate(args)]
    return (f(*plus) - f(*minus)) / (2 * h)


@settings(deadline=None, max_examples=25)
@given(shape=nchw_shapes(), relu=st.booleans(), seed=seeds)
def test_reference_batchnorm_train_backward_matches_finite_differences(shape, relu, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape) * 2 + 1
    gamma = rng.standard_normal(shape[1])
    beta = rng.standard_normal(shape[1])
    r = rng.standard_normal(shape)  # loss = sum(r * y)
    pre = ref.batchnorm_train_forward(x, gamma, beta, 1e-5)[0]
    # finite differences across the ReLU kink would measure a one-sided slope
    assume(not relu or np.min(np.abs(pre)) > 1e-3)

    def loss(x_, g_, b_):
        return np.sum(r * ref.batchnorm_train_forward(x_, g_, b_, 1e-5, relu)[0])

    y, mean, _, invstd = ref.batchnorm_train_forward(x, gamma, beta, 1e-5, relu)
    grads = ref.batchnorm_train_backward(r, x, y, gamma, mean, invstd, relu)
    for i, arg in enumerate([x, gamma, beta]):
        v = rng.standard_normal(arg.shape)
        numeric = _directional_derivative(loss, [x, gamma, beta], i, v)
        np.testing.assert_allclose(np.sum(grads[i] * v), numeric, rtol=1e-5, atol=1e-6)


# --------------------------------------------------------- batch-norm: fast == ref
def _bn_arrays(shape, dtype, seed: int):
    """x with a per-draw offset and scale (so mean and variance are not 0 and 1), affine
    parameters, an upstream gradient and running statistics."""
    rng = np.random.default_rng(seed)
    c = shape[1]
    offset, scale = rng.uniform(-5, 5), rng.uniform(0.1, 10)
    x = (offset + scale * rng.standard_normal(shape)).astype(dtype)
    gamma = rng.standard_normal(c).astype(dtype)
    beta = rng.standard_normal(c).astype(dtype)
    gy = rng.standard_normal(shape).astype(dtype)
    running_mean = (offset + rng.standard_normal(c)).astype(dtype)
    running_var = (scale**2 * rng.uniform(0.5, 2, c)).astype(dtype)
    return x, gamma, beta, gy, running_mean, running_var


def _pc(v: np.ndarray) -> np.ndarray:
    return np.asarray(v, dtype=np.float64).reshape(1, -1, 1, 1)


# The ReLU kink needs no special care in these comparisons: the forward ReLU is continuous
# (a pre-activation of +-1e-9 gives an output within atol of 0 either way), and both
# backward implementations receive the same `y`, hence the same mask.


@settings(deadline=None, max_examples=30)
@given(shape=nchw_shapes(), dtype=float_dtypes, relu=st.booleans(), seed=seeds)
def test_batchnorm_train_matches_reference(shape, dtype, relu: bool, seed: int):
    x, gamma, beta, gy, _, _ = _bn_arrays(shape, dtype, seed)
    eps = 1e-5
    y, mean, var, invstd = bn.batchnorm_train_forward(x, gamma, beta, eps, relu)
    y_r, mean_r, var_r, invstd_r = ref.batchnorm_train_forward(x, gamma, beta, eps, relu)
    xhat_mag = np.abs(x.astype(np.float64) - _pc(mean_r)) * _pc(invstd_r)
    # float32 x carries a relative error of ~eps32 * |x|, amplified by invstd
    x_mag = (np.abs(x) + np.abs(_pc(mean_r))) * _pc(invstd_r)
    assert_close(y, y_r, np.abs(_pc(gamma)) * (xhat_mag + x_mag) + np.abs(_pc(beta)))
    assert_close(mean, mean_r, np.abs(x).max(axis=(0, 2, 3)))
    assert_close(var, var_r, var_r + np.abs(mean_r) * np.abs(x).max(axis=(0, 2, 3)))
    assert_close(invstd, invstd_r, invstd_r)

    # backward: both implementations get the fast forward's outputs
    dx, dgamma, dbeta = bn.batchnorm_train_backward(gy, x, y, gamma, mean, invstd, relu)
    dx_r, dgamma_r, dbeta_r = ref.batchnorm_train_backward(gy, x, y, gamma, mean, invstd, relu)
    g = np.abs(gy.astype(np.float64))
    xhat = np.abs(x - _pc(mean)) * _pc(invstd) + x_mag
    g_mean, gx_mean = g.mean(axis=(0, 2, 3)), (g * xhat).mean(axis=(0, 2, 3))
    dx_mag = np.abs(_pc(gamma) * _pc(invstd)) * (g + _pc(g_mean) + xhat * _pc(gx_mean))
    assert_close(dx, dx_r, dx_mag)
    assert_close(dgamma, dgamma_r, (g * xhat).sum(axis=(0, 2, 3)))
    assert_close(dbeta, dbeta_r, g.sum(axis=(0, 2, 3)))


@settings(deadline=None, max_examples=30)
@given(shape=nchw_shapes(), dtype=float_dtypes, relu=st.booleans(), seed=seeds)
def test_batchnorm_eval_matches_reference(shape, dtype, relu: bool, seed: int):
    x, gamma, beta, gy, rmean, rvar = _bn_arrays(shape, dtype, seed)
    eps = 1e-5
    y = bn.batchnorm_eval_forward(x, gamma, beta, rmean, rvar, eps, relu)
    y_r = ref.batchnorm_eval_forward(x, gamma, beta, rmean, rvar, eps, relu)
    invstd = 1 / np.sqrt(_pc(rvar) + eps)
    xhat_mag = (np.abs(x) + np.abs(_pc(rmean))) * invstd
    assert_close(y, y_r, np.abs(_pc(gamma)) * xhat_mag + np.abs(_pc(beta)))

    grads = bn.batchnorm_eval_backward(gy, x, y, gamma, beta, rmean, rvar, eps, relu)
    grads_r = ref.batchnorm_eval_backward(gy, x, y, gamma, beta, rmean, rvar, eps, relu)
    g = np.abs(gy.astype(np.float64))
    assert_close(grads[0], grads_r[0], g * np.abs(_pc(gamma)) * invstd)
    assert_close(grads[1], grads_r[1], (g * xhat_mag).sum(axis=(0, 2, 3)))
    assert_close(grads[2], grads_r[2], g.sum(axis=(0, 2, 3)))


def test_batchnorm_statistics_survive_a_large_offset():
    # float32 data with mean 1000 and std 0.01: the naive E[x^2] - E[x]^2 in float32 would
    # lose every digit of the variance; the kernel's shifted float64 sums must not
    rng = np.random.default_rng(3)
    x = (1000 + 0.01 * rng.standard_normal((8, 2, 16, 16))).astype(np.float32)
    ones, zeros = np.ones(2, np.float32), np.zeros(2, np.float32)
    _, mean, var, _ = bn.batchnorm_train_forward(x, ones, zeros, 0.0)
    _, mean_r, var_r, _ = ref.batchnorm_train_forward(x, ones, zeros, 0.0)
    np.testing.assert_allclose(mean, mean_r, rtol=1e-6)
    np.testing.assert_allclose(var, var_r, rtol=1e-4)


@settings(deadline=None, max_examples=20)
@given(shape=nchw_shapes(min_per_channel=1), dtype=float_dtypes, seed=seeds,
       min_elements=st.sampled_from([1, 7, None]))
def test_add_relu_and_relu_backward_match_reference(shape, dtype, seed: int, min_elements):
    """Also with the arrays split between the cores (small `_MIN_ELEMENTS`), which the
    drawn shapes are too small to trigger at the kernels' own threshold."""
    rng = np.random.default_rng(seed)
    a, b, gy = (rng.standard_normal(shape).astype(dtype) for _ in range(3))
    with mock.patch.object(bn, "_MIN_ELEMENTS", min_elements or bn._MIN_ELEMENTS):
        y = bn.add_relu_forward(a, b)
        g = bn.relu_backward(gy, y)
    np.testing.assert_array_equal(y, ref.add_relu_forward(a, b))
    assert y.dtype == dtype
    np.testing.assert_array_equal(g, ref.relu_backward(gy, y))
    assert g.dtype == dtype


def test_batchnorm_rejects_bad_inputs():
    x = np.zeros((2, 3, 4, 4), np.float32)
    c3, c4 = np.ones(3, np.float32), np.ones(4, np.float32)
    with pytest.raises(ValueError, match=r"gamma must have shape \(3,\)"):
        bn.batchnorm_train_forward(x, c4, c3, 1e-5)
    with pytest.raises(ValueError, match="4-D"):
        bn.batchnorm_train_forward(x[0], c3, c3, 1e-5)
    with pytest.raises(ValueError, match="eps"):
        bn.batchnorm_eval_forward(x, c3, c3, c3, c3, -1.0)
    with pytest.raises(ValueError, match="grad_y has shape"):
        bn.batchnorm_train_backward(x[:1], x, x, c3, c3, c3)
    with pytest.raises(ValueError, match="shapes differ"):
        bn.add_relu_forward(x, x[:1])
