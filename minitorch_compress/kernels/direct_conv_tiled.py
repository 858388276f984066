"""Direct 3x3 convolution (stride 1 or 2), register-tiled: a tile of 4 output channels x
V position vectors of 8 (or, on AVX-512, 16) outputs, all its sums in vector registers
from the first multiply to the last. It is the forward (and so the stride-1 grad-input) of
every float32 3x3 conv (`kernels/dispatch.py`).

Why: an im2col + GEMM path writes nine copies of the input and reads them back, and a
direct loop that keeps its sums in memory loads and stores them once per input channel.
Keeping a tile of sums in registers for the whole reduction, each multiply-add fed by a
broadcast weight, is how oneDNN's kernels run; `kernels/simd.py` lets numba express it.

Layout. One image at a time is copied into zero-padded planes ``xpad[c]`` of ``Hp`` rows
(``Hp = H + 2*padding``), each row `rowlen` values long (at least ``Wp = W + 2*padding``;
at stride 1 the output is ``Ho x Wo`` with ``Ho = Hp - 2``, ``Wo = Wp - 2``). A *position
vector* is 8 neighbouring outputs of one output row, ``y[k, oy, ox : ox + 8]``; tap
(ky, kx) of input channel c reads the 8 neighbouring values
``xpad[c, oy + ky, ox + kx : ox + kx + 8]``, so every tap is one vector load. A tile is 4
output channels x V position vectors (the next V of the image, in row order; V =
`dispatch.TILE_VECTORS`, 4 with 32 vector registers, 3 with 16)::

    for c, ky, kx:                                   # C*9 steps
        x_v = position vector v's tap (ky, kx) of channel c      (V loads)
        for q in 0..3:  sum[q][v] += w[k0 + q, c, ky, kx] * x_v  (4 broadcasts, 4V FMAs)

No store until the tile is done. Once an image is done, the fused epilogue (batch norm,
residual add, ReLU) runs over each of its planes as one row of Ho*Wo values
(`rows.affine_row`, the same loop as every other path, so the fused results stay bit for
bit those of the separate ops applied to this kernel's conv).

Sixteen lanes (AVX-512 only: `dispatch.forward_lanes`): the same tile of 4 x 4 vectors
(`_tile4x4` is one function for both widths), each a 512-bit register of 16 outputs, so
every load and broadcast feeds twice the multiply-adds. On a plane whose Wo is a multiple
of 16 the layouts below serve unchanged. On a narrower one at stride 1 (ResNet-20's 8x8) a
16-wide vector would be half padding, so the image is packed flat instead
(`_pack_shifted`): three copies of each padded channel, copy kx shifted left by kx columns
and cut to Wo columns, in which tap (ky, kx) of output position p = oy*Wo + ox sits at the
same offset + p for every p, so a vector of 16 outputs may span rows.

Stride 2 (`_pack_split`): each padded row is stored as its even columns, then its odd
ones, so that the three taps of 8 neighbouring outputs are again 8 contiguous values each
(at offsets 0, half and 1 of the row, `taps`), and input rows advance by 2 per output row.
The same tiles then run unchanged.

Any shape: a K that is not a multiple of 4 (the pruned widths of Lab 4) is padded with zero
filters and a Wo that is not a multiple of 8 with zero input columns; the conv then runs
into a scratch output whose extra planes and columns are dropped when it is copied out, the
epilogue applied on the way (over whole planes where only K was padded,
`_crop_planes_into`; row by row where columns were, `_crop_into`). ResNet-20's widths (16,
32, 64; Wo 32, 16, 8) need no scratch. The sums run in another order than im2col's GEMM,
so results agree to rounding (the tests compare against `kernels/reference.py`).

``NUMBA_DISABLE_JIT=1`` runs the same loops in plain Python (the vector operations as 8- or
16-value NumPy arrays, `kernels/simd.py`).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from minitorch_compress.kernels.common import epilogue_args as make_epilogue_args
from minitorch_compress.kernels.rows import affine_row, epilogue_on_row
from minitorch_compress.kernels.simd import (
    LANES,
    LANES16,
    vbroadcast,
    vbroadcast_like,
    vfma,
    vload,
    vload_like,
    vstore,
    vzero,
    vzero16,
)

# Output channels of one tile (public: channel pruning rounds its widths to it)
OUTPUT_CHANNEL_TILE = 4
#: names this kernel's code for caches of measurements made against it (the sparse break-even
#: is where the sparse kernel overtakes this one): change it when the kernel's speed changes
KERNEL_VERSION = "tiled-lanes8or16-2"


@njit(cache=True, nogil=True)
def _pack_image(x, n, padding, xpad):
    """xpad[c, padding + iy, padding + ix] = x[n, c, iy, ix]; the border keeps its zeros.

    x: (N, C, H, W); xpad: (C, H + 2*padding, W + 2*padding)."""
    w = x.shape[3]
    for c in range(x.shape[1]):
        for iy in range(x.shape[2]):
            # slice views indexed from 0: numba vectorises `dst[ix] = src[ix]`, not an
            # offset index it must check for wrap-around
            src = x[n, c, iy]
            dst = xpad[c, padding + iy, padding:padding + w]
            for ix in range(w):
                dst[ix] = src[ix]


@njit(cache=True, nogil=True)
def _pack_split(x, n, padding, half, xpad):
    """For stride 2: each padded row split into its even columns, then its odd ones:
    xpad[c, padding + iy, px // 2 (+ half if px is odd)] = x[n, c, iy, ix], px = padding + ix.

    Output column ox of a stride-2 conv reads padded columns 2*ox, 2*ox + 1, 2*ox + 2, i.e.
    even column ox, odd column ox, even column ox + 1: the taps of 8 neighbouring outputs
    are again 8 contiguous values, at offsets 0, half and 1 (`_tile4x4`'s taps).
    x: (N, C, H, W); xpad: (C, H + 2*padding, 2*half), half >= ceil((W + 2*padding) / 2)."""
    wd = x.shape[3]
    e0 = padding % 2  # the first input column at an even padded column; o0 at an odd one
    o0 = 1 - e0
    n_even, n_odd = (wd - e0 + 1) // 2, (wd - o0 + 1) // 2
    # where they land: padded column px at px // 2, or half + px // 2 if px is odd
    at_even, at_odd = (padding + e0) // 2, half + (padding + o0) // 2
    for c in range(x.shape[1]):
        for iy in range(x.shape[2]):
            src = x[n, c, iy]
            row = xpad[c, padding + iy]
            even = row[at_even:at_even + n_even]  # slice views: see `_pack_image`
            odd = row[at_odd:at_odd + n_odd]
            for j in range(n_even):
                even[j] = src[e0 + 2 * j]
            for j in range(n_odd):
                odd[j] = src[o0 + 2 * j]


@njit(cache=True, nogil=True)
def _pack_shifted(x, n, padding, xs):
    """The flat layout (stride 1): three copies of each padded channel, copy kx shifted
    left by kx columns and cut to Wo columns: xs[3*c + kx, py, j] = padded x[n, c, py, j + kx].
    Tap (ky, kx) of output position p = oy*Wo + ox of a plane is then
    xs.flat[(3*c + kx)*Hp*Wo + ky*Wo + p] for every p, so a vector of 16 neighbouring
    outputs may span rows (on an 8-wide plane, 2 rows a vector) and no column is padded.
    x: (N, C, H, W); xs: (3*C, Hp, Wo), zero from its allocation."""
    wd = x.shape[3]
    wo = xs.shape[2]
    for kx in range(3):
        # columns lo..hi-1 of copy kx hold input columns first..first + (hi - lo) - 1
        lo, hi = max(0, padding - kx), min(wo, wd + padding - kx)
        count = max(0, hi - lo)
        first = lo + kx - padding
        for c in range(x.shape[1]):
            for iy in range(x.shape[2]):
                src = x[n, c, iy, first:first + count]  # slice views: see `_pack_image`
                dst = xs[3 * c + kx, padding + iy, lo:lo + count]
                for j in range(count):
                    dst[j] = src[j]


@njit(cache=True, nogil=True)
def _tile4x4(xflat, w9, k0, c_in, plane, rowlen, taps, ins, yimg, outs, zero):
    """One tile: output channels k0..k0+3 at 4 position vectors, whose first outputs are at
    flat offsets outs[0..3] of an output plane and whose taps start at ins[0..3] of a
    packed input plane.

    xflat: the packed image, (C*Hp*rowlen,) flat; w9: (K, C*9), w9[k, c*9 + ky*3 + kx];
    plane: Hp*rowlen; rowlen: a packed row's length; taps: (3,), where tap kx of a vector
    starts in a packed row, relative to its tap 0 (0, 1, 2 at stride 1; see `_pack_split`
    for stride 2); yimg: (K, Ho*Wo), the image's output planes, flat; zero: the zero vector
    of the width to compute in, 8 or 16 lanes (`simd.vload_like`: numba compiles the tile
    once per width)."""
    in0, in1, in2, in3 = ins[0], ins[1], ins[2], ins[3]
    s00 = s01 = s02 = s03 = zero  # s<channel><vector>
    s10 = s11 = s12 = s13 = zero
    s20 = s21 = s22 = s23 = zero
    s30 = s31 = s32 = s33 = zero
    for c in range(c_in):
        for ky in range(3):
            row = c * plane + ky * rowlen
            for kx in range(3):
                x0 = vload_like(zero, xflat, row + taps[kx] + in0)
                x1 = vload_like(zero, xflat, row + taps[kx] + in1)
                x2 = vload_like(zero, xflat, row + taps[kx] + in2)
                x3 = vload_like(zero, xflat, row + taps[kx] + in3)
                t = c * 9 + ky * 3 + kx
                b = vbroadcast_like(zero, w9[k0, t])
                s00, s01, s02, s03 = (vfma(b, x0, s00), vfma(b, x1, s01), vfma(b, x2, s02),
                                      vfma(b, x3, s03))
                b = vbroadcast_like(zero, w9[k0 + 1, t])
                s10, s11, s12, s13 = (vfma(b, x0, s10), vfma(b, x1, s11), vfma(b, x2, s12),
                                      vfma(b, x3, s13))
                b = vbroadcast_like(zero, w9[k0 + 2, t])
                s20, s21, s22, s23 = (vfma(b, x0, s20), vfma(b, x1, s21), vfma(b, x2, s22),
                                      vfma(b, x3, s23))
                b = vbroadcast_like(zero, w9[k0 + 3, t])
                s30, s31, s32, s33 = (vfma(b, x0, s30), vfma(b, x1, s31), vfma(b, x2, s32),
                                      vfma(b, x3, s33))
    _store4(yimg[k0], outs, s00, s01, s02, s03)
    _store4(yimg[k0 + 1], outs, s10, s11, s12, s13)
    _store4(yimg[k0 + 2], outs, s20, s21, s22, s23)
    _store4(yimg[k0 + 3], outs, s30, s31, s32, s33)


@njit(cache=True, nogil=True)
def _tile4x3(xflat, w9, k0, c_in, plane, rowlen, taps, ins, yimg, outs):
    """`_tile4x4` with 3 position vectors (12 sums: for CPUs with 16 vector registers)."""
    in0, in1, in2 = ins[0], ins[1], ins[2]
    s00 = s01 = s02 = vzero()
    s10 = s11 = s12 = vzero()
    s20 = s21 = s22 = vzero()
    s30 = s31 = s32 = vzero()
    for c in range(c_in):
        for ky in range(3):
            row = c * plane + ky * rowlen
            for kx in range(3):
                x0 = vload(xflat, row + taps[kx] + in0)
                x1 = vload(xflat, row + taps[kx] + in1)
                x2 = vload(xflat, row + taps[kx] + in2)
                t = c * 9 + ky * 3 + kx
                b = vbroadcast(w9[k0, t])
                s00, s01, s02 = vfma(b, x0, s00), vfma(b, x1, s01), vfma(b, x2, s02)
                b = vbroadcast(w9[k0 + 1, t])
                s10, s11, s12 = vfma(b, x0, s10), vfma(b, x1, s11), vfma(b, x2, s12)
                b = vbroadcast(w9[k0 + 2, t])
                s20, s21, s22 = vfma(b, x0, s20), vfma(b, x1, s21), vfma(b, x2, s22)
                b = vbroadcast(w9[k0 + 3, t])
                s30, s31, s32 = vfma(b, x0, s30), vfma(b, x1, s31), vfma(b, x2, s32)
    _store3(yimg[k0], outs, s00, s01, s02)
    _store3(yimg[k0 + 1], outs, s10, s11, s12)
    _store3(yimg[k0 + 2], outs, s20, s21, s22)
    _store3(yimg[k0 + 3], outs, s30, s31, s32)


@njit(cache=True, nogil=True, inline="always")
def _store4(yrow, outs, v0, v1, v2, v3):
    """The 4 vectors of one channel into its output plane (a vector repeated at the end of
    an image holds the same sums, so its repeated stores agree)."""
    vstore(yrow, outs[0], v0)
    vstore(yrow, outs[1], v1)
    vstore(yrow, outs[2], v2)
    vstore(yrow, outs[3], v3)


@njit(cache=True, nogil=True, inline="always")
def _store3(yrow, outs, v0, v1, v2):
    """`_store4` for 3 vectors."""
    vstore(yrow, outs[0], v0)
    vstore(yrow, outs[1], v1)
    vstore(yrow, outs[2], v2)


@njit(cache=True, nogil=True)
def _tiled3x3(x, w9, padding, stride, xpad, y, four, wide, flat, epilogue, coef, relu, res,
              add_res):
    """y = conv3x3(x, w) at stride 1 or 2, one image at a time (module notes).

    x: (N, C, H, W) float32; w9: (K, C*9); xpad: scratch, zero from its allocation: (C, Hp,
    rowlen) (rowlen >= Wo + 2 at stride 1; at stride 2 twice `_pack_split`'s half,
    half >= Wo + 1), or if flat (3*C, Hp, Wo) (`_pack_shifted`); y: (N, K, Ho, Wo),
    C-contiguous, K a multiple of 4 and Wo of the lanes (flat: Ho*Wo >= 16); four: tiles of
    4 position vectors (else 3); wide: vectors of 16 lanes (tiles of 4), else 8; flat
    (wide, stride 1 only): each output plane cut into vectors of 16 as one row of Ho*Wo
    values, the last one moved back to end at the plane's end (its overlap is computed
    twice, equally)."""
    n_img, c_in = x.shape[0], x.shape[1]
    k_out, ho, wo = y.shape[1], y.shape[2], y.shape[3]
    rowlen = xpad.shape[2]
    plane = xpad.shape[1] * rowlen  # (flat: one shifted copy of a channel)
    half = rowlen // 2
    if flat:
        taps = np.array([0, plane, 2 * plane])
        plane *= 3
    else:
        taps = np.array([0, 1, 2]) if stride == 1 else np.array([0, half, 1])
    lanes = LANES16 if wide else LANES
    per_row = wo // lanes
    vectors = -(-ho * wo // lanes) if flat else ho * per_row
    step = 4 if four or wide else 3
    xflat = xpad.reshape(-1)
    ins = np.empty(step, np.intp)
    outs = np.empty(step, np.intp)
    for n in range(n_img):
        if flat:
            _pack_shifted(x, n, padding, xpad)
        elif stride == 1:
            _pack_image(x, n, padding, xpad)
        else:
            _pack_split(x, n, padding, half, xpad)
        yimg = y[n].reshape(k_out, ho * wo)
        for k0 in range(0, k_out, OUTPUT_CHANNEL_TILE):
            for v0 in range(0, vectors, step):
                for j in range(step):
                    v = min(v0 + j, vectors - 1)  # past the last: the last again
                    if flat:
                        ins[j] = outs[j] = min(v * lanes, ho * wo - lanes)
                    else:
                        oy, ox = v // per_row, (v % per_row) * lanes
                        ins[j] = stride * oy * rowlen + ox
                        outs[j] = oy * wo + ox
                if wide:
                    _tile4x4(xflat, w9, k0, c_in, plane, rowlen, taps, ins, yimg, outs,
                             vzero16())
                elif four:
                    _tile4x4(xflat, w9, k0, c_in, plane, rowlen, taps, ins, yimg, outs,
                             vzero())
                else:
                    _tile4x3(xflat, w9, k0, c_in, plane, rowlen, taps, ins, yimg, outs)
        if epilogue:  # each output plane is one contiguous row of Ho*Wo values
            resimg = res[n].reshape(k_out, ho * wo) if add_res else yimg  # (unread if not)
            for k in range(k_out):
                affine_row(yimg[k], yimg[k], coef[k, 0], coef[k, 1], relu, resimg[k], add_res)


@njit(cache=True, nogil=True)
def _crop_into(scratch, y, epilogue, coef, relu, res, add_res):
    """y[n, k, oy, :] = scratch[n, k, oy, :Wo] for the K planes of y (the padded filters'
    planes and columns dropped), then the epilogue on each row (`rows.epilogue_on_row`).

    scratch: (N, >= K, Ho, >= Wo); y: (N, K, Ho, Wo), any strides; res: like y or unread."""
    n_img, k_out, ho, wo = y.shape
    for n in range(n_img):
        for k in range(k_out):
            for oy in range(ho):
                src = scratch[n, k, oy]
                dst = y[n, k, oy]
                for ox in range(wo):
                    dst[ox] = src[ox]
                epilogue_on_row(dst, n, k, oy, epilogue, coef, relu, res, add_res)


@njit(cache=True, nogil=True)
def _crop_planes_into(scratch, y, epilogue, coef, relu, res, add_res):
    """y[n, k] = scratch[n, k] for the K planes of y (the padded filters' planes dropped),
    each plane as one row of Ho*Wo values, with the epilogue on it (`rows.affine_row`).

    scratch: (N, >= K, Ho, Wo) and y: (N, K, Ho, Wo), both C-contiguous; res: like y, or
    unread."""
    n_img, k_out, ho, wo = y.shape
    plane = ho * wo
    for n in range(n_img):
        src = scratch[n].reshape(scratch.shape[1], plane)
        yimg = y[n].reshape(k_out, plane)
        if epilogue:  # the epilogue reads the scratch plane and writes y's: one pass
            resimg = res[n].reshape(k_out, plane) if add_res else yimg  # (unread if not)
            for k in range(k_out):
                affine_row(src[k], yimg[k], coef[k, 0], coef[k, 1], relu, resimg[k], add_res)
        else:
            for k in range(k_out):
                src_plane, dst = src[k], yimg[k]
                for p in range(plane):
                    dst[p] = src_plane[p]


def tiled3x3_forward_serial(x: np.ndarray, w: np.ndarray, padding: int, y: np.ndarray,
                            epilogue_args: tuple, vectors: int, stride: int = 1,
                            lanes: int = LANES) -> None:
    """3x3 convolution of x into y at stride 1 or 2 on the calling thread, register-tiled.

    Args:
        x: (N, C, H, W) float32, C-contiguous.
        w: (K, C, 3, 3) float32, any K.
        padding: zero padding on each side.
        y: (N, K, Ho, Wo) float32, written; Ho = (H + 2*padding - 3) // stride + 1, Wo
            likewise. Where K is a multiple of 4, Wo of the lanes (or the layout is flat)
            and y C-contiguous the tiles write into y itself; otherwise into a padded
            scratch output, cropped into y.
        epilogue_args: `common.epilogue_args(...)` for a 4-D output (or its no-op form).
        vectors: position vectors a tile, 4 or 3 (`dispatch.TILE_VECTORS`, by the CPU).
        stride: 1 or 2.
        lanes: floats a position vector, 8 or 16 (16: for AVX-512 CPUs, always tiles of 4
            vectors, flat at stride 1 where Wo is not a multiple of 16 and Ho*Wo >= 16;
            `dispatch.forward_lanes`).

    Raises:
        ValueError: a kernel size, stride, dtype or tile this kernel does not take.
    """
    n, c, h, wd = x.shape
    k = w.shape[0]
    if (w.shape[2:] != (3, 3) or stride not in (1, 2) or vectors not in (3, 4)
            or lanes not in (LANES, LANES16)
            or x.dtype != np.float32 or w.dtype != np.float32):
        raise ValueError(f"tiled3x3: needs float32, a 3x3 kernel, stride 1 or 2 and tiles of "
                         f"3 or 4 vectors; got weight {w.shape} {w.dtype}, input {x.dtype}, "
                         f"stride {stride}, {vectors} vectors of {lanes} lanes")
    hp, wp = h + 2 * padding, wd + 2 * padding
    ho, wo = (hp - 3) // stride + 1, (wp - 3) // stride + 1
    # K up to whole tiles of output channels
    k_tiled = -(-k // OUTPUT_CHANNEL_TILE) * OUTPUT_CHANNEL_TILE
    wo_tiled = -(-wo // lanes) * lanes  # Wo up to whole position vectors
    w9 = np.ascontiguousarray(w.reshape(k, c * 9))
    if k_tiled != k:  # zero filters: their planes are computed and dropped
        w9 = np.concatenate([w9, np.zeros((k_tiled - k, c * 9), np.float32)])
    four, wide = vectors == 4, lanes == LANES16
    # 16 lanes on a narrower plane at stride 1: the flat layout (`_pack_shifted`), whose
    # vectors span rows, so that no column is padded
    flat = wide and stride == 1 and wo % LANES16 != 0 and ho * wo >= LANES16
    if flat:
        wo_tiled = wo
        xpad = np.zeros((3 * c, hp, wo), dtype=np.float32)
    else:
        # a packed row holds the padded input row and, past it, zeros up to the last tap
        # read by the last position vector (stride 2: each half as long as the even columns)
        if stride == 1:
            rowlen = max(wp, wo_tiled + 2)
        else:
            rowlen = 2 * max(-(-wp // 2), wo_tiled + 1)
        xpad = np.zeros((c, hp, rowlen), dtype=np.float32)
    if k_tiled == k and wo_tiled == wo and y.flags.c_contiguous:
        _tiled3x3(x, w9, padding, stride, xpad, y, four, wide, flat, *epilogue_args)
        return
    scratch = np.empty((n, k_tiled, ho, wo_tiled), dtype=np.float32)
    _tiled3x3(x, w9, padding, stride, xpad, scratch, four, wide, flat,
              *make_epilogue_args(None, 4, np.dtype(np.float32)))
    res, add_res = epilogue_args[3], epilogue_args[4]
    if (wo_tiled == wo and y.flags.c_contiguous
            and (not add_res or res.flags.c_contiguous)):  # only K was padded
        _crop_planes_into(scratch, y, *epilogue_args)
    else:
        _crop_into(scratch, y, *epilogue_args)
