"""Direct 3x3 stride-1 convolution on channels-last rows: 8 sums at a time, in registers.

Why a second direct kernel. `direct_conv`'s forward streams whole planes and keeps its 4
output channels' sums in memory: every input channel loads and stores them again, and its
junk positions grow as the planes shrink. On the Zen 3 host it lost to im2col + GEMM at 16x16
(0.83x) and 8x8 (0.39x), the layers where ResNet-20 has most of its channels. Here each
output is one dot product over (ky, kx, c), and the sums stay in registers from the first
multiply to the last.

Layout. One image at a time is copied, zero-padded, into channels-last rows: padded row py
holds ``xrow[py][px*C + c] = xpad[c, py, px]``. For output (oy, ox), kernel row ky reads the
3C contiguous values ``xrow[oy + ky][ox*C : ox*C + 3C]``, and output channel k's weights for
that kernel row are the contiguous ``wt[k, ky, :]`` (w[k, :, ky, :] reordered to (kx, c))::

    y[k, oy, ox] = sum_ky sum_{i < 3C} wt[k, ky, i] * xrow[oy + ky][ox*C + i]

`_row4` computes one output row of 4 output channels, two positions at a time: 8 sums,
each a reduction over i that LLVM vectorises (fast-math reassociation lets it keep one
vector of partial sums per sum and add its lanes once at the end). Per step over i it loads
6 input and 12 weight vectors and issues 24 fused multiply-adds; 8 accumulators plus the
loaded values fit AVX2's 16 vector registers. No junk is computed, except one discarded
position per row when the output width is odd (the padded row gets one more zero column so
that the pair's second position stays inside it).

The sums are in another order than im2col's GEMM, so results agree to rounding, not bit for
bit (the tests compare against `kernels/reference.py` with the usual tolerance). As
everywhere in `kernels/`, ``NUMBA_DISABLE_JIT=1`` runs the loops as plain Python.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from minitorch_compress.kernels.rows import epilogue_on_row

# Output channels one `_row4` call computes (the sums: this times the 2 positions).
_BLOCK = 4


def padded_width(w: int, padding: int) -> int:
    """Columns of a channels-last padded row: W + 2*padding, plus one zero column when the
    output width W + 2*padding - 2 is odd (the second position of the last pair)."""
    wo = w + 2 * padding - 2
    return w + 2 * padding + wo % 2


@njit(cache=True, nogil=True)
def _pack_image(x, n, padding, xrows):
    """xrows[padding + iy, (padding + ix)*C + c] = x[n, c, iy, ix]; the border is left as
    allocated (zero).

    x: (N, C, H, W); xrows: (H + 2*padding, Wp*C) with Wp from `padded_width`."""
    c_in, h, w = x.shape[1], x.shape[2], x.shape[3]
    for c in range(c_in):
        for iy in range(h):
            src = x[n, c, iy]
            dst = xrows[padding + iy]
            for ix in range(w):
                dst[(padding + ix) * c_in + c] = src[ix]


@njit(cache=True, nogil=True, fastmath={"contract", "reassoc"})
def _row4(r0, r1, r2, w0, w1, w2, w3, c_in, wo, zero, y0, y1, y2, y3):
    """y_q[ox] = sum_ky sum_{i < 3C} w_q[ky, i] * r_ky[ox*C + i] for q = 0..3, ox < wo.

    r0, r1, r2: the three padded channels-last rows under the output row; w_q: (3, 3C), the
    weights of output channel q; zero: 0 of the dtype (the sums' type); y_q: the output
    rows (length >= wo rounded up to even). The taps are views built once per position pair,
    so the loop over i has no index arithmetic (LLVM vectorises it)."""
    n3c = 3 * c_in
    u0, u1, u2 = w0[0], w0[1], w0[2]
    v0, v1, v2 = w1[0], w1[1], w1[2]
    e0, e1, e2 = w2[0], w2[1], w2[2]
    f0, f1, f2 = w3[0], w3[1], w3[2]
    for ox in range(0, wo, 2):
        a = ox * c_in
        xa0, xa1, xa2 = r0[a:], r1[a:], r2[a:]  # position ox
        xb0, xb1, xb2 = r0[a + c_in:], r1[a + c_in:], r2[a + c_in:]  # position ox + 1
        s00 = s01 = s10 = s11 = s20 = s21 = s30 = s31 = zero
        for i in range(n3c):
            a0, a1, a2 = xa0[i], xa1[i], xa2[i]
            b0, b1, b2 = xb0[i], xb1[i], xb2[i]
            s00 += u0[i] * a0 + u1[i] * a1 + u2[i] * a2
            s01 += u0[i] * b0 + u1[i] * b1 + u2[i] * b2
            s10 += v0[i] * a0 + v1[i] * a1 + v2[i] * a2
            s11 += v0[i] * b0 + v1[i] * b1 + v2[i] * b2
            s20 += e0[i] * a0 + e1[i] * a1 + e2[i] * a2
            s21 += e0[i] * b0 + e1[i] * b1 + e2[i] * b2
            s30 += f0[i] * a0 + f1[i] * a1 + f2[i] * a2
            s31 += f0[i] * b0 + f1[i] * b1 + f2[i] * b2
        y0[ox], y0[ox + 1] = s00, s01
        y1[ox], y1[ox + 1] = s10, s11
        y2[ox], y2[ox + 1] = s20, s21
        y3[ox], y3[ox + 1] = s30, s31


@njit(cache=True, nogil=True)
def _direct3x3_nhwc(x, wt, padding, xrows, spare, zero, y, epilogue, coef, relu, res,
                    add_res):
    """y = conv3x3(x, w), stride 1, one image at a time, 4 output channels a pass.

    x: (N, C, H, W); wt: (K4, 3, 3C), K rounded up to a multiple of 4 with zero channels;
    xrows: (H + 2*padding, Wp*C) scratch, zero from its allocation; spare: (4, even wo)
    scratch rows for the channels past K and for the odd column; y: (N, K, Ho, Wo)."""
    n_img, c_in = x.shape[0], x.shape[1]
    k_out, ho, wo = y.shape[1], y.shape[2], y.shape[3]
    even = wo % 2 == 0
    for n in range(n_img):
        _pack_image(x, n, padding, xrows)
        for k0 in range(0, wt.shape[0], _BLOCK):
            w0, w1, w2, w3 = wt[k0], wt[k0 + 1], wt[k0 + 2], wt[k0 + 3]
            for oy in range(ho):
                r0, r1, r2 = xrows[oy], xrows[oy + 1], xrows[oy + 2]
                if even and k0 + _BLOCK <= k_out:
                    _row4(r0, r1, r2, w0, w1, w2, w3, c_in, wo, zero, y[n, k0, oy],
                          y[n, k0 + 1, oy], y[n, k0 + 2, oy], y[n, k0 + 3, oy])
                else:  # into the spare rows, then the real part of each copied out
                    _row4(r0, r1, r2, w0, w1, w2, w3, c_in, wo, zero, spare[0], spare[1],
                          spare[2], spare[3])
                    for q in range(min(_BLOCK, k_out - k0)):
                        dst = y[n, k0 + q, oy]
                        for ox in range(wo):
                            dst[ox] = spare[q, ox]
                for q in range(min(_BLOCK, k_out - k0)):
                    epilogue_on_row(y[n, k0 + q, oy], n, k0 + q, oy, epilogue, coef, relu,
                                    res, add_res)


def direct3x3_nhwc_forward_serial(x: np.ndarray, w: np.ndarray, padding: int, y: np.ndarray,
                                  epilogue_args: tuple) -> None:
    """Stride-1 3x3 convolution of x into y on the calling thread, channels-last rows;
    arguments and shapes as for `direct_conv.direct3x3_forward_serial`."""
    n, c, h, wd = x.shape
    k = w.shape[0]
    if w.shape[2:] != (3, 3):
        raise ValueError(f"direct3x3_nhwc: kernel must be 3x3, got weight shape {w.shape}")
    wo = wd + 2 * padding - 2
    k4 = -(-k // _BLOCK) * _BLOCK
    wt = np.zeros((k4, 3, 3 * c), dtype=x.dtype)  # wt[k, ky, kx*C + c] = w[k, c, ky, kx]
    wt[:k] = w.transpose(0, 2, 3, 1).reshape(k, 3, 3 * c)
    xrows = np.zeros((h + 2 * padding, padded_width(wd, padding) * c), dtype=x.dtype)
    spare = np.empty((_BLOCK, wo + wo % 2), dtype=x.dtype)
    _direct3x3_nhwc(x, wt, padding, xrows, spare, x.dtype.type(0), y, *epilogue_args)
