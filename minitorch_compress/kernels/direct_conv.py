"""Direct weight gradient of a 3x3 stride-1 convolution: no im2col buffer, the input
streamed through L1 (`kernels/dispatch.py` says where it runs: 32x32 and 16x16 outputs).

The weight gradient is a reduction over every image and pixel::

    gw[k, c, ky, kx] = sum_n sum_{oy,ox} gy[n, k, oy, ox] * xpad[n, c, oy + ky, ox + kx]

Why: on two threads the im2col path is bound by memory traffic, not by multiplies
(results/benchmark.md): for a 3x3 kernel im2col writes nine copies of the input and the
GEMM reads them back. Here each input row is read from cache by all 9 taps at once.

Layout ("stacked flat planes", padding shared). Each (image, channel) plane is stored row
after row with rows ``Wp = W + padding`` wide: the ``padding`` zeros after a row are both its
right padding and the next row's left padding. Likewise each image takes ``Hp = H + padding``
rows, the zero rows after an image being the top padding of the next one. The planes of a
chunk of images follow each other in one 1-D row per channel (a *segment* of ``Hp*Wp``
values per image). Output pixel (oy, ox) of image b sits at flat position
``P = b*Hp*Wp + oy*Wp + ox``, and kernel tap (ky, kx) reads ``row[P + ky*Wp + kx]``: a read
past the right end of a row lands in the padding gap or the next row's (zero) start, a read
below the last row in the zero rows after the image. So the 9 taps are 9 shifted views of
the same row. grad_y is laid out on the same grid, zero in the junk columns (the ``Wp - Wo``
at the end of each row) and between the images, so the gradient is 9 dot products per
(k, c) pair over whole chunks, with no bounds tests in the loop.

Only stride 1 and 3x3 (any padding).
As everywhere in `kernels/`, the loops are plain Python over arrays, so
``NUMBA_DISABLE_JIT=1`` runs them (slowly) in a debugger; `kernels/reference.py` is the
ground truth the tests compare against.
"""

from __future__ import annotations

import numpy as np
from numba import njit


def stacked_geometry(h: int, w: int, padding: int, images: int) -> tuple[int, int, int]:
    """(Wp, segment, row_len) of `images` stacked planes whose padding is shared between
    neighbours (module notes): Wp = W + padding, Hp = H + padding (for padding <= 2; beyond,
    Wp = W + 2*padding - 2, so that the output planes, Ho = H + 2*padding - 2 high, fit).

    Each image takes ``segment = Hp*Wp`` values of a channel's row; ``row_len`` adds room
    after the last segment for the last image's bottom padding and the taps' reads past
    the last output (``2*Wp + 2``)."""
    # zeros between neighbours: the padding, shared; with padding > 2 the output is larger
    # than the input, and each image's output planes must still fit in its own segment
    gap = max(padding, 2 * padding - 2)
    hp, wp = h + gap, w + gap
    segment = hp * wp
    return wp, segment, images * segment + 2 * wp + 2


@njit(cache=True, nogil=True)
def _pack_stacked(x, n0, padding, wp, segment, rows):
    """rows[c, b*segment + (padding + iy)*Wp + padding + ix] = x[n0 + b, c, iy, ix] for the
    images b of the chunk; the rest of rows stays as allocated (zero).

    x: (N, C, H, W); rows: (C, row_len) with row_len from `stacked_geometry`."""
    _, c_in, h, w = x.shape
    images = (rows.shape[1] - 2 * wp - 2) // segment
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


# Dot products over one image's plane are short (80 values at 8x8), and each ends in a
# horizontal sum of its vector accumulators, so a chunk of images is stacked end to end in
# one long row per channel: a tap's read for an output of image b stays inside image b's
# segment, and grad_y's zeros between the images make every other product vanish.


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
    (16 vector registers: see `dispatch.PAIR_GRAD_WEIGHT`), and for an odd K's last
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


def direct3x3_grad_weight_serial(grad_y: np.ndarray, x: np.ndarray, padding: int,
                                 pairs: bool) -> np.ndarray:
    """Weight gradient of a stride-1 3x3 convolution on the calling thread, no im2col.

    Args:
        grad_y: (N, K, Ho, Wo), C-contiguous, the dtype of x.
        x: (N, C, H, W), C-contiguous; Ho = H + 2*padding - 2 (same for W).
        padding: the forward's padding.
        pairs: two output channels a pass, or one (`dispatch.PAIR_GRAD_WEIGHT`, by the CPU).

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
                           bool(pairs))
    return gw9.reshape(k, c, 3, 3)
