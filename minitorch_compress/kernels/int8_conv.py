"""Fast integer conv layer: u8 x s8 -> s32 sums and the whole requantization in registers,
u8 codes in and out; bit for bit `int8_reference.conv_layer`.

Layout of the activations between layers ("padded codes"): u8 (N, H + 2, W + 2, CP),
channels last, with a border of one pixel that holds the tensor's zero point (real 0, so a
conv with padding 1 reads its padding from memory and a conv with padding 0 starts one
pixel in) and CP = C rounded up to a multiple of 16 for a conv's output (one 512-bit vector
of 16 codes; the channels beyond C hold codes that zero weights multiply). Each int32 of
the int32 view (N, H + 2, W + 2, G = CP / 4) packs the 4 codes of 4 neighbouring channels.
`to_padded` / `from_padded` convert from / to the reference's NCHW; a network quantizes
its input straight into this layout (`quantize_padded`) and converts back once at the end.

One layer (`conv_padded`), for each block of 8 neighbouring output positions of a row and
16 output channels:

1. Sums. ``sum_{ky,kx,c} q[n, i s + ky, j s + kx, c] * w[k, c, ky, kx]`` over the raw
   codes, 8 accumulators of 16 int32 lanes (enough independent sums to hide the
   multiply-add's latency), each step one ``vpdpbusd`` (AVX-512 VNNI: 64 u8 x s8 products)
   of a broadcast group of 4 input channels and a weight vector loaded once for the 8
   positions. The weights are packed once per layer (`pack`) as the loop streams them. On
   a CPU without VNNI the same kernel is compiled with `simd_int8.dpbusd_portable` (the
   arithmetic in plain vector IR; LLVM emits ``vpmaddwd`` where it can).
   A grid layer's mask rides along as a second set of output channels (its B sum is the
   same dot product with 0/1 weights), computed in a second pass of the same loop.
2. Epilogue, on the registers (`int8_epilogue.finish`): the zero point comes
   out as a per-channel offset (``sum (q - z) w = sum q w - z sum w``, exact because the
   border holds z too), the bias rides along in the same offset, then
   ``clip(z_out + rq(A + offset_A) + rq(B + offset_B) + rq(residual - z_res), low, 255)``
   with `int8_reference`'s fixed-point requantization, and 16 u8 codes are stored. A
   layer whose multipliers and terms are small enough (`PackedConv.bounded`: every
   calibrated model's layers, almost) runs a kernel compiled with the int32-only form of
   the same arithmetic (`requantize_below_one`, `clamp_sum_bounded`); the others keep the
   saturating shifts and the 64-bit sum. Both give the reference's codes.

Where the CPU has AMX's integer tiles and Linux lets this process use them
(`amx.amx_available`), step 1 runs on tiles instead (`kernels/int8_amx.py`: ``tdpbusd``,
16 positions x up to 64 channels per block, the same layout, packed weights and epilogue);
`default_kernel` picks it, and the VNNI kernel stays the fallback.

The batch is cut into one slice of images per core (`kernels/parallel.py`, like the float
kernels); each thread runs the serial kernel on its slice.

`int8_isa()` names the integer instructions used here ("amx", "avx512_vnni", ...; chosen
once, from the CPU's features).
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass

import numpy as np
from llvmlite import binding
from numba import njit

from minitorch_compress.kernels import int8_amx
from minitorch_compress.kernels.amx import amx_available
from minitorch_compress.kernels.int8_epilogue import channel_epilogue, store
from minitorch_compress.kernels.int8_reference import INT32_MAX, INT32_MIN, IntConv
from minitorch_compress.kernels.parallel import run_parallel, split_range
from minitorch_compress.kernels.rules import conv2d_output_size
from minitorch_compress.kernels.simd_int8 import (
    LANES,
    dpbusd,
    dpbusd_portable,
    has_avx512_vnni,
    ibroadcast,
    ibroadcast_at,
    iload,
    izero,
)

POSITIONS = 8  # output positions per register block
BORDER = 1  # pixels of zero-point border around every padded activation
KERNELS = ("amx", "avx512_vnni", "portable")


def default_kernel() -> str:
    """The sums kernel for this CPU: "amx" where it has AMX's integer tiles and Linux lets
    this process use them (`amx.amx_available`), else "avx512_vnni" where it has AVX-512
    VNNI, else "portable"."""
    if amx_available():
        return "amx"
    return "avx512_vnni" if has_avx512_vnni() else "portable"


def int8_isa() -> str:
    """The integer instruction set the fast conv uses here: "amx" (tdpbusd on tiles),
    "avx512_vnni" (vpdpbusd), or for the portable kernel the widest of "avx512bw", "avx2",
    "sse2" (vpmaddwd / pmaddwd)."""
    if amx_available():
        return "amx"
    if has_avx512_vnni():
        return "avx512_vnni"
    features = binding.get_host_cpu_features()
    return next((name for name in ("avx512bw", "avx2") if features.get(name)), "sse2")


def padded_channels(channels: int, multiple: int = LANES) -> int:
    """`channels` rounded up to a multiple of `multiple` (4: the network input; 16: a conv's
    output, one vector of codes)."""
    return -(-channels // multiple) * multiple


# ------------------------------------------------------------------ layout
def to_padded(q: np.ndarray, zero_point: int, multiple: int = 4) -> np.ndarray:
    """u8 codes (N, C, H, W) -> padded codes (N, H + 2, W + 2, CP): the border and the
    channels beyond C hold the zero point, CP = C rounded up to `multiple` (4 or 16)."""
    n, c, h, w = q.shape
    x = np.full((n, h + 2 * BORDER, w + 2 * BORDER, padded_channels(c, multiple)), zero_point,
                np.uint8)
    x[:, BORDER:BORDER + h, BORDER:BORDER + w, :c] = q.transpose(0, 2, 3, 1)
    return x


@njit(nogil=True, cache=True)
def _quantize_into(x, scale, zero_point, out):
    """out[n, 1 + i, 1 + j, c] = clip(rint(x[n, c, i, j] / scale) + zero_point, 0, 255),
    the rest of out = zero_point: `int8_reference.quantize` (float64, ties to even)."""
    n, c, h, w = x.shape
    out[:] = zero_point
    for b in range(n):
        for ch in range(c):
            for i in range(h):
                for j in range(w):
                    code = np.rint(np.float64(x[b, ch, i, j]) / scale) + zero_point
                    out[b, BORDER + i, BORDER + j, ch] = min(max(code, 0.0), 255.0)


def quantize_padded(x: np.ndarray, scale: float, zero_point: int) -> np.ndarray:
    """Real values (N, C, H, W) -> padded codes (N, H + 2, W + 2, C rounded up to 4):
    `to_padded(int8_reference.quantize(x, scale, zero_point), zero_point)` in one pass."""
    n, c, h, w = x.shape
    out = np.empty((n, h + 2 * BORDER, w + 2 * BORDER, padded_channels(c, 4)), np.uint8)
    run_parallel([(_quantize_into, (x[start:stop], float(scale), int(zero_point),
                                    out[start:stop])) for start, stop in split_range(n)])
    return out


def from_padded(x: np.ndarray, channels: int) -> np.ndarray:
    """Padded codes (N, H + 2, W + 2, CP) -> u8 codes (N, channels, H, W), the interior."""
    return np.ascontiguousarray(x[:, BORDER:-BORDER, BORDER:-BORDER, :channels]
                                .transpose(0, 3, 1, 2))


# ------------------------------------------------------------------ packing
@dataclass(frozen=True)
class PackedConv:
    """One IntConv as the kernel reads it.

    Attributes:
        w32: int32 (kh * kw * G * KP,) flat: [ky, kx, g, k] packs w[k, 4g..4g+3, ky, kx] as
            4 s8 bytes; k < K the codes, KA <= k < KA + K the mask (grid layers), else 0;
            64-byte aligned (`aligned`), like epilogue.
        epilogue: int32 (4, KP): per packed channel the offset (bias - z_x sum w for A,
            -z_x sum mask for B), the multiplier, and the left and right shifts.
        settings: int64 (12,): the layer's scalars as the kernel reads them (one array, so
            that a call passes few arguments).
        bounded: the A and B multipliers are below 1 (no left shifts), the residual's is
            below 2^20, and the B and residual terms are below 2^28 in size together: then
            the epilogue's int32 arithmetic is exact (`simd_int8.clamp_sum_bounded`).
        channels: K, the layer's output channels.
        out_channels: KA = K rounded up to 16, the output's padded channels.
        groups: G, input channel groups of 4 (the input's padded channels / 4).
        packed: KP = KA, or 2 KA with a mask.
    """

    w32: np.ndarray
    epilogue: np.ndarray
    settings: np.ndarray
    bounded: bool
    channels: int
    out_channels: int
    groups: int
    packed: int


def aligned(a: np.ndarray, alignment: int = 64) -> np.ndarray:
    """A C-contiguous copy of `a` whose data starts on a multiple of `alignment` bytes (a
    cache line: a 64-byte vector or tile row of packed weights then never straddles two,
    which costs the AMX kernel about a third of its time on the widest layers)."""
    buffer = np.empty(a.nbytes + alignment, np.uint8)
    start = -buffer.ctypes.data % alignment
    out = buffer[start:start + a.nbytes].view(a.dtype).reshape(a.shape)
    out[...] = a
    return out


def _shifts(shift: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(left, right) = (max(-shift, 0), max(shift, 0))."""
    shift = np.asarray(shift, np.int64)
    return np.maximum(-shift, 0), np.maximum(shift, 0)


def pack(layer: IntConv, groups: int) -> PackedConv:
    """The packed weights and epilogue constants of `layer` for an input of 4 `groups`
    channels (at least the layer's C).

    Raises:
        ValueError: the layer pads more than the border, the input has fewer channels than
            the layer, a multiplier is INT32_MIN
            (the one SRDHM saturates; `quantize_multiplier` never gives it), or the sums
            could leave int32.
    """
    k, c, kh, kw = layer.weight.shape
    if not 0 <= layer.padding <= BORDER:
        raise ValueError(f"padded codes hold a border of {BORDER}, the layer pads "
                         f"{layer.padding}")
    if 4 * groups < c:
        raise ValueError(f"the input has {4 * groups} padded channels, the layer needs {c}")
    scales = [r for r in (layer.scale_a, layer.scale_b, layer.residual_scale) if r is not None]
    if any((np.asarray(r.multiplier) == INT32_MIN).any() for r in scales):
        raise ValueError("multiplier INT32_MIN is outside quantize_multiplier's range")
    parts = [layer.weight] + ([layer.mask] if layer.mask is not None else [])
    # |sum q w| and |z sum w| are each at most 255 sum |w|: with the bias, the epilogue's
    # first int32 addition must not wrap
    largest = max(255 * np.abs(part.astype(np.int64)).reshape(k, -1).sum(axis=1).max(initial=0)
                  for part in parts)
    if 2 * largest + np.abs(layer.bias.astype(np.int64)).max(initial=0) > INT32_MAX:
        raise ValueError("this layer's sums could leave int32")
    ka = padded_channels(k)
    kp = ka * len(parts)
    w = np.zeros((kh, kw, groups * 4, kp), np.int8)
    for i, part in enumerate(parts):
        w[:, :, :c, i * ka:i * ka + k] = part.astype(np.int8).transpose(2, 3, 1, 0)
    # (kh, kw, G, 4, KP) -> (kh, kw, G, KP, 4): the 4 bytes of one int32 are 4 channels
    w = np.ascontiguousarray(w.reshape(kh, kw, groups, 4, kp).transpose(0, 1, 2, 4, 3))
    epilogue = np.zeros((4, kp), np.int64)
    zero_x = layer.in_zero_point
    terms = [(layer.scale_a, layer.bias.astype(np.int64))]
    if layer.mask is not None:
        terms.append((layer.scale_b, np.zeros(k, np.int64)))
    for i, ((scale, bias), part) in enumerate(zip(terms, parts, strict=True)):
        channel = slice(i * ka, i * ka + k)
        weight_sums = part.astype(np.int64).reshape(k, -1).sum(axis=1)
        epilogue[0, channel] = bias - zero_x * weight_sums
        epilogue[1, channel] = np.broadcast_to(scale.multiplier, (k,))
        epilogue[2, channel], epilogue[3, channel] = (
            np.broadcast_to(s, (k,)) for s in _shifts(scale.shift))
    residual = layer.residual_scale
    left, right = _shifts(residual.shift) if residual is not None else (0, 0)
    settings = np.array([
        kh, kw, layer.stride, BORDER - layer.padding, layer.mask is not None,
        residual is not None, layer.residual_zero_point,
        int(residual.multiplier) if residual is not None else 0, left, right,
        layer.out_zero_point, layer.out_zero_point if layer.relu else 0], np.int64)
    below_one = all((np.asarray(r.shift) >= 0).all() for r in scales
                    if r is not layer.residual_scale)
    if layer.residual_scale is not None:
        below_one = below_one and int(layer.residual_scale.shift) >= -20
    small = 0.0  # the largest |B term| + |residual term| of any channel
    if layer.mask is not None:
        count = layer.mask.reshape(k, -1).astype(np.int64).sum(axis=1)
        small += (255 * count * np.abs(layer.scale_b.real()) + 1).max()
    if residual is not None:
        small += 255 * abs(float(residual.real())) + 1
    return PackedConv(aligned(w.view(np.int32).reshape(-1)), aligned(epilogue.astype(np.int32)),
                      settings,
                      below_one and small < 2**28, k, ka, groups, kp)


#: (id(layer), groups) -> its packed form, for as long as the layer exists.
_PACKED: dict[tuple[int, int], PackedConv] = {}


def packed_weights(layer: IntConv, groups: int) -> PackedConv:
    """`pack(layer, groups)`, computed once per layer object and input width: the entries
    are dropped when the layer is garbage-collected (so its id cannot be reused)."""
    key = (id(layer), groups)
    packed = _PACKED.get(key)
    if packed is None:
        if not any(other == id(layer) for other, _ in _PACKED):
            weakref.finalize(layer, _forget, id(layer))
        packed = _PACKED[key] = pack(layer, groups)
    return packed


def _forget(layer_id: int) -> None:
    for key in [key for key in _PACKED if key[0] == layer_id]:
        del _PACKED[key]


# ------------------------------------------------------------------ the kernel
def _make_kernel(dot, bounded):
    """The conv kernel (module docstring) with `dot` as its multiply-add of 4 u8 x s8 into
    int32 lanes (`dpbusd` or `dpbusd_portable`), for layers whose `PackedConv.bounded` is
    `bounded` (the cheaper epilogue: no saturating shifts, a 32-bit sum)."""

    @njit(nogil=True, cache=True, inline="always")
    def block_sums(x32, w32, first, top, offsets, kh, kw, packed):
        """The raw int32 sums of one block of 8 output positions over the packed channels
        first..first + 15: ``sum_{ky,kx,g} x32[top + ky, offsets[m] + kx g.., g] . w``, as
        8 vectors. x32 (Hp, Wp, G): one image's padded codes; top: the block's first input
        row; offsets[m]: position m's first input column times G."""
        _, wp, groups = x32.shape
        o0, o1, o2, o3, o4, o5, o6, o7 = offsets
        # 8 accumulators, one per position, written out so that each stays in a register
        # through the whole reduction and the 8 multiply-adds of one step are independent
        # (enough to hide the instruction's latency)
        s0 = s1 = s2 = s3 = s4 = s5 = s6 = s7 = izero()
        for ky in range(kh):
            for kx in range(kw):
                start = first + (ky * kw + kx) * groups * packed
                # x32.flat index of group 0 at (top + ky, kx)
                pixel = ((top + ky) * wp + kx) * groups
                for g in range(groups):
                    wv = iload(w32, start + g * packed)
                    q = pixel + g
                    s0 = dot(s0, ibroadcast_at(x32, q + o0), wv)
                    s1 = dot(s1, ibroadcast_at(x32, q + o1), wv)
                    s2 = dot(s2, ibroadcast_at(x32, q + o2), wv)
                    s3 = dot(s3, ibroadcast_at(x32, q + o3), wv)
                    s4 = dot(s4, ibroadcast_at(x32, q + o4), wv)
                    s5 = dot(s5, ibroadcast_at(x32, q + o5), wv)
                    s6 = dot(s6, ibroadcast_at(x32, q + o6), wv)
                    s7 = dot(s7, ibroadcast_at(x32, q + o7), wv)
        return s0, s1, s2, s3, s4, s5, s6, s7

    @njit(nogil=True, cache=True)
    def conv(x32, w32, ep, settings, residual, out8):
        """out8 (N, Ho + 2, Wo + 2, KA) = the layer's padded output codes for the padded
        input x32 (N, Hp, Wp, G) (int32 view) and the residual's padded codes (same shape
        as out8, or a placeholder); w32, ep, settings: the layer's `PackedConv`."""
        n, _, _, groups = x32.shape
        _, ho, wo, c = out8.shape
        ho, wo = ho - 2, wo - 2
        kh, kw, stride, skip, has_b, has_residual = settings[:6]
        residual_zero, residual_multiplier, left, right, z_out, low = settings[6:]
        packed = ep.shape[1]
        last = wo - 1
        rescale = (has_residual != 0, (ibroadcast(-residual_zero),
                   ibroadcast(residual_multiplier), ibroadcast(left), ibroadcast(right)))
        for b in range(n):
            # the border: real 0 for the next layer's padding
            out8[b, 0, :, :] = z_out
            out8[b, ho + 1, :, :] = z_out
            out8[b, :, 0, :] = z_out
            out8[b, :, wo + 1, :] = z_out
            image = x32[b]
            for i in range(ho):
                top = skip + i * stride
                for j0 in range(0, wo, POSITIONS):
                    # each position's first input column times G; a block past the row's
                    # end repeats its last position instead of reading on (not stored)
                    offsets = ((skip + j0 * stride) * groups,
                               (skip + min(j0 + 1, last) * stride) * groups,
                               (skip + min(j0 + 2, last) * stride) * groups,
                               (skip + min(j0 + 3, last) * stride) * groups,
                               (skip + min(j0 + 4, last) * stride) * groups,
                               (skip + min(j0 + 5, last) * stride) * groups,
                               (skip + min(j0 + 6, last) * stride) * groups,
                               (skip + min(j0 + 7, last) * stride) * groups)
                    at = ((b * (ho + 2) + i + 1) * (wo + 2) + j0 + 1) * c
                    for k in range(0, c, LANES):
                        # 1. the sums of the 8 positions (sa, sb: one vector each): A over
                        # the codes, then (grid layers) B over the mask, whose packed
                        # channels follow A's
                        sa = sb = block_sums(image, w32, k, top, offsets, kh, kw, packed)
                        if has_b != 0:
                            sb = block_sums(image, w32, c + k, top, offsets, kh, kw, packed)
                        # 2. the epilogue of each position, stored as 16 u8 codes; written
                        # out: a loop over m that reads sa[m], sb[m] ran up to 8 % slower
                        # on the 16-channel layers
                        epilogue = channel_epilogue(ep, k, c, has_b != 0, rescale, z_out, low)
                        p = at + k
                        store(out8, p, sa[0], sb[0], residual, epilogue, bounded)
                        if j0 + 1 < wo:
                            store(out8, p + c, sa[1], sb[1], residual, epilogue, bounded)
                        if j0 + 2 < wo:
                            store(out8, p + 2 * c, sa[2], sb[2], residual, epilogue, bounded)
                        if j0 + 3 < wo:
                            store(out8, p + 3 * c, sa[3], sb[3], residual, epilogue, bounded)
                        if j0 + 4 < wo:
                            store(out8, p + 4 * c, sa[4], sb[4], residual, epilogue, bounded)
                        if j0 + 5 < wo:
                            store(out8, p + 5 * c, sa[5], sb[5], residual, epilogue, bounded)
                        if j0 + 6 < wo:
                            store(out8, p + 6 * c, sa[6], sb[6], residual, epilogue, bounded)
                        if j0 + 7 < wo:
                            store(out8, p + 7 * c, sa[7], sb[7], residual, epilogue, bounded)

    return conv


#: (kernel name, PackedConv.bounded) -> the compiled kernel.
_KERNELS = {(name, bounded): _make_kernel(dot, bounded)
            for name, dot in (("avx512_vnni", dpbusd), ("portable", dpbusd_portable))
            for bounded in (False, True)}


# ------------------------------------------------------------------ the layer
#: What the kernel gets for a layer without residual (never read).
_NO_RESIDUAL = np.zeros((1, 1, 1, LANES), np.uint8)


def conv_padded(x: np.ndarray, layer: IntConv, residual: np.ndarray | None = None,
                kernel: str | None = None) -> np.ndarray:
    """One integer layer on padded codes: (N, H + 2, W + 2, CP) -> (N, Ho + 2, Wo + 2, KA).

    Args:
        x: the input's padded codes (border = layer.in_zero_point), CP >= C, a multiple of 4.
        layer: the integer layer (padding 0 or 1).
        residual: padded codes of the output's shape, exactly when the layer has a
            residual_scale.
        kernel: one of `KERNELS`; default `default_kernel()`.
    """
    if (residual is None) != (layer.residual_scale is None):
        raise ValueError("a residual is needed exactly when the layer has a residual_scale")
    kernel = default_kernel() if kernel is None else kernel
    if kernel not in KERNELS:
        raise ValueError(f"kernel must be one of {KERNELS}, got {kernel!r}")
    n, hp, wp, cp = x.shape
    packed = packed_weights(layer, cp // 4)
    _, _, kh, kw = layer.weight.shape
    ho, wo = conv2d_output_size(hp - 2 * BORDER, wp - 2 * BORDER, kh, kw, layer.stride,
                                layer.padding)
    out = np.empty((n, ho + 2 * BORDER, wo + 2 * BORDER, packed.out_channels), np.uint8)
    if residual is not None and residual.shape != out.shape:
        raise ValueError(f"residual {residual.shape} != output {out.shape}")
    x = np.ascontiguousarray(x)
    residual = _NO_RESIDUAL if residual is None else residual
    if kernel == "amx":
        if not amx_available():
            raise ValueError("kernel 'amx' needs AMX's integer tiles and Linux's permission "
                             "to use them; this process has not got them")
        positions = int8_amx.block_positions(layer.stride, ho, wo, wp)
        chunk = int8_amx.chunk_bytes(kw * cp)
        cfg = int8_amx.tile_setup(positions, chunk)
        run = int8_amx.KERNELS[packed.bounded]
        run_parallel([(run, (x[start:stop], packed.w32, packed.epilogue, packed.settings,
                             residual if residual is _NO_RESIDUAL else residual[start:stop],
                             out[start:stop], cfg, positions, chunk))
                      for start, stop in split_range(n)])
        return out
    x32 = x.view(np.int32)
    run = _KERNELS[kernel, packed.bounded]
    run_parallel([(run, (x32[start:stop], packed.w32, packed.epilogue, packed.settings,
                         residual if residual is _NO_RESIDUAL else residual[start:stop],
                         out[start:stop]))
                  for start, stop in split_range(n)])
    return out


def conv_layer(q: np.ndarray, layer: IntConv, residual: np.ndarray | None = None,
               kernel: str | None = None) -> np.ndarray:
    """`int8_reference.conv_layer`, fast: u8 codes (N, C, H, W) -> u8 (N, K, Ho, Wo)
    (`conv_padded` between `to_padded` and `from_padded`).

    Args:
        q, layer, residual: as in the reference.
        kernel: one of `KERNELS`; default `default_kernel()`.
    """
    if residual is not None:
        residual = to_padded(residual, layer.residual_zero_point, LANES)
    out = conv_padded(to_padded(q, layer.in_zero_point), layer, residual, kernel)
    return from_padded(out, layer.weight.shape[0])
