"""Integer-only inference ops in NumPy: slow, obviously correct, the tests' ground truth.

The arithmetic is gemmlowp's / TFLite's (Jacob et al. 2018), written out in int64 NumPy so a
student can read each step and a fast kernel can be checked against it bit for bit.

A real activation tensor x is held as unsigned 8-bit codes q with one scale s > 0 and one
zero point z (an integer in [0, 255]) for the whole tensor:

    x = s * (q - z),    q = clip(round(x / s) + z, 0, 255)

so the real value 0 is exactly the code z (padding a quantized tensor means padding with z).

A conv layer computes, for each output channel o, two integer sums over its window
(``d = q - z_x``, the input codes minus their zero point, 0 in the padding)::

    A[o] = sum d * wq[o]          wq: int8 weight codes (K, C, kh, kw)
    B[o] = sum d * mask[o]        mask: 0/1 (only for weights on an asymmetric grid)

because a weight on the course's grid (`compression/quant.py`) is
``w = mask * (step * k + beta)`` with integer k: then
``conv(x, w) = s_x * step * A + s_x * beta * B``. Per-channel symmetric weights
(``w = step * wq``) have no B term. Each sum reaches the output's scale through its own
fixed-point multiplier (`requantize`), as does the residual of a ResNet block::

    out = clip(z_out + rq(A + bias_q, M_A) + rq(B, M_B) + rq(res - z_res, M_res), lo, 255)

with ``lo = z_out`` after a ReLU (the clamp is the ReLU) and 0 otherwise.

Requantization (`requantize`): a real multiplier M is stored as an int32 ``multiplier`` in
[2^30, 2^31) (or its negative) and an integer ``shift`` with
``M = multiplier * 2^-(31 + shift)`` (`quantize_multiplier`); ``rq(acc, M)`` is gemmlowp's
``RoundingDivideByPOT(SaturatingRoundingDoublingHighMul(acc, multiplier), shift)``, with a
saturating left shift of acc first when shift < 0 (|M| >= 1, TFLite's
``MultiplyByQuantizedMultiplier``). Both steps round to nearest (SRDHM's ties go up,
RoundingDivideByPOT's away from zero).

Layouts: NCHW activations, (K, C, kh, kw) weights, as in `kernels/reference.py`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from minitorch_compress.kernels.rules import conv2d_output_size

INT32_MIN = -(2**31)
INT32_MAX = 2**31 - 1
U8_MAX = 255


# ------------------------------------------------------------------ activation codes
def choose_scale(low: float, high: float) -> tuple[float, int]:
    """Scale and zero point of the u8 grid that covers [low, high] with 0 on a code.

    The range is first widened to include 0 (ReLU outputs have low = 0, so z = 0 and all
    256 codes are non-negative values).

    Returns:
        (scale, zero_point): scale = (high - low) / 255 (1.0 for an empty range),
        zero_point = round(-low / scale) in [0, 255].
    """
    low, high = min(float(low), 0.0), max(float(high), 0.0)
    if high == low:
        return 1.0, 0
    scale = (high - low) / U8_MAX
    return scale, int(np.clip(np.round(-low / scale), 0, U8_MAX))


def quantize(x: np.ndarray, scale: float, zero_point: int) -> np.ndarray:
    """Real values -> u8 codes: clip(round(x / scale) + zero_point, 0, 255).

    Rounding is numpy's (half to even). Any shape in, uint8 of the same shape out.
    """
    codes = np.round(np.asarray(x, np.float64) / scale) + zero_point
    return np.clip(codes, 0, U8_MAX).astype(np.uint8)


def dequantize(q: np.ndarray, scale: float, zero_point: int) -> np.ndarray:
    """u8 codes -> real values scale * (q - zero_point), float64, same shape."""
    return scale * (np.asarray(q, np.int64) - zero_point).astype(np.float64)


# ------------------------------------------------------------------ fixed-point multipliers
def quantize_multiplier(real: float) -> tuple[int, int]:
    """A real multiplier as (multiplier, shift) with real ~= multiplier * 2^-(31 + shift).

    |multiplier| is in [2^30, 2^31) (31 significant bits) and carries real's sign; shift is
    >= 0 when the stored value is below 1 in size (a right shift), negative otherwise (a
    left shift of the accumulator first; a real just below 1 can round up to 1). real = 0
    gives (0, 0).

    Raises:
        ValueError: real not finite, or |real| >= 2^31 (no int32 left shift reaches it).
    """
    real = float(real)
    if not np.isfinite(real) or abs(real) >= 2.0**31:
        raise ValueError(f"multiplier must be finite and below 2^31 in size, got {real}")
    if real == 0.0:
        return 0, 0
    fraction, exponent = np.frexp(real)  # real = fraction * 2^exponent, |fraction| in [0.5, 1)
    multiplier = int(np.round(fraction * 2.0**31))
    if abs(multiplier) == 2**31:  # rounded up to 1.0: renormalise
        multiplier //= 2
        exponent += 1
    return multiplier, -int(exponent)


def multiplier_value(multiplier: int, shift: int) -> float:
    """The real number that (multiplier, shift) stands for: multiplier * 2^-(31 + shift)."""
    return float(np.ldexp(float(multiplier), -(31 + int(shift))))


def saturating_rounding_doubling_high_mul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """gemmlowp's SRDHM: a * b / 2^31 rounded to nearest, ties up, for int32 a and b.

    (gemmlowp adds a nudge of 2^30, or 1 - 2^30 for a negative product, then divides with
    C's truncation toward zero: the nearest integer, with -0.5 going to 0 and 0.5 to 1.)

    The only product that overflows int32, INT32_MIN * INT32_MIN, saturates to INT32_MAX.
    Arrays broadcast; int64 out (values in the int32 range).
    """
    a, b = np.asarray(a, np.int64), np.asarray(b, np.int64)
    ab = np.array(a * b)  # exact in int64 (an array even for scalars: updated in place)
    # = sign(ab) * ((|ab| + nudge) >> 31), the nudge 2^30 for ab >= 0 and 2^30 - 1 below:
    # written in place because it runs over every accumulator of the network
    negative = ab < 0
    np.abs(ab, out=ab)
    ab += 1 << 30
    ab -= negative
    ab >>= 31
    np.negative(ab, out=ab, where=negative)
    if (b == INT32_MIN).any() and (a == INT32_MIN).any():
        ab = np.where((a == INT32_MIN) & (b == INT32_MIN), INT32_MAX, ab)
    return ab


def rounding_divide_by_pot(x: np.ndarray, exponent: np.ndarray) -> np.ndarray:
    """gemmlowp's RoundingDivideByPOT: round(x / 2^exponent), ties away from zero.

    x: int32-range integers, exponent: integers in [0, 31]; arrays broadcast, int64 out.
    """
    x, exponent = np.asarray(x, np.int64), np.asarray(exponent, np.int64)
    mask = (np.int64(1) << exponent) - 1
    remainder = x & mask
    threshold = (mask >> 1) + (x < 0)
    return (x >> exponent) + (remainder > threshold)


def requantize(acc: np.ndarray, multiplier: np.ndarray, shift: np.ndarray) -> np.ndarray:
    """acc * multiplier * 2^-(31 + shift), rounded, in integers only.

    For shift >= 0: RoundingDivideByPOT(SRDHM(acc, multiplier), shift); for shift < 0, acc
    is first shifted left by -shift and saturated to int32.

    Args:
        acc: int32-range accumulators (any shape).
        multiplier, shift: from `quantize_multiplier`, broadcast against acc (e.g. (K, 1, 1)
            per output channel of an (N, K, H, W) accumulator).

    Returns:
        int64 array of the broadcast shape.
    """
    acc = np.asarray(acc, np.int64)
    shift = np.asarray(shift, np.int64)
    left = np.maximum(-shift, 0)
    scaled = np.clip(acc << left, INT32_MIN, INT32_MAX) if left.any() else acc
    return rounding_divide_by_pot(saturating_rounding_doubling_high_mul(scaled, multiplier),
                                  np.maximum(shift, 0))


# ------------------------------------------------------------------ integer sums
def _padded_offsets(q: np.ndarray, zero_point: int, padding: int) -> np.ndarray:
    """(N, C, H, W) codes -> int64 codes minus the zero point, padded with 0 (= real 0)."""
    d = np.asarray(q, np.int64) - zero_point
    return np.pad(d, ((0, 0), (0, 0), (padding, padding), (padding, padding)))


def _window(d: np.ndarray, ky: int, kx: int, ho: int, wo: int, stride: int) -> np.ndarray:
    """The (A, B, Ho, Wo) view of padded `d` (A, B, H, W) that offset (ky, kx) multiplies."""
    return d[:, :, ky:ky + stride * (ho - 1) + 1:stride, kx:kx + stride * (wo - 1) + 1:stride]


def conv2d_int(q: np.ndarray, zero_point: int, w: np.ndarray, stride: int = 1,
               padding: int = 0) -> np.ndarray:
    """Integer conv ``acc[n,k,i,j] = sum_{c,ky,kx} w[k,c,ky,kx] * (qpad[n,c,..] - z)``.

    Args:
        q: u8 codes (N, C, H, W) with zero point `zero_point`; padding adds real zeros.
        w: integer weights (K, C, kh, kw) (int8 codes, or a 0/1 mask for the B sum).
        stride, padding: as in `kernels.reference.conv2d_forward`.

    Returns:
        int64 (N, K, Ho, Wo); for u8 x s8 and C * kh * kw < 2^15 every value fits int32.
    """
    n = q.shape[0]
    k, _, kh, kw = w.shape
    ho, wo = conv2d_output_size(q.shape[2], q.shape[3], kh, kw, stride, padding)
    d = _padded_offsets(q, zero_point, padding)
    w = np.asarray(w, np.int64)
    acc = np.zeros((n, k, ho, wo), np.int64)
    for ky in range(kh):
        for kx in range(kw):
            acc += np.einsum("nchw,kc->nkhw", _window(d, ky, kx, ho, wo, stride),
                             w[:, :, ky, kx])
    return acc


def conv2d_int_via_float64(q: np.ndarray, zero_point: int, w: np.ndarray, stride: int = 1,
                           padding: int = 0) -> np.ndarray:
    """Exact integer GEMM via float64: `conv2d_int`'s result, computed by BLAS.

    A float64 product or sum of integers is exact while it stays below 2^53 in size; here
    every partial sum is at most 255 * 255 * C * kh * kw (< 2^27 for ResNet-20), so the
    float64 GEMM on integer-valued operands returns exactly the integers `conv2d_int` does
    (tested), only much faster. Same arguments and result as `conv2d_int`.

    Raises:
        ValueError: a problem large enough that the bound above could fail.
    """
    n, c = q.shape[:2]
    k, _, kh, kw = w.shape
    if 255 * 255 * c * kh * kw >= 2**53:
        raise ValueError("conv too large for an exact float64 GEMM")
    ho, wo = conv2d_output_size(q.shape[2], q.shape[3], kh, kw, stride, padding)
    d = _padded_offsets(q, zero_point, padding).astype(np.float64).transpose(1, 0, 2, 3)
    # im2col with one row per (c, ky, kx) and one column per (n, i, j): a single 2-D GEMM
    columns = np.empty((c, kh, kw, n, ho, wo))
    for ky in range(kh):
        for kx in range(kw):
            columns[:, ky, kx] = _window(d, ky, kx, ho, wo, stride)
    acc = np.asarray(w, np.float64).reshape(k, -1) @ columns.reshape(c * kh * kw, -1)
    return acc.reshape(k, n, ho, wo).transpose(1, 0, 2, 3).astype(np.int64)


# ------------------------------------------------------------------ a whole layer
@dataclass(frozen=True)
class Requant:
    """One fixed-point multiplier per output channel (or one for the tensor).

    Attributes:
        multiplier: int32 values, shape (K,) or ().
        shift: int values of the same shape (see `quantize_multiplier`).
    """

    multiplier: np.ndarray
    shift: np.ndarray

    @classmethod
    def from_real(cls, real: np.ndarray) -> Requant:
        """The (multiplier, shift) pairs of each real multiplier in `real` (any shape)."""
        real = np.asarray(real, np.float64)
        pairs = [quantize_multiplier(r) for r in real.ravel()]
        multiplier = np.array([m for m, _ in pairs], np.int32).reshape(real.shape)
        shift = np.array([s for _, s in pairs], np.int32).reshape(real.shape)
        return cls(multiplier, shift)

    def real(self) -> np.ndarray:
        """The real multipliers these pairs stand for (float64, same shape)."""
        return np.ldexp(self.multiplier.astype(np.float64), -(31 + self.shift.astype(np.int64)))

    def apply(self, acc: np.ndarray, channel_axis: int = 1) -> np.ndarray:
        """`requantize` acc with these multipliers along `channel_axis` (per channel) or all
        of it (one multiplier)."""
        m, s = np.asarray(self.multiplier), np.asarray(self.shift)
        if m.ndim == 1:
            expand = (slice(None),) + (None,) * (np.ndim(acc) - 1 - channel_axis)
            m, s = m[expand], s[expand]
        return requantize(acc, m, s)


@dataclass(frozen=True)
class IntConv:
    """An integer conv layer (conv + folded batch norm, optional grid term, ReLU, residual).

    Attributes:
        weight: int8 codes (K, C, kh, kw).
        bias: int32 (K,), at the scale of the A sum (s_x * step[o]).
        scale_a: requantization of ``A + bias`` to the output's scale, per channel.
        mask: uint8 0/1 (K, C, kh, kw) for weights on an asymmetric grid (B sum), else None.
        scale_b: requantization of B (s_x * beta[o] / s_out), None without a mask.
        stride, padding: the conv's.
        in_zero_point: z of the input codes.
        out_zero_point: z of the output codes.
        relu: clamp the output to [out_zero_point, 255] (ReLU) instead of [0, 255].
        residual_scale: requantization of a residual (res - z_res) to the output's scale
            (one multiplier), None for a layer without residual.
        residual_zero_point: z of the residual codes.
    """

    weight: np.ndarray
    bias: np.ndarray
    scale_a: Requant
    mask: np.ndarray | None
    scale_b: Requant | None
    stride: int
    padding: int
    in_zero_point: int
    out_zero_point: int
    relu: bool
    residual_scale: Requant | None = None
    residual_zero_point: int = 0


def relu_clamp(values: np.ndarray, zero_point: int, relu: bool) -> np.ndarray:
    """The output codes: clip to [zero_point, 255] (ReLU: real 0 is the code zero_point) or
    to [0, 255]; uint8 out."""
    return np.clip(values, zero_point if relu else 0, U8_MAX).astype(np.uint8)


def add_int(a: np.ndarray, a_zero_point: int, a_scale: Requant, b: np.ndarray,
            b_zero_point: int, b_scale: Requant, out_zero_point: int,
            relu: bool = False) -> np.ndarray:
    """Residual add in integers: both inputs rescaled to the output's scale, then summed.

    out = clamp(z_out + rq(a - z_a, M_a) + rq(b - z_b, M_b)), with M = s_input / s_out.
    a, b: u8 codes of one shape; uint8 of that shape out.
    """
    total = (out_zero_point + a_scale.apply(np.asarray(a, np.int64) - a_zero_point)
             + b_scale.apply(np.asarray(b, np.int64) - b_zero_point))
    return relu_clamp(total, out_zero_point, relu)


def conv_layer(q: np.ndarray, layer: IntConv, residual: np.ndarray | None = None,
               exact_gemm=conv2d_int) -> np.ndarray:
    """u8 codes (N, C, H, W) -> u8 codes (N, K, Ho, Wo) of one integer layer.

    out = clamp(z_out + rq(A + bias, M_A) + rq(B, M_B) + rq(residual - z_res, M_res)) (see
    the module docstring); the B term only with a mask, the last only with a residual.

    Args:
        q: input codes with zero point ``layer.in_zero_point``.
        layer: the integer layer.
        residual: u8 codes (N, K, Ho, Wo), needed exactly when ``layer.residual_scale``.
        exact_gemm: `conv2d_int` or `conv2d_int_via_float64` (same integers).
    """
    if (residual is None) != (layer.residual_scale is None):
        raise ValueError("a residual is needed exactly when the layer has a residual_scale")
    acc = exact_gemm(q, layer.in_zero_point, layer.weight, layer.stride, layer.padding)
    acc = acc + layer.bias.astype(np.int64)[:, None, None]
    total = layer.out_zero_point + layer.scale_a.apply(acc)
    if layer.mask is not None:
        window_sums = exact_gemm(q, layer.in_zero_point, layer.mask, layer.stride, layer.padding)
        total = total + layer.scale_b.apply(window_sums)
    if residual is not None:
        total = total + layer.residual_scale.apply(
            np.asarray(residual, np.int64) - layer.residual_zero_point)
    return relu_clamp(total, layer.out_zero_point, layer.relu)
