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
   with the raw codes: `_sums_vnni` keeps 8 output positions x 16 channels in 8 registers
   and adds 64 products per instruction; `_sums_plain` is the same loop in scalars (any CPU).
   The zero point comes out afterwards: ``sum (q - z) w = sum q w - z sum w``, exact because
   the padding holds z too.
3. Epilogue: the reference's integer requantization (SRDHM, rounding shift, saturating
   left shift, `_requantize`) of A + bias (added to the output zero point), of B and of
   the residual, each in its own pass over an int64 total, then the clamp (`_clamp`): one
   loop per term, with no test inside, so that LLVM vectorises each (channels last; the
   result is turned back to NCHW at the end).

The batch is cut into one slice of images per core (`kernels/parallel.py`, like the float
kernels); each thread runs the serial sums and epilogue on its slice.

`int8_isa()` says which sums kernel runs here (chosen once, from the CPU's features).
"""

from __future__ import annotations

import weakref
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

POSITIONS = 8  # output positions per register block of the VNNI kernel


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
    """sums (N * Ho * Wo * KP,) flat int32 = sum of raw codes x weights (see module).

    One register block is 8 neighbouring output positions of a row x 16 output channels
    (8 accumulators: enough independent sums to hide vpdpbusd's latency); per packed
    weight vector loaded, 8 broadcast activations."""
    n, _, _, groups = x32.shape
    last = wo - 1
    for b in range(n):
        for i in range(ho):
            for j0 in range(0, wo, POSITIONS):
                # a block past the row's end repeats its last position instead of reading on
                c0, c1 = j0 * stride, min(j0 + 1, last) * stride
                c2, c3 = min(j0 + 2, last) * stride, min(j0 + 3, last) * stride
                c4, c5 = min(j0 + 4, last) * stride, min(j0 + 5, last) * stride
                c6, c7 = min(j0 + 6, last) * stride, min(j0 + 7, last) * stride
                for k0 in range(0, packed, LANES):
                    a0, a1, a2, a3 = izero(), izero(), izero(), izero()
                    a4, a5, a6, a7 = izero(), izero(), izero(), izero()
                    for ky in range(kh):
                        row = x32[b, i * stride + ky]
                        for kx in range(kw):
                            base = ((ky * kw + kx) * groups) * packed + k0
                            for g in range(groups):
                                wv = iload(w32, base + g * packed)
                                a0 = dpbusd(a0, ibroadcast(row[c0 + kx, g]), wv)
                                a1 = dpbusd(a1, ibroadcast(row[c1 + kx, g]), wv)
                                a2 = dpbusd(a2, ibroadcast(row[c2 + kx, g]), wv)
                                a3 = dpbusd(a3, ibroadcast(row[c3 + kx, g]), wv)
                                a4 = dpbusd(a4, ibroadcast(row[c4 + kx, g]), wv)
                                a5 = dpbusd(a5, ibroadcast(row[c5 + kx, g]), wv)
                                a6 = dpbusd(a6, ibroadcast(row[c6 + kx, g]), wv)
                                a7 = dpbusd(a7, ibroadcast(row[c7 + kx, g]), wv)
                    out = ((b * ho + i) * wo + j0) * packed + k0
                    istore(sums, out, a0)
                    # the positions a short block repeated are not stored
                    if j0 + 1 < wo:
                        istore(sums, out + packed, a1)
                    if j0 + 2 < wo:
                        istore(sums, out + 2 * packed, a2)
                    if j0 + 3 < wo:
                        istore(sums, out + 3 * packed, a3)
                    if j0 + 4 < wo:
                        istore(sums, out + 4 * packed, a4)
                    if j0 + 5 < wo:
                        istore(sums, out + 5 * packed, a5)
                    if j0 + 6 < wo:
                        istore(sums, out + 6 * packed, a6)
                    if j0 + 7 < wo:
                        istore(sums, out + 7 * packed, a7)


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
@njit(nogil=True, cache=True, inline="always")
def _requantize(acc, multiplier, left, right):
    """`int8_reference.requantize` of one int64 value, without branches (so LLVM can run it
    on several lanes at once): left = max(-shift, 0), right = max(shift, 0). Needs
    multiplier != INT32_MIN (SRDHM's one saturating case; `quantize_multiplier` never
    gives it, `conv_layer` checks)."""
    acc = min(max(acc << left, INT32_MIN), INT32_MAX)
    product = acc * multiplier
    nudged = product + ((1 << 30) if product >= 0 else 1 - (1 << 30))
    # C's division by 2^31, truncating toward zero (>> floors)
    high = (nudged + ((1 << 31) - 1 if nudged < 0 else 0)) >> 31
    mask = (1 << right) - 1
    threshold = (mask >> 1) + (1 if high < 0 else 0)
    return (high >> right) + (1 if (high & mask) > threshold else 0)


@njit(nogil=True, cache=True)
def _add_requantized_sums(sums, packed, first, offset, multiplier, left, right, start, total):
    """total[p * K + k] = (total[..] if start < 0 else start) + requantize(sums[p * KP +
    first + k] + offset[k]) for every output position p and channel k (K = offset.size):
    one epilogue term, A (first = 0; start = the output zero point: the first pass writes
    instead of adding) or B (first = K, start = -1), channels last so every array is walked
    contiguously."""
    channels = offset.size
    for p in range(total.size // channels):
        # slice views indexed from 0: numba adds no negative-index wrap-around, LLVM can
        # vectorise the channel loop
        src = sums[p * packed + first:p * packed + first + channels]
        dst = total[p * channels:(p + 1) * channels]
        for k in range(channels):
            dst[k] = (dst[k] if start < 0 else start) + _requantize(
                np.int64(src[k]) + offset[k], multiplier[k], left[k], right[k])


@njit(nogil=True, cache=True)
def _add_requantized_residual(residual, zero_point, multiplier, left, right, total):
    """total[i] += requantize(residual[i] - zero_point): the residual term (one multiplier)."""
    for i in range(total.size):
        total[i] += _requantize(np.int64(residual[i]) - zero_point, multiplier, left, right)


@njit(nogil=True, cache=True)
def _clamp(total, low, out):
    """out[i] = clip(total[i], low, 255) as u8 (low = z_out after a ReLU, else 0)."""
    for i in range(total.size):
        out[i] = min(max(total[i], low), U8_MAX)


def _shifts(shift: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(left, right) = (max(-shift, 0), max(shift, 0)) as int64."""
    shift = np.asarray(shift, np.int64)
    return np.maximum(-shift, 0), np.maximum(shift, 0)


# ------------------------------------------------------------------ the layer
#: id(layer) -> its packed weights, for as long as the layer exists.
_PACKED: dict[int, PackedConv] = {}


def packed_weights(layer: IntConv) -> PackedConv:
    """`pack(layer)`, computed once per layer object: the entry is dropped when the layer
    is garbage-collected (so its id, the key, cannot be reused by another layer)."""
    packed = _PACKED.get(id(layer))
    if packed is None:
        packed = _PACKED[id(layer)] = pack(layer)
        weakref.finalize(layer, _PACKED.pop, id(layer), None)
    return packed


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
    k = packed.channels
    has_b, has_residual = layer.mask is not None, residual is not None
    scales = [layer.scale_a] + ([layer.scale_b] if has_b else []) + (
        [layer.residual_scale] if has_residual else [])
    if any((np.asarray(r.multiplier) == INT32_MIN).any() for r in scales):
        raise ValueError("multiplier INT32_MIN is outside quantize_multiplier's range")
    zero_x = np.int64(layer.in_zero_point)
    offset_a = layer.bias.astype(np.int64) - zero_x * packed.weight_sums[:k]
    terms = [(0, offset_a, layer.scale_a.multiplier.astype(np.int64),
              *_shifts(layer.scale_a.shift), np.int64(layer.out_zero_point))]
    if has_b:
        terms.append((k, -zero_x * packed.weight_sums[k:2 * k],
                      layer.scale_b.multiplier.astype(np.int64), *_shifts(layer.scale_b.shift),
                      np.int64(-1)))
    # channels last inside (each epilogue pass walks memory in order); NCHW again at the end
    if has_residual:
        residual_last = np.ascontiguousarray(residual.transpose(0, 2, 3, 1))
        left_r, right_r = _shifts(layer.residual_scale.shift)
        residual_term = (np.int64(layer.residual_zero_point),
                         np.int64(layer.residual_scale.multiplier), np.int64(left_r),
                         np.int64(right_r))
    low = np.int64(layer.out_zero_point if layer.relu else 0)
    out = np.empty((n, ho, wo, k), np.uint8)

    def part(start: int, stop: int) -> None:
        sums = np.empty((stop - start) * ho * wo * packed.packed, np.int32)
        kernel(x32[start:stop], packed.w32, kh, kw, layer.stride, ho, wo, packed.packed, sums)
        total = np.empty((stop - start) * ho * wo * k, np.int64)  # the A pass writes it
        for term in terms:
            _add_requantized_sums(sums, packed.packed, *term, total)
        if has_residual:
            _add_requantized_residual(residual_last[start:stop].reshape(-1), *residual_term,
                                      total)
        _clamp(total, low, out[start:stop].reshape(-1))

    run_parallel([(part, bounds) for bounds in split_range(n)])
    return np.ascontiguousarray(out.transpose(0, 3, 1, 2))
