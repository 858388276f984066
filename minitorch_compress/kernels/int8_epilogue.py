"""The epilogue of a fast integer conv, on registers: 16 output channels' raw int32 sums of
one position -> their 16 u8 codes (`int8_reference.conv_layer`'s requantization, residual
and clamp, bit for bit), shared by the VNNI kernel (`kernels/int8_conv.py`) and the AMX one
(`kernels/int8_amx.py`): `channel_epilogue` loads 16 channels' constants once, `finish`
applies them to the sums of one position (`store`: and stores its codes)."""

from __future__ import annotations

from numba import njit

from minitorch_compress.kernels.int8_reference import U8_MAX
from minitorch_compress.kernels.simd_int8 import (
    clamp_sum,
    clamp_sum_bounded,
    iadd,
    iload,
    iload_u8,
    ishl,
    istore_u8,
    izero,
    requantize,
    requantize_below_one,
)


@njit(nogil=True, cache=True, inline="always")
def term(total, constants, below_one):
    """requantize(total + offset) with constants = (offset, multiplier, left, right);
    below_one (a compile-time constant): every multiplier is below 1 (left = 0)."""
    offset, multiplier, left, right = constants
    if below_one:
        return requantize_below_one(iadd(total, offset), multiplier, right)
    return requantize(iadd(total, offset), multiplier, left, right)


@njit(nogil=True, cache=True, inline="always")
def channel_constants(ep, k):
    """(offset, multiplier, left, right) of the packed channels k..k + 15 as 4 vectors:
    the 4 rows of ep = `PackedConv.epilogue` (4, KP)."""
    packed = ep.shape[1]
    return (iload(ep, k), iload(ep, packed + k), iload(ep, 2 * packed + k),
            iload(ep, 3 * packed + k))


@njit(nogil=True, cache=True, inline="always")
def channel_epilogue(ep, k, channels, has_b, rescale, z_out, low):
    """`finish`'s epilogue for the output channels k..k + 15 of a layer with `channels`
    (KA) padded output channels: the A constants of packed channels k.., the B ones of its
    mask channels KA + k.. where has_b (else A's again, never read), and the layer's
    residual constants `rescale`, output zero point and lower clip `low`."""
    constants_a = channel_constants(ep, k)
    constants_b = channel_constants(ep, channels + k) if has_b else constants_a
    return (constants_a, constants_b, has_b, rescale, z_out, low)


@njit(nogil=True, cache=True, inline="always")
def finish(sum_a, sum_b, residual_codes, epilogue, bounded):
    """The 16 output codes of one position from its raw sums (A; B with a mask) and its
    residual codes: clip(z_out + rq(A + offset_A) + rq(B + offset_B) + rq(residual - z_res),
    low, 255). `epilogue` holds the constants as vectors (no arrays: an array argument
    would cost a reference count update per call): ((offset, multiplier, left, right) of
    A, the same of B, has_b, (has_residual, (-z_res, multiplier, left, right)), z_out, low).
    bounded (a compile-time constant): the layer's A and B multipliers are below 1 and its
    B and residual terms small (`PackedConv.bounded`), so the int32 operations suffice."""
    constants_a, constants_b, has_b, rescale, z_out, low = epilogue
    term_a = term(sum_a, constants_a, bounded)
    term_b = izero()
    if has_b:
        term_b = term(sum_b, constants_b, bounded)
    term_r = izero()
    has_residual, constants_r = rescale
    if has_residual and bounded:
        # codes minus their zero point are at most 255 in size: the left shift of a
        # residual multiplier above 1 cannot saturate (PackedConv.bounded)
        minus_zero, multiplier, left, right = constants_r
        term_r = requantize_below_one(ishl(iadd(residual_codes, minus_zero), left),
                                      multiplier, right)
    elif has_residual:
        term_r = term(residual_codes, constants_r, bounded)
    if bounded:
        return clamp_sum_bounded(term_a, term_b, term_r, z_out, low, U8_MAX)
    return clamp_sum(term_a, term_b, term_r, z_out, low, U8_MAX)


@njit(nogil=True, cache=True, inline="always")
def store(out8, at, sum_a, sum_b, residual, epilogue, bounded):
    """out8.flat[at : at + 16] = `finish` of one position's sums, with the residual's codes
    at the same place (residual: padded codes of out8's shape, read only where the
    epilogue has a residual term; else a placeholder)."""
    _, _, _, (has_residual, _), _, _ = epilogue
    residual_codes = iload_u8(residual, at) if has_residual else izero()
    istore_u8(out8, at, finish(sum_a, sum_b, residual_codes, epilogue, bounded))
