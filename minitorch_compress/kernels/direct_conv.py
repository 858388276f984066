"""Direct 3x3 stride-1 convolution: no im2col buffer, the input streamed through L1.

Why: on two threads the im2col path is bound by memory traffic, not by multiplies (see
``results/benchmark.md``): for a 3x3 kernel im2col writes nine copies of the input and the
GEMM reads them back, and two threads doing that at once run no faster than one. A direct
convolution reads each input plane from cache and writes each output once.

Layout ("stacked flat planes", padding shared). Each (image, channel) plane is stored row
after row with rows ``Wp = W + padding`` wide: the ``padding`` zeros after a row are both its
right padding and the next row's left padding. Likewise each image takes ``Hp = H + padding``
rows, the zero rows after an image being the top padding of the next one. The planes of a
chunk of images follow each other in one 1-D row per channel (a *segment* of ``Hp*Wp``
values per image, the first image's top padding and the last one's bottom padding being
zero rows at the row's ends). Output pixel (oy, ox) of image b is computed at flat position
``P = b*Hp*Wp + oy*Wp + ox``, and kernel tap (ky, kx) reads ``row[P + ky*Wp + kx]``: a read
past the right end of a row lands in the padding gap or the next row's (zero) start, a read
below the last row in the zero rows after the image. So the 9 taps are 9 shifted views of
the same row, and one loop over P computes the output planes of the whole chunk::

    acc[q, P] = sum_c sum_{ky,kx} w[k0+q, c, ky, kx] * row[c][P + ky*Wp + kx]

The loop also computes junk positions (the ``Wp - Wo`` columns at the end of each row and
the rows between images), thrown away when the planes are written out: 6 % of the positions
at 32x32, 11 % at 16x16, 21 % at 8x8 (with the padding on both sides of every plane, as
until 2026-12-03: 11, 21 and 36 %). In exchange the loop is long and has no bounds tests, so
numba/LLVM compile it to full-width SIMD; its length is rounded up to `_LANES` so that no
scalar remainder loop runs.

Register blocking: `_accumulate4` computes four output channels at once, so each of the 9
input values it loads feeds 4 fused multiply-adds (36 per position), from weights held in
scalars. The weight gradient (`direct3x3_grad_weight_serial`) is 9 dot products per
(k, c) pair over the same stacked rows, with grad_y laid out on the same grid.

Only stride 1 and 3x3 (any padding): the stride-2 convs and the 1x1 shortcuts keep the
im2col path.
As everywhere in `kernels/`, the loops are plain Python over arrays, so
``NUMBA_DISABLE_JIT=1`` runs them (slowly) in a debugger; `kernels/reference.py` is the
ground truth the tests compare against.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from minitorch_compress.kernels.rows import epilogue_on_row

# SIMD lanes of float32 in one AVX-512 register: the flat loop's length is a multiple of
# this, so LLVM's vector body covers it entirely (a float64 or narrower machine just runs
# the vector body more times; nothing depends on it being exact).
_LANES = 16
# Output channels computed together by `_accumulate4` (see the module notes).
_BLOCK = 4


def stacked_geometry(h: int, w: int, padding: int, images: int) -> tuple[int, int, int]:
    """(Wp, segment, row_len) of `images` stacked planes whose padding is shared between
    neighbours (module notes): Wp = W + padding, Hp = H + padding (for padding <= 2; beyond,
    Wp = W + 2*padding - 2, so that the output planes, Ho = H + 2*padding - 2 high, fit).

    Each image takes ``segment = Hp*Wp`` values of a channel's row; ``row_len`` adds room
    after the last segment for the last image's bottom padding and the taps' reads
    (``2*Wp + 2``) at the positions a loop rounded up to `_LANES` computes past the last real
    output."""
    # zeros between neighbours: the padding, shared; with padding > 2 the output is larger
    # than the input, and each image's output planes must still fit in its own segment
    gap = max(padding, 2 * padding - 2)
    hp, wp = h + gap, w + gap
    segment = hp * wp
    return wp, segment, images * segment + _LANES + 2 * wp + 2


@njit(cache=True, nogil=True)
def _pack_stacked(x, n0, padding, wp, segment, rows):
    """rows[c, b*segment + (padding + iy)*Wp + padding + ix] = x[n0 + b, c, iy, ix] for the
    images b of the chunk; the rest of rows stays as allocated (zero).

    x: (N, C, H, W); rows: (C, row_len) with row_len from `stacked_geometry`."""
    _, c_in, h, w = x.shape
    images = (rows.shape[1] - _LANES - 2 * wp - 2) // segment
    for b in range(min(images, x.shape[0] - n0)):
        for c in range(c_in):
            for iy in range(h):
                src = x[n0 + b, c, iy]
                dst = rows[c, b * segment + (padding + iy) * wp + padding:]
                for ix in range(w):
                    dst[ix] = src[ix]


# inline="always": the views are built in the caller, where LLVM sees that they all share
# one base pointer (a called function's returned views would hide that)
@njit(cache=True, nogil=True, inline="always")
def _taps(row, wp):
    """The 9 views of a stacked row that the 3x3 taps read: view t starts at
    ``(t//3)*Wp + t%3``, so position P of view t is the tap's input for output P."""
    return (row[0:], row[1:], row[2:], row[wp:], row[wp + 1:], row[wp + 2:],
            row[2 * wp:], row[2 * wp + 1:], row[2 * wp + 2:])


@njit(cache=True, nogil=True, fastmath={"contract"})
def _accumulate4(slots, w9, k0, wp, acc, length):
    """acc[q, p] = sum_c sum_t w9[k0+q, c, t] * slots[c, p + (t//3)*Wp + t%3], q = 0..3,
    for p < length.

    slots: (C, row_len); w9: (K, C, 9), the 3x3 taps in row-major order; acc: (4, >= length),
    C-contiguous (a sliced view such as ``acc[:, :length]`` would have strided rows to numba,
    and its loops would not be vectorised: measured 5x slower).
    The taps are 9 shifted views of the channel's slot and the weights 36 scalars, so the
    loop over p holds no index arithmetic and no array that might alias acc's rows. Each
    sum starts from the accumulator, so it compiles to a chain of 9 fused multiply-adds
    (``acc += (...)`` would cost a multiply and an add more per output channel)."""
    c_in = slots.shape[0]
    a0, a1, a2, a3 = acc[0], acc[1], acc[2], acc[3]
    for p in range(length):
        a0[p] = 0.0
        a1[p] = 0.0
        a2[p] = 0.0
        a3[p] = 0.0
    for c in range(c_in):
        s0, s1, s2, s3, s4, s5, s6, s7, s8 = _taps(slots[c], wp)
        u0, u1, u2, u3, u4, u5, u6, u7, u8 = w9[k0, c]
        v0, v1, v2, v3, v4, v5, v6, v7, v8 = w9[k0 + 1, c]
        e0, e1, e2, e3, e4, e5, e6, e7, e8 = w9[k0 + 2, c]
        f0, f1, f2, f3, f4, f5, f6, f7, f8 = w9[k0 + 3, c]
        for p in range(length):
            x0, x1, x2 = s0[p], s1[p], s2[p]
            x3, x4, x5 = s3[p], s4[p], s5[p]
            x6, x7, x8 = s6[p], s7[p], s8[p]
            a0[p] = (a0[p] + u0 * x0 + u1 * x1 + u2 * x2 + u3 * x3 + u4 * x4
                     + u5 * x5 + u6 * x6 + u7 * x7 + u8 * x8)
            a1[p] = (a1[p] + v0 * x0 + v1 * x1 + v2 * x2 + v3 * x3 + v4 * x4
                     + v5 * x5 + v6 * x6 + v7 * x7 + v8 * x8)
            a2[p] = (a2[p] + e0 * x0 + e1 * x1 + e2 * x2 + e3 * x3 + e4 * x4
                     + e5 * x5 + e6 * x6 + e7 * x7 + e8 * x8)
            a3[p] = (a3[p] + f0 * x0 + f1 * x1 + f2 * x2 + f3 * x3 + f4 * x4
                     + f5 * x5 + f6 * x6 + f7 * x7 + f8 * x8)


@njit(cache=True, nogil=True, fastmath={"contract"})
def _accumulate1(slots, w9, k, wp, acc_row, length):
    """`_accumulate4` for one output channel k (the K % 4 channels left over)."""
    c_in = slots.shape[0]
    for p in range(length):
        acc_row[p] = 0.0
    for c in range(c_in):
        s0, s1, s2, s3, s4, s5, s6, s7, s8 = _taps(slots[c], wp)
        u0, u1, u2, u3, u4, u5, u6, u7, u8 = w9[k, c]
        for p in range(length):
            acc_row[p] = (acc_row[p] + u0 * s0[p] + u1 * s1[p] + u2 * s2[p] + u3 * s3[p]
                          + u4 * s4[p] + u5 * s5[p] + u6 * s6[p] + u7 * s7[p] + u8 * s8[p])


@njit(cache=True, nogil=True)
def _write_plane(acc_row, wp, y, n, k, epilogue, coef, relu, res, add_res):
    """y[n, k, oy, :] = acc_row[oy*Wp : oy*Wp + Wo] for every output row (the junk columns
    dropped), then the epilogue of `rows.affine_row` on each row if asked."""
    ho, wo = y.shape[2], y.shape[3]
    for oy in range(ho):
        dst = y[n, k, oy]
        src = acc_row[oy * wp:]
        for ox in range(wo):
            dst[ox] = src[ox]
        epilogue_on_row(dst, n, k, oy, epilogue, coef, relu, res, add_res)


@njit(cache=True, nogil=True)
def _direct3x3(x, w9, padding, wp, segment, xrows, acc, y, epilogue, coef, relu, res, add_res):
    """y = conv3x3(x, w), stride 1, a chunk of images at a time: stack them, accumulate 4
    output channels at a time over all of them, write each image's planes out.

    x: (N, C, H, W); w9: (K, C, 9); xrows: (C, row_len) and acc: (4, >= row_len - 2*Wp - 2)
    scratch (`stacked_geometry`), xrows zero from its allocation; y: (N, K, Ho, Wo).
    Epilogue arguments as in `_write_plane`."""
    n_img = x.shape[0]
    k_out = w9.shape[0]
    ho, wo = y.shape[2], y.shape[3]
    images = (xrows.shape[1] - _LANES - 2 * wp - 2) // segment
    k_blocked = k_out - k_out % 4
    for n0 in range(0, n_img, images):
        count = min(images, n_img - n0)
        _pack_stacked(x, n0, padding, wp, segment, xrows)
        last = (count - 1) * segment + (ho - 1) * wp + wo
        # rounded up to whole vectors; a shorter last chunk computes junk from the previous
        # chunk's images there, which is never written out
        length = -(-last // _LANES) * _LANES
        for k0 in range(0, k_blocked, 4):
            _accumulate4(xrows, w9, k0, wp, acc, length)
            for q in range(4):
                for b in range(count):
                    _write_plane(acc[q, b * segment:], wp, y, n0 + b, k0 + q,
                                 epilogue, coef, relu, res, add_res)
        for k in range(k_blocked, k_out):
            _accumulate1(xrows, w9, k, wp, acc[0], length)
            for b in range(count):
                _write_plane(acc[0, b * segment:], wp, y, n0 + b, k,
                             epilogue, coef, relu, res, add_res)


# Flat output positions one forward chunk computes per output channel: the images stacked
# until about this many (at least one). Long enough that the loop's fixed costs (views,
# weights, the runtime alias check) vanish, short enough that the 4 accumulator rows
# (16 KB at 1,024) stay in L1 beside the input rows being read.
_FORWARD_POSITIONS = 1024


def direct3x3_forward_serial(x: np.ndarray, w: np.ndarray, padding: int, y: np.ndarray,
                             epilogue_args: tuple) -> None:
    """Stride-1 3x3 convolution of x into y on the calling thread, no im2col.

    Args:
        x: (N, C, H, W), C-contiguous, float32 or float64 (the dtype of w and y).
        w: (K, C, 3, 3).
        padding: zeros on each side of H and W.
        y: (N, K, H + 2*padding - 2, W + 2*padding - 2), written in full.
        epilogue_args: ``(epilogue, coef, relu, res, add_res)`` as `conv._epilogue_args`
            makes them for a 4-D output (no epilogue: a plain convolution).
    """
    n, c, h, wd = x.shape
    k = w.shape[0]
    if w.shape[2:] != (3, 3):
        raise ValueError(f"direct3x3: kernel must be 3x3, got weight shape {w.shape}")
    segment = stacked_geometry(h, wd, padding, 1)[1]
    images = max(1, min(n, _FORWARD_POSITIONS // segment))
    wp, segment, row_len = stacked_geometry(h, wd, padding, images)
    xrows = np.zeros((c, row_len), dtype=x.dtype)
    acc = np.empty((_BLOCK, images * segment + _LANES), dtype=x.dtype)
    w9 = np.ascontiguousarray(w.reshape(k, c, 9))
    _direct3x3(x, w9, padding, wp, segment, xrows, acc, y, *epilogue_args)


# ------------------------------------------------------------------- grad-weight
# The weight gradient is a reduction over every image and pixel:
#     gw[k, c, ky, kx] = sum_n sum_{oy,ox} gy[n, k, oy, ox] * xpad[n, c, oy + ky, ox + kx]
# On flat planes it is 9 dot products per (k, c) pair between grad_y's plane, laid out on the
# same padded-width grid (zero in the junk columns), and 9 shifted views of the input's slot.
# Dot products over one image's plane are short (80 values at 8x8), and each ends in a
# horizontal sum of its vector accumulators, so a chunk of images is stacked end to end in
# one long row per channel ("stacked planes", each image `Hp*Wp` long): a tap's read for an
# output of image b stays inside image b's segment, and grad_y's zeros between the images
# make every other product vanish.


@njit(cache=True, nogil=True, inline="always")
def _add_taps(out, t0, t1, t2, t3, t4, t5, t6, t7, t8):
    """out[t] += the tap's sum, t = 0..8 (the sums a grad-weight pass kept in registers)."""
    out[0] += t0
    out[1] += t1
    out[2] += t2
    out[3] += t3
    out[4] += t4
    out[5] += t5
    out[6] += t6
    out[7] += t7
    out[8] += t8


@njit(cache=True, nogil=True, fastmath={"contract", "reassoc"})
def _grad_weight_pair(xrows, grows, k0, c, wp, length, gw9):
    """gw9[k0 + q, c, t] += sum_P grows[k0 + q, P] * xrows[c, P + (t//3)*Wp + t%3] for
    q = 0, 1 and the 9 taps t, P < length.

    18 running sums in scalars, which LLVM turns into vector accumulators (reassociation is
    allowed here for that: the order of the sum is the vector lanes', then theirs)."""
    s0, s1, s2, s3, s4, s5, s6, s7, s8 = _taps(xrows[c], wp)
    g, h = grows[k0], grows[k0 + 1]
    u0 = u1 = u2 = u3 = u4 = u5 = u6 = u7 = u8 = gw9.dtype.type(0)
    v0 = v1 = v2 = v3 = v4 = v5 = v6 = v7 = v8 = gw9.dtype.type(0)
    for p in range(length):
        x0, x1, x2 = s0[p], s1[p], s2[p]
        x3, x4, x5 = s3[p], s4[p], s5[p]
        x6, x7, x8 = s6[p], s7[p], s8[p]
        a, b = g[p], h[p]
        u0 += a * x0
        u1 += a * x1
        u2 += a * x2
        u3 += a * x3
        u4 += a * x4
        u5 += a * x5
        u6 += a * x6
        u7 += a * x7
        u8 += a * x8
        v0 += b * x0
        v1 += b * x1
        v2 += b * x2
        v3 += b * x3
        v4 += b * x4
        v5 += b * x5
        v6 += b * x6
        v7 += b * x7
        v8 += b * x8
    _add_taps(gw9[k0, c], u0, u1, u2, u3, u4, u5, u6, u7, u8)
    _add_taps(gw9[k0 + 1, c], v0, v1, v2, v3, v4, v5, v6, v7, v8)


@njit(cache=True, nogil=True, fastmath={"contract", "reassoc"})
def _grad_weight_one(xrows, grows, k, c, wp, length, gw9):
    """`_grad_weight_pair` for one output channel k: 9 running sums in one pass.

    Used for every k where the pair's 18 vector accumulators do not fit in the registers
    (16 vector registers without AVX-512: see `pair_grad_weight`), and for an odd K's last
    channel."""
    s0, s1, s2, s3, s4, s5, s6, s7, s8 = _taps(xrows[c], wp)
    g = grows[k]
    u0 = u1 = u2 = u3 = u4 = u5 = u6 = u7 = u8 = gw9.dtype.type(0)
    for p in range(length):
        a = g[p]
        u0 += a * s0[p]
        u1 += a * s1[p]
        u2 += a * s2[p]
        u3 += a * s3[p]
        u4 += a * s4[p]
        u5 += a * s5[p]
        u6 += a * s6[p]
        u7 += a * s7[p]
        u8 += a * s8[p]
    _add_taps(gw9[k, c], u0, u1, u2, u3, u4, u5, u6, u7, u8)


@njit(cache=True, nogil=True)
def _direct3x3_grad_weight(x, gy, padding, wp, segment, xrows, grows, gw9, pairs):
    """gw9 (K, C, 9) = the weight gradient of a stride-1 3x3 conv, chunk by chunk.

    x: (N, C, H, W); gy: (N, K, Ho, Wo); xrows: (C, row_len), grows: (K, images*segment),
    both zero from their allocation (stacked_geometry); gw9 zeroed on entry; pairs: two
    output channels a pass (`_grad_weight_pair`) or one (`_grad_weight_one`)."""
    n_img = x.shape[0]
    k_out, c_in = gw9.shape[0], gw9.shape[1]
    ho, wo = gy.shape[2], gy.shape[3]
    images = grows.shape[1] // segment
    for n0 in range(0, n_img, images):
        # (a shorter last chunk needs no clearing: only real positions are ever written,
        # and the loop stops at the last real output of its last image)
        count = min(images, n_img - n0)
        _pack_stacked(x, n0, padding, wp, segment, xrows)
        for b in range(count):
            for k in range(k_out):
                for oy in range(ho):
                    src = gy[n0 + b, k, oy]
                    dst = grows[k, b * segment + oy * wp:]
                    for ox in range(wo):
                        dst[ox] = src[ox]
        length = (count - 1) * segment + (ho - 1) * wp + wo
        paired = k_out - k_out % 2 if pairs else 0
        for k0 in range(0, paired, 2):
            for c in range(c_in):
                _grad_weight_pair(xrows, grows, k0, c, wp, length, gw9)
        for k in range(paired, k_out):
            for c in range(c_in):
                _grad_weight_one(xrows, grows, k, c, wp, length, gw9)


# Bytes of the stacked rows of one chunk (input and grad_y): small enough for L2 (1 MB per
# core), which every (k, c) pair's pass reads again.
_STACK_BYTES = 512 * 1024


def _has_32_vector_registers() -> bool:
    """Whether this CPU has AVX-512's 32 vector registers (x86 without it has 16)."""
    import llvmlite.binding as llvm

    try:
        return bool(llvm.get_host_cpu_features().get("avx512f", False))
    except Exception:  # a host llvmlite cannot describe: take the safe, smaller block
        return False


# Two output channels per grad-weight pass need 18 vector accumulators: they fit in AVX-512's
# 32 registers (measured 1.7-1.9x faster than im2col at 32x32 on a Zen 4 core), not in
# AVX2's 16, where the spills made the pair 0.76x of im2col at 32x32 on a Zen 3 core
# (results/benchmark.md). One channel a pass needs 9.
PAIR_GRAD_WEIGHT = _has_32_vector_registers()


def direct3x3_grad_weight_serial(grad_y: np.ndarray, x: np.ndarray, padding: int,
                                 pairs: bool | None = None) -> np.ndarray:
    """Weight gradient of a stride-1 3x3 convolution on the calling thread, no im2col.

    Args:
        grad_y: (N, K, Ho, Wo), C-contiguous, the dtype of x.
        x: (N, C, H, W), C-contiguous; Ho = H + 2*padding - 2 (same for W).
        padding: the forward's padding.
        pairs: two output channels a pass, or one; None: `PAIR_GRAD_WEIGHT` (by the CPU).

    Returns:
        grad_w, (K, C, 3, 3), in the dtype of x.
    """
    n, c, h, wd = x.shape
    k = grad_y.shape[1]
    per_image = (c + k) * stacked_geometry(h, wd, padding, 1)[1] * x.dtype.itemsize
    images = max(1, min(n, _STACK_BYTES // per_image))
    wp, segment, row_len = stacked_geometry(h, wd, padding, images)
    xrows = np.zeros((c, row_len), dtype=x.dtype)
    grows = np.zeros((k, images * segment), dtype=x.dtype)
    gw9 = np.zeros((k, c, 9), dtype=x.dtype)
    _direct3x3_grad_weight(x, grad_y, padding, wp, segment, xrows, grows, gw9,
                           PAIR_GRAD_WEIGHT if pairs is None else bool(pairs))
    return gw9.reshape(k, c, 3, 3)
