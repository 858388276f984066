"""The NumPy integer reference (`kernels/int8_reference.py`) against float64 maths."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from strategies import seeds

from minitorch_compress.kernels import int8_reference as ir
from minitorch_compress.kernels.reference import conv2d_forward

int32s = st.integers(min_value=ir.INT32_MIN, max_value=ir.INT32_MAX)
reals = st.floats(min_value=1e-6, max_value=1e4, allow_nan=False) | st.floats(
    min_value=-1e4, max_value=-1e-6, allow_nan=False)


def round_half_away(x: np.ndarray) -> np.ndarray:
    return np.sign(x) * np.floor(np.abs(x) + 0.5)


def rounding_bound(*scales: ir.Requant | None) -> float:
    """How far the sum of these requantized terms can be from the exact real sum: each term
    rounds twice, SRDHM (1/2 before the right shift) then the shift (1/2)."""
    return sum(0.5 + 0.5 * 2.0 ** -np.maximum(np.asarray(r.shift), 0).min()
               for r in scales if r is not None) + 1e-9


# ------------------------------------------------------------------ multipliers
@given(reals)
@example(0.999999999999)  # rounds up to 2^31: must renormalise
@example(1.0)
@example(-0.5)
def test_quantize_multiplier_represents_the_real_value(real):
    multiplier, shift = ir.quantize_multiplier(real)
    assert 2**30 <= abs(multiplier) < 2**31
    assert np.sign(multiplier) == np.sign(real)
    value = ir.multiplier_value(multiplier, shift)
    assert (shift >= 0) == (abs(value) < 1)
    assert value == pytest.approx(real, rel=2.0**-30)


def test_quantize_multiplier_of_zero_and_bad_values():
    assert ir.quantize_multiplier(0.0) == (0, 0)
    for bad in (np.inf, np.nan, 2.0**31):
        with pytest.raises(ValueError):
            ir.quantize_multiplier(bad)


@given(int32s, int32s)
@example(ir.INT32_MIN, ir.INT32_MIN)
@example(-(2**30), 1)  # -0.5 exactly: gemmlowp rounds ties up -> 0
@example(2**30, 1)
def test_srdhm_is_rounded_doubling_high_product(a, b):
    got = int(ir.saturating_rounding_doubling_high_mul(a, b))
    if a == b == ir.INT32_MIN:
        assert got == ir.INT32_MAX
        return
    # Python ints are exact: floor(a b / 2^31 + 1/2), the nearest integer, ties up
    assert got == (a * b + 2**30) // 2**31


@given(int32s, st.integers(min_value=0, max_value=31))
@example(-5, 1)  # -2.5 -> -3
@example(5, 1)  # 2.5 -> 3
def test_rounding_divide_by_pot_rounds_half_away(x, exponent):
    got = int(ir.rounding_divide_by_pot(x, exponent))
    assert got == round_half_away(np.float64(x) / 2.0**exponent) or (
        # float64 cannot hold every half exactly for |x| near 2^31: compare in integers
        abs(2 * (got * 2**exponent - x)) <= 2**exponent)
    assert abs(2 * (got * 2**exponent - x)) <= 2**exponent


@given(st.integers(min_value=-(2**24), max_value=2**24), reals)
@example(2**24, 3000.0)  # left shift that saturates
def test_requantize_is_within_one_rounding_of_the_product(acc, real):
    multiplier, shift = ir.quantize_multiplier(real)
    got = int(ir.requantize(np.int64(acc), multiplier, shift))
    exact = acc * ir.multiplier_value(multiplier, shift)
    scaled = acc * 2.0 ** max(-shift, 0)
    if abs(scaled) > ir.INT32_MAX:  # the left shift saturated: the result is the clamp's
        exact = np.clip(scaled, ir.INT32_MIN, ir.INT32_MAX) * ir.multiplier_value(
            multiplier, max(shift, 0))
    # SRDHM rounds (<= 1/2 before the shift), then the shift rounds again (<= 1/2)
    assert abs(got - exact) <= 0.5 + 0.5 * 2.0 ** -max(shift, 0) + 1e-9


# ------------------------------------------------------------------ codes
@given(seeds, st.floats(-50, -0.01) | st.just(0.0), st.floats(0.01, 50) | st.just(0.0))
def test_quantize_round_trip_within_half_a_step(seed, low, high):
    scale, zero = ir.choose_scale(low, high)
    assert 0 <= zero <= 255
    x = np.random.default_rng(seed).uniform(low, high, 64)
    back = ir.dequantize(ir.quantize(x, scale, zero), scale, zero)
    inside = (x >= -zero * scale) & (x <= (255 - zero) * scale)
    assert np.all(np.abs(back - x)[inside] <= scale / 2 * (1 + 1e-9))
    assert ir.dequantize(np.uint8(zero), scale, zero) == 0.0


# ------------------------------------------------------------------ integer conv
conv_problems = st.tuples(
    st.integers(1, 2), st.integers(1, 5), st.integers(1, 4), st.integers(1, 7),
    st.sampled_from([1, 3]), st.sampled_from([1, 2]), st.integers(0, 1), seeds)


def _conv_inputs(problem):
    n, c, k, hw, ksize, stride, padding, seed = problem
    rng = np.random.default_rng(seed)
    q = rng.integers(0, 256, (n, c, hw + ksize, hw + ksize), dtype=np.uint8)
    w = rng.integers(-128, 128, (k, c, ksize, ksize), dtype=np.int8)
    return q, int(rng.integers(0, 256)), w, stride, padding


@given(conv_problems)
def test_conv2d_int_equals_float64_conv_of_the_offsets(problem):
    q, zero, w, stride, padding = _conv_inputs(problem)
    got = ir.conv2d_int(q, zero, w, stride, padding)
    # the float reference on integer-valued float64 arrays: exact below 2^53
    expected = conv2d_forward(q.astype(np.float64) - zero, w.astype(np.float64), stride, padding)
    assert got.dtype == np.int64
    np.testing.assert_array_equal(got, expected.astype(np.int64))


@given(conv_problems)
def test_exact_gemm_via_float64_equals_the_int64_loop(problem):
    q, zero, w, stride, padding = _conv_inputs(problem)
    np.testing.assert_array_equal(ir.conv2d_int_via_float64(q, zero, w, stride, padding),
                                  ir.conv2d_int(q, zero, w, stride, padding))


def test_exact_gemm_via_float64_at_the_extremes():
    """All-255 input with zero point 0 times all -128 weights: the largest sums there are."""
    q = np.full((1, 64, 8, 8), 255, np.uint8)
    w = np.full((4, 64, 3, 3), -128, np.int8)
    got = ir.conv2d_int_via_float64(q, 0, w, 1, 1)
    assert got.min() == -255 * 128 * 64 * 9
    np.testing.assert_array_equal(got, ir.conv2d_int(q, 0, w, 1, 1))


@given(conv_problems, st.integers(1, 4), st.floats(-1.0, 1.0), st.floats(0.2, 1.0))
def test_grid_weights_compute_exactly_as_two_integer_sums(problem, bits, beta, density):
    """conv(x, w) = s_x * step * A + s_x * beta * B for w = mask * (step * k + beta)."""
    q, zero, w, stride, padding = _conv_inputs(problem)
    rng = np.random.default_rng(problem[-1] + 1)
    k = rng.integers(0, 2**bits, w.shape)
    mask = (rng.random(w.shape) < density).astype(np.uint8)
    step, x_scale = 0.037, 0.011
    weights = mask * (step * k + beta)
    real = conv2d_forward(x_scale * (q.astype(np.float64) - zero), weights, stride, padding)
    a = ir.conv2d_int(q, zero, (k * mask).astype(np.int8), stride, padding)
    b = ir.conv2d_int(q, zero, mask, stride, padding)
    np.testing.assert_allclose(x_scale * (step * a + beta * b), real, rtol=1e-9, atol=1e-9)


# ------------------------------------------------------------------ layer and add
def _layer(rng, c, k, ksize, stride, with_mask, with_residual, relu):
    x_scale, x_zero = 0.02, int(rng.integers(0, 256))
    out_scale, out_zero = 0.05, int(rng.integers(0, 256))
    step = rng.uniform(0.001, 0.02, k) * rng.choice([-1, 1], k)
    beta = rng.uniform(-0.1, 0.1, k)
    bias_real = rng.uniform(-1, 1, k)
    if with_mask:
        codes = rng.integers(0, 16, (k, c, ksize, ksize))
        mask = (rng.random(codes.shape) < 0.7).astype(np.uint8)
        weight = (codes * mask).astype(np.int8)
        real_w = mask * (step[:, None, None, None] * codes + beta[:, None, None, None])
    else:
        weight = rng.integers(-127, 128, (k, c, ksize, ksize)).astype(np.int8)
        mask = None
        real_w = step[:, None, None, None] * weight
    bias = np.round(bias_real / (x_scale * step)).astype(np.int32)
    res_scale, res_zero = 0.03, int(rng.integers(0, 256))
    layer = ir.IntConv(
        weight=weight, bias=bias, scale_a=ir.Requant.from_real(x_scale * step / out_scale),
        mask=mask, scale_b=ir.Requant.from_real(x_scale * beta / out_scale) if with_mask else None,
        stride=stride, padding=ksize // 2, in_zero_point=x_zero, out_zero_point=out_zero,
        relu=relu, residual_scale=ir.Requant.from_real(res_scale / out_scale)
        if with_residual else None, residual_zero_point=res_zero)
    real = dict(x=(x_scale, x_zero), out=(out_scale, out_zero), res=(res_scale, res_zero),
                w=real_w, bias=bias * x_scale * step)
    return layer, real


@settings(deadline=None)
@given(conv_problems, st.booleans(), st.booleans(), st.booleans())
def test_conv_layer_is_within_two_codes_of_the_float64_layer(problem, with_mask,
                                                             with_residual, relu):
    """Up to three requantized terms (A, B, residual), each within one rounding bound."""
    n, c, k, hw, ksize, stride, _, seed = problem
    rng = np.random.default_rng(seed)
    layer, real = _layer(rng, c, k, ksize, stride, with_mask, with_residual, relu)
    q = rng.integers(0, 256, (n, c, hw + ksize, hw + ksize), dtype=np.uint8)
    y = conv2d_forward(ir.dequantize(q, *real["x"]), real["w"], stride, ksize // 2)
    y = y + real["bias"][:, None, None]
    residual = None
    if with_residual:
        residual = rng.integers(0, 256, y.shape, dtype=np.uint8)
        y = y + ir.dequantize(residual, *real["res"])
    out_scale, out_zero = real["out"]
    expected = np.clip(y / out_scale + out_zero, out_zero if relu else 0, 255)
    got = ir.conv_layer(q, layer, residual)
    assert got.dtype == np.uint8 and got.shape == y.shape
    bound = rounding_bound(layer.scale_a, layer.scale_b, layer.residual_scale)
    assert np.abs(got - expected).max() <= bound
    fast = ir.conv_layer(q, layer, residual, exact_gemm=ir.conv2d_int_via_float64)
    np.testing.assert_array_equal(fast, got)


def test_conv_layer_saturates_and_clamps_relu():
    rng = np.random.default_rng(0)
    layer, _ = _layer(rng, 3, 4, 3, 1, False, False, relu=True)
    q = np.full((1, 3, 5, 5), 255, np.uint8)
    huge = ir.IntConv(**{**layer.__dict__, "scale_a": ir.Requant.from_real(np.full(4, 100.0))})
    out = ir.conv_layer(q, huge)
    assert set(np.unique(out)) <= {layer.out_zero_point, 255}


def test_conv_layer_requires_residual_exactly_when_configured():
    rng = np.random.default_rng(1)
    layer, _ = _layer(rng, 2, 2, 1, 1, False, True, relu=True)
    with pytest.raises(ValueError):
        ir.conv_layer(np.zeros((1, 2, 3, 3), np.uint8), layer)


@given(seeds, st.floats(0.01, 1), st.floats(0.01, 1), st.floats(0.01, 1), st.booleans())
def test_add_int_is_within_the_rounding_bound_of_the_float_sum(seed, sa, sb, so, relu):
    rng = np.random.default_rng(seed)
    a, b = (rng.integers(0, 256, 50, dtype=np.uint8) for _ in range(2))
    za, zb, zo = (int(z) for z in rng.integers(0, 256, 3))
    scale_a, scale_b = (ir.Requant.from_real(np.float64(s / so)) for s in (sa, sb))
    got = ir.add_int(a, za, scale_a, b, zb, scale_b, zo, relu)
    real = ir.dequantize(a, sa, za) + ir.dequantize(b, sb, zb)
    expected = np.clip(real / so + zo, zo if relu else 0, 255)
    assert np.abs(got - expected).max() <= rounding_bound(scale_a, scale_b)
