"""Fast integer conv layer: u8 x s8 -> s32 sums (AVX-512 VNNI or a plain loop), then the
requantization epilogue; bit for bit `int8_reference.conv_layer`.

Same signature and result as the reference (`conv_layer(q, layer, residual)`), computed in
three steps:

1. Layout. The input codes (N, C, H, W) are padded with the zero point (so padding is real
   0) and turned channels-last with C rounded up to a multiple of 4: each int32 of
   ``x32`` (N, Hp, Wp, G = C4 / 4) packs the 4 u8 codes of 4 neighbouring channels. The
   weights are packed once per layer (`pack`) the way ``vpdpbusd`` wants them: ``w32``
   (kh, kw, G, KP) holds, for output channel k, the 4 s8 weights of channels 4g..4g+3 in
   one int32, so one 16-lane vector is 16 output channels. A grid layer's mask rides along
   as K more output channels (its B sum is the same dot product with 0/1 weights).
2. Sums. ``sums[n, i, j, k] = sum_{ky,kx,c} xpad[n, c, i s + ky, j s + kx] * w[k, c, ky, kx]``
   with the raw codes: `_sums_vnni` keeps 4 output positions x 16 channels in 4 registers
   and adds 64 products per instruction; `_sums_plain` is the same loop in scalars (any CPU).
   The zero point comes out afterwards: ``sum (q - z) w = sum q w - z sum w``, exact because
   the padding holds z too.
3. Epilogue (`_epilogue`): per output, the reference's integer requantization (SRDHM,
   rounding shift, saturating left shift) of A + bias, of B and of the residual, the sum
   with the output zero point, and the clamp, written as scalar integer code.

The batch is cut into one slice of images per core (`kernels/parallel.py`, like the float
kernels); each thread runs the serial sums and epilogue on its slice.

`int8_isa()` says which sums kernel runs here (chosen once, from the CPU's features).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numba import njit

from minitorch_compress.kernels.int8_reference import INT32_MAX, INT32_MIN, U8_MAX, IntConv
from minitorch_compress.kernels.parallel import run_parallel, split_range
from minitorch_compress.kernels.rules import conv2d_output_size
from minitorch_compress.kernels.simd_int8 import (
    LANES,
    dpbusd,
    has_avx512_vnni,
    ibroadcast,
    iload,
    istore,
    izero,
)

POSITIONS = 4  # output positions per register block of the VNNI kernel


def int8_isa() -> str:
    """The integer instruction set the fast conv uses on this CPU: "avx512_vnni" or "plain"."""
    return "avx512_vnni" if has_avx512_vnni() else "plain"


# ------------------------------------------------------------------ packing
@dataclass(frozen=True)
class PackedConv:
    """One IntConv's weights as the sums kernels read them.

    Attributes:
        w32: int32 (kh * kw * G * KP,) flat: [ky, kx, g, k] packs w[k, 4g..4g+3, ky, kx] as
            4 s8 bytes; k < K the codes, K <= k < 2K the mask (grid layers), the rest 0.
        weight_sums: int64 (KP,): sum of each packed output channel's weights (zero point).
        channels: K, the layer's output channels.
        groups: G, input channel groups of 4.
        packed: KP, a multiple of 16.
    """

    w32: np.ndarray
    weight_sums: np.ndarray
    channels: int
    groups: int
    packed: int


def pack(layer: IntConv) -> PackedConv:
    """The packed weights of `layer` (codes, then the mask when it has one)."""
    weights = layer.weight.astype(np.int8)
    if layer.mask is not None:
        weights = np.concatenate([weights, layer.mask.astype(np.int8)])
    total, c, kh, kw = weights.shape
    groups = -(-c // 4)
    packed = -(-total // LANES) * LANES
    w = np.zeros((kh, kw, groups * 4, packed), np.int8)
    w[:, :, :c, :total] = weights.transpose(2, 3, 1, 0)
    # (kh, kw, G, 4, KP) -> (kh, kw, G, KP, 4): the 4 bytes of one int32 are 4 channels
    w = np.ascontiguousarray(w.reshape(kh, kw, groups, 4, packed).transpose(0, 1, 2, 4, 3))
    sums = np.zeros(packed, np.int64)
    sums[:total] = weights.reshape(total, -1).astype(np.int64).sum(axis=1)
    return PackedConv(w.view(np.int32).reshape(-1), sums, layer.weight.shape[0], groups, packed)


def pack_input(q: np.ndarray, zero_point: int, padding: int, groups: int) -> np.ndarray:
    """u8 codes (N, C, H, W) -> int32 (N, Hp, Wp, G): padded with the zero point, channels
    last, 4 channels per int32 (channels beyond C are 0; their weights are 0 too)."""
    n, c, h, w = q.shape
    x = np.full((n, h + 2 * padding, w + 2 * padding, groups * 4), zero_point, np.uint8)
    x[..., c:] = 0
    x[:, padding:padding + h, padding:padding + w, :c] = q.transpose(0, 2, 3, 1)
    return x.view(np.int32)


# ------------------------------------------------------------------ sums
@njit(nogil=True, cache=True)
def _sums_vnni(x32, w32, kh, kw, stride, ho, wo, packed, sums):
    """sums (N * Ho * Wo * KP,) flat int32 = sum of raw codes x weights (see module)."""
    n, _, _, groups = x32.shape
    for b in range(n):
        for i in range(ho):
            for j0 in range(0, wo, POSITIONS):
                # the last block of a row repeats its last position instead of reading past
                j1, j2, j3 = min(j0 + 1, wo - 1), min(j0 + 2, wo - 1), min(j0 + 3, wo - 1)
                for k0 in range(0, packed, LANES):
                    acc0, acc1, acc2, acc3 = izero(), izero(), izero(), izero()
                    for ky in range(kh):
                        row = x32[b, i * stride + ky]
                        for kx in range(kw):
                            base = ((ky * kw + kx) * groups) * packed + k0
                            for g in range(groups):
                                wv = iload(w32, base + g * packed)
                                acc0 = dpbusd(acc0, ibroadcast(row[j0 * stride + kx, g]), wv)
                                acc1 = dpbusd(acc1, ibroadcast(row[j1 * stride + kx, g]), wv)
                                acc2 = dpbusd(acc2, ibroadcast(row[j2 * stride + kx, g]), wv)
                                acc3 = dpbusd(acc3, ibroadcast(row[j3 * stride + kx, g]), wv)
                    out = ((b * ho + i) * wo + j0) * packed + k0
                    istore(sums, out, acc0)
                    if j0 + 1 < wo:
                        istore(sums, out + packed, acc1)
                    if j0 + 2 < wo:
                        istore(sums, out + 2 * packed, acc2)
                    if j0 + 3 < wo:
                        istore(sums, out + 3 * packed, acc3)


@njit(nogil=True, cache=True)
def _sums_plain(x32, w32, kh, kw, stride, ho, wo, packed, sums):
    """The same sums as `_sums_vnni`, one product at a time (any CPU)."""
    n, _, _, groups = x32.shape
    x8 = x32.view(np.uint8).reshape(n, x32.shape[1], x32.shape[2], groups * 4)
    w8 = w32.view(np.int8).reshape(kh, kw, groups, packed, 4)
    for b in range(n):
        for i in range(ho):
            for j in range(wo):
                out = ((b * ho + i) * wo + j) * packed
                for k in range(packed):
                    total = 0
                    for ky in range(kh):
                        for kx in range(kw):
                            for c in range(groups * 4):
                                total += (np.int32(x8[b, i * stride + ky, j * stride + kx, c])
                                          * np.int32(w8[ky, kx, c // 4, k, c % 4]))
                    sums[out + k] = total


# ------------------------------------------------------------------ epilogue
@njit(nogil=True, cache=True)
def _requantize(acc, multiplier, shift):
    """`int8_reference.requantize` of one int64 value (int32 range in, int64 out)."""
    if shift < 0:
        acc = min(max(acc << -shift, INT32_MIN), INT32_MAX)
        shift = 0
    if acc == INT32_MIN and multiplier == INT32_MIN:
        high = INT32_MAX
    else:
        ab = acc * multiplier
        magnitude = (abs(ab) + (1 << 30) - (1 if ab < 0 else 0)) >> 31
        high = -magnitude if ab < 0 else magnitude
    mask = (1 << shift) - 1
    threshold = (mask >> 1) + (1 if high < 0 else 0)
    return (high >> shift) + (1 if (high & mask) > threshold else 0)


@njit(nogil=True, cache=True)
def _epilogue(sums, packed, channels, weight_sums, in_zero, bias, mult_a, shift_a,
              has_b, mult_b, shift_b, residual, has_residual, mult_r, shift_r, zero_r,
              out_zero, low, out):
    """out (N, K, Ho, Wo) u8 from sums (N, Ho, Wo, KP) int32: the reference's epilogue.

    Loops in the output's order (channel, then row, then column), so the output and the
    residual are read and written contiguously; the sums are read with a stride of KP."""
    n, _, ho, wo = out.shape
    for b in range(n):
        for k in range(channels):
            offset_a = bias[k] - in_zero * weight_sums[k]
            offset_b = -in_zero * weight_sums[channels + k] if has_b else 0
            for i in range(ho):
                for j in range(wo):
                    base = ((b * ho + i) * wo + j) * packed
                    total = out_zero + _requantize(np.int64(sums[base + k]) + offset_a,
                                                   mult_a[k], shift_a[k])
                    if has_b:
                        total += _requantize(np.int64(sums[base + channels + k]) + offset_b,
                                             mult_b[k], shift_b[k])
                    if has_residual:
                        total += _requantize(np.int64(residual[b, k, i, j]) - zero_r,
                                             mult_r, shift_r)
                    out[b, k, i, j] = min(max(total, low), U8_MAX)


# ------------------------------------------------------------------ the layer
_PACKED: dict[int, tuple[IntConv, PackedConv]] = {}


def packed_weights(layer: IntConv) -> PackedConv:
    """`pack(layer)`, computed once per layer object (kept with the layer, so the id that
    keys the cache cannot be reused while the entry exists)."""
    entry = _PACKED.get(id(layer))
    if entry is None or entry[0] is not layer:
        entry = (layer, pack(layer))
        _PACKED[id(layer)] = entry
    return entry[1]


def conv_layer(q: np.ndarray, layer: IntConv, residual: np.ndarray | None = None,
               isa: str | None = None) -> np.ndarray:
    """`int8_reference.conv_layer`, fast: u8 codes (N, C, H, W) -> u8 (N, K, Ho, Wo).

    Args:
        q, layer, residual: as in the reference.
        isa: "avx512_vnni" or "plain"; default `int8_isa()`.
    """
    if (residual is None) != (layer.residual_scale is None):
        raise ValueError("a residual is needed exactly when the layer has a residual_scale")
    isa = int8_isa() if isa is None else isa
    packed = packed_weights(layer)
    _, _, kh, kw = layer.weight.shape
    n = q.shape[0]
    ho, wo = conv2d_output_size(q.shape[2], q.shape[3], kh, kw, layer.stride, layer.padding)
    x32 = pack_input(q, layer.in_zero_point, layer.padding, packed.groups)
    kernel = _sums_vnni if isa == "avx512_vnni" else _sums_plain
    channels = packed.channels
    none = np.zeros(channels, np.int64)
    has_b = layer.mask is not None
    has_residual = residual is not None
    if not has_residual:
        residual = np.zeros((n, 1, 1, 1), np.uint8)
    out = np.empty((n, channels, ho, wo), np.uint8)
    settings = (
        packed.packed, channels, packed.weight_sums, np.int64(layer.in_zero_point),
        layer.bias.astype(np.int64), layer.scale_a.multiplier.astype(np.int64),
        layer.scale_a.shift.astype(np.int64), has_b,
        layer.scale_b.multiplier.astype(np.int64) if has_b else none,
        layer.scale_b.shift.astype(np.int64) if has_b else none)
    residual_settings = (
        has_residual, np.int64(layer.residual_scale.multiplier if has_residual else 0),
        np.int64(layer.residual_scale.shift if has_residual else 0),
        np.int64(layer.residual_zero_point), np.int64(layer.out_zero_point),
        np.int64(layer.out_zero_point if layer.relu else 0))

    def part(start: int, stop: int) -> None:
        sums = np.empty((stop - start) * ho * wo * packed.packed, np.int32)
        kernel(x32[start:stop], packed.w32, kh, kw, layer.stride, ho, wo, packed.packed, sums)
        _epilogue(sums, *settings, residual[start:stop], *residual_settings, out[start:stop])

    run_parallel([(part, bounds) for bounds in split_range(n)])
    return out
