"""The 16-lane integer vector operations of `kernels/simd_int8.py`: each compiled operation
equals its NumPy twin, and the twins equal `int8_reference` (so a kernel stepped under
NUMBA_DISABLE_JIT computes what the compiled one does)."""

from __future__ import annotations

import numpy as np
from hypothesis import example, given, settings
from hypothesis import strategies as st
from numba import njit
from strategies import seeds

from minitorch_compress.kernels import int8_reference as ir
from minitorch_compress.kernels import simd_int8 as s

INT32 = (-(2**31), 2**31)


@njit
def compiled_requantize(acc, multiplier, left, right, out):
    s.istore(out, 0, s.requantize(s.iload(acc, 0), s.iload(multiplier, 0), s.iload(left, 0),
                                  s.iload(right, 0)))


@njit
def compiled_requantize_below_one(acc, multiplier, right, shift, out):
    s.istore(out, 0, s.requantize_below_one(s.ishl(s.iload(acc, 0), s.iload(shift, 0)),
                                            s.iload(multiplier, 0), s.iload(right, 0)))


@njit
def compiled_clamp_sum(a, b, c, base, low, out):
    s.istore(out, 0, s.clamp_sum(s.iload(a, 0), s.iload(b, 0), s.iload(c, 0), base, low, 255))


@njit
def compiled_clamp_sum_bounded(a, b, c, base, low, out):
    s.istore(out, 0, s.clamp_sum_bounded(s.iload(a, 0), s.iload(b, 0), s.iload(c, 0), base,
                                         low, 255))


@njit
def compiled_bytes(codes, offset, add, out8, out32):
    """out32 = codes[offset:offset + 16] + add (as int32 lanes); out8 = the same clipped."""
    v = s.iadd(s.iload_u8(codes, offset), s.ibroadcast(add))
    s.istore(out32, 0, v)
    s.istore_u8(out8, 0, s.clamp_sum(v, s.izero(), s.izero(), 0, 0, 255))


@njit
def compiled_dots(acc, a, b, out_vnni_free, table, index, out_broadcast):
    s.istore(out_vnni_free, 0, s.dpbusd_portable(s.iload(acc, 0), s.iload(a, 0),
                                                 s.iload(b, 0)))
    s.istore(out_broadcast, 0, s.ibroadcast_at(table, index))


def requant_lanes(rng, magnitudes):
    """16 multipliers (multiplier, shift) from reals of the given log10 range, both signs."""
    real = 10.0 ** rng.uniform(*magnitudes, 16) * rng.choice([-1, 1], 16)
    requant = ir.Requant.from_real(real)
    shift = requant.shift.astype(np.int64)
    return (requant.multiplier, shift, np.maximum(-shift, 0).astype(np.int32),
            np.maximum(shift, 0).astype(np.int32))


@settings(deadline=None, max_examples=200)
@given(seeds, st.sampled_from([(-9, -3), (-3, 0), (-0.3, 2), (2, 9)]),
       st.sampled_from([2**8, 2**20, 2**31]))
@example(seed=0, magnitudes=(2, 9), size=2**31)  # left shifts that saturate
def test_requantize_equals_the_reference_lane_by_lane(seed, magnitudes, size):
    rng = np.random.default_rng(seed)
    acc = rng.integers(-size, size, 16).astype(np.int32)
    acc[:4] = [INT32[0], INT32[1] - 1, 0, -1]
    multiplier, shift, left, right = requant_lanes(rng, magnitudes)
    expected = ir.requantize(acc, multiplier, shift)
    out = np.zeros(16, np.int32)
    compiled_requantize(acc, multiplier, left, right, out)
    np.testing.assert_array_equal(out, expected)
    np.testing.assert_array_equal(s.requantize(acc, multiplier, left, right), expected)


@settings(deadline=None)
@given(seeds)
def test_requantize_below_one_after_a_left_shift(seed):
    """The residual's path of the int32 epilogue: (codes - z) << left (at most 255 << 20:
    no saturation), then the multiplier's mantissa and right shift; equal to the reference
    for multipliers below and above 1."""
    rng = np.random.default_rng(seed)
    d = rng.integers(-255, 256, 16).astype(np.int32)
    d[:2] = [-255, 255]
    multiplier, shift, left, right = requant_lanes(rng, (-9, 6))
    out = np.zeros(16, np.int32)
    compiled_requantize_below_one(d, multiplier, right, left, out)
    np.testing.assert_array_equal(out, ir.requantize(d, multiplier, shift))
    np.testing.assert_array_equal(s.requantize_below_one(s.ishl(d, left), multiplier, right),
                                  out)


def test_requantize_rounds_ties_like_gemmlowp():
    """acc * 2^30 / 2^31 = acc / 2: SRDHM rounds the halves up (-0.5 -> 0, 0.5 -> 1), the
    rounding shift rounds its halves away from zero."""
    acc = np.arange(-8, 8, dtype=np.int32)
    multiplier = np.full(16, 2**30, np.int32)
    zero = np.zeros(16, np.int32)
    out = np.zeros(16, np.int32)
    compiled_requantize(acc, multiplier, zero, zero, out)
    np.testing.assert_array_equal(out, np.floor(acc / 2 + 0.5).astype(np.int32))
    compiled_requantize(acc, multiplier, zero, np.ones(16, np.int32), out)  # acc / 4
    np.testing.assert_array_equal(out, ir.requantize(acc, multiplier, np.ones(16, np.int64)))
    assert out[acc == 2].item() == 1 and out[acc == -2].item() == -1  # 0.5 -> 1, -0.5 -> -1


@settings(deadline=None)
@given(seeds)
def test_clamp_sum_does_not_overflow(seed):
    rng = np.random.default_rng(seed)
    a, b, c = (rng.integers(*INT32, 16).astype(np.int32) for _ in range(3))
    # (2^31 - 1) + (2^31 - 1) - 2^31 = 2^31 - 2: a saturating 32-bit sum would give -1
    a[0], b[0], c[0] = INT32[1] - 1, INT32[1] - 1, INT32[0]
    a[1], b[1], c[1] = INT32[0], INT32[0], INT32[1] - 1
    out = np.zeros(16, np.int32)
    compiled_clamp_sum(a, b, c, 7, 3, out)
    total = 7 + a.astype(np.int64) + b + c
    np.testing.assert_array_equal(out, np.clip(total, 3, 255))
    assert out[0] == 255 and out[1] == 3
    np.testing.assert_array_equal(s.clamp_sum(a, b, c, 7, 3, 255), out)


@settings(deadline=None)
@given(seeds, st.integers(0, 255), st.integers(0, 255))
def test_clamp_sum_bounded_equals_clamp_sum_within_its_bounds(seed, base, low):
    rng = np.random.default_rng(seed)
    a = rng.integers(*INT32, 16).astype(np.int32)
    a[:4] = [INT32[0], INT32[1] - 1, 2**29 + 1, -(2**29) - 1]
    b = rng.integers(-(2**27) + 1, 2**27, 16).astype(np.int32)
    c = rng.integers(-(2**27) + 1, 2**27, 16).astype(np.int32)
    c[:2] = [-(2**27) + 1, 2**27 - 1]
    expected, out = np.zeros(16, np.int32), np.zeros(16, np.int32)
    compiled_clamp_sum(a, b, c, base, low, expected)
    compiled_clamp_sum_bounded(a, b, c, base, low, out)
    np.testing.assert_array_equal(out, expected)
    np.testing.assert_array_equal(s.clamp_sum_bounded(a, b, c, base, low, 255), expected)


@settings(deadline=None)
@given(seeds, st.integers(0, 16))
def test_byte_loads_and_stores(seed, offset):
    rng = np.random.default_rng(seed)
    codes = rng.integers(0, 256, 32).astype(np.uint8)
    out8, out32 = np.zeros(16, np.uint8), np.zeros(16, np.int32)
    compiled_bytes(codes, offset, -100, out8, out32)
    window = codes[offset:offset + 16].astype(np.int32)
    np.testing.assert_array_equal(out32, window - 100)
    np.testing.assert_array_equal(out8, np.clip(window - 100, 0, 255))


@settings(deadline=None)
@given(seeds)
def test_portable_dot_and_broadcast_load(seed):
    rng = np.random.default_rng(seed)
    acc = rng.integers(-(2**20), 2**20, 16).astype(np.int32)
    a, b = (rng.integers(*INT32, 16).astype(np.int32) for _ in range(2))
    table = rng.integers(*INT32, 40).astype(np.int32)
    index = int(rng.integers(0, 40))
    dots, broadcast = np.zeros(16, np.int32), np.zeros(16, np.int32)
    compiled_dots(acc, a, b, dots, table, index, broadcast)
    ua = a.view(np.uint8).reshape(16, 4).astype(np.int64)
    sb = b.view(np.int8).reshape(16, 4).astype(np.int64)
    np.testing.assert_array_equal(dots, acc + (ua * sb).sum(axis=1))
    np.testing.assert_array_equal(broadcast, np.full(16, table[index]))
