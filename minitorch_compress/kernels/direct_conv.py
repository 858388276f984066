"""Direct weight gradient of a 3x3 convolution (stride 1 or 2): no im2col buffer, a tile of
sums in vector registers (`kernels/dispatch.py` says where it runs).

The weight gradient is a reduction over every image and output pixel (s: the stride)::

    gw[k, c, ky, kx] = sum_n sum_{oy,ox} gy[n, k, oy, ox] * xpad[n, c, s*oy + ky, s*ox + kx]

Why: an im2col + GEMM path writes nine copies of the input and reads them back; here each
input value is read from cache by the 9 taps that use it.

Layout (channels last). A chunk of images is copied into zero-padded planes with the
channels innermost, ``xcl[b, py, px, c] = xpad[n0 + b, c, py, px]`` (C rounded up to whole
vectors with zero channels). A vector is then 8 or 16 neighbouring *input channels* at one
padded position, and tap (ky, kx) of output (oy, ox) reads the vector at position
(s*oy + ky, s*ox + kx): one aligned load (a row of ``xcl`` is a whole number of vectors), where
a vector along a row of positions would straddle two cache lines at 8 of the 9 taps.

A tile is 3 output channels x the 9 taps, for one vector of input channels: 27 sums, each
the gradient of 16 (or 8) weights, in vector registers from the first image of a chunk to
its last (27 sums + 3 broadcasts + 1 input = 31 of AVX-512's 32 registers, which is why
`kernels/dispatch.py` runs this kernel only on CPUs that have them)::

    for b, oy, ox:                                   # every output of the chunk
        a_q = gy[b, k0 + q, oy, ox] for q = 0, 1, 2                (3 broadcasts)
        for t = (ky, kx):                                          (9 loads)
            x = xcl[b, s*oy + ky, s*ox + kx, c0 : c0 + lanes]
            sum[q][t] += a_q * x for q = 0, 1, 2                   (27 FMAs)

A K that is not a multiple of 3 ends with a tile whose missing channels repeat its last one
(computed, not stored).

grad_y is read where it lies (its NCHW rows, one scalar per output), and only real outputs
are visited. The sums are added to ``gw9[k, t, c]`` once per chunk; the tiles run in
another order than im2col's GEMM, so results agree to rounding (the tests compare against
`kernels/reference.py`).

float32 only (the vectors of `kernels/simd.py`); ``NUMBA_DISABLE_JIT=1`` runs the same loops
in plain Python, the vectors as 8- or 16-value NumPy arrays.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from minitorch_compress.kernels.simd import (
    LANES,
    LANES16,
    vbroadcast_like,
    vfma,
    vload_like,
    vstore,
    vzero,
    vzero16,
)

# Bytes of one chunk's channels-last copy: small enough for L2 (1-2 MB per core), which
# every tile of the chunk reads again.
_CHUNK_BYTES = 512 * 1024


@njit(cache=True, nogil=True)
def _pack_channels_last(x, n0, count, padding, xcl):
    """xcl[b, padding + iy, padding + ix, c] = x[n0 + b, c, iy, ix] for the `count` images
    b of the chunk; the border and the extra channels keep their zeros.

    x: (N, C, H, W); xcl: (images, H + 2*padding, W + 2*padding, >= C)."""
    _, c_in, h, w = x.shape
    for b in range(count):
        img = x[n0 + b]
        for iy in range(h):
            for ix in range(w):
                dst = xcl[b, padding + iy, padding + ix]  # written in order, read strided
                for c in range(c_in):
                    dst[c] = img[c, iy, ix]


@njit(cache=True, nogil=True, inline="always")
def _tap3(zero, xflat, i, a, b, c, u, v, w):
    """One tap of three output channels: the input vector at xflat[i] times grad_y's
    broadcasts a, b, c, added into the tap's sums u, v, w (returned)."""
    x = vload_like(zero, xflat, i)
    return vfma(a, x, u), vfma(b, x, v), vfma(c, x, w)


@njit(cache=True, nogil=True, inline="always")
def _add_taps(out, c0, s0, s1, s2, s3, s4, s5, s6, s7, s8, buf):
    """out[t, c0 : c0 + lanes] += tap t's sum vector, t = 0..8 (buf: scratch of its width)."""
    lanes = buf.size
    for t, s in enumerate((s0, s1, s2, s3, s4, s5, s6, s7, s8)):
        vstore(buf, 0, s)
        dst = out[t]
        for j in range(lanes):
            dst[c0 + j] += buf[j]


@njit(cache=True, nogil=True)
def _grad_weight_tile(xflat, gy, n0, count, k0, k1, k2, c0, hp, wp, cpad, stride, zero,
                      gw9, buf):
    """gw9[k, t, c0 + j] += sum_{b,oy,ox} gy[n0 + b, k, oy, ox] * xcl[b, stride*oy + t//3,
    stride*ox + t%3, c0 + j] for k = k0, k1, k2 (a repeated one is stored once: the end of
    a K that is not a multiple of 3), the 9 taps t and the lanes j of one vector of input
    channels.

    xflat: the chunk's xcl (images, Hp, Wp, cpad) flat; gy: (N, K, Ho, Wo); zero: the zero
    vector of the width to compute in (8 or 16 lanes); gw9: (K, 9, cpad); buf: (lanes,)."""
    ho, wo = gy.shape[2], gy.shape[3]
    u0 = u1 = u2 = u3 = u4 = u5 = u6 = u7 = u8 = zero  # channel k0, taps 0..8
    v0 = v1 = v2 = v3 = v4 = v5 = v6 = v7 = v8 = zero  # channel k1
    w0 = w1 = w2 = w3 = w4 = w5 = w6 = w7 = w8 = zero  # channel k2
    pixel, row = cpad, wp * cpad  # flat steps of one position, one padded row
    for b in range(count):
        for oy in range(ho):
            f, g, h = gy[n0 + b, k0, oy], gy[n0 + b, k1, oy], gy[n0 + b, k2, oy]
            start = (b * hp + stride * oy) * row + c0  # tap 0 of output (oy, 0)
            for ox in range(wo):
                a, e, q = (vbroadcast_like(zero, f[ox]), vbroadcast_like(zero, g[ox]),
                           vbroadcast_like(zero, h[ox]))
                i = start + stride * ox * pixel
                u0, v0, w0 = _tap3(zero, xflat, i, a, e, q, u0, v0, w0)
                u1, v1, w1 = _tap3(zero, xflat, i + pixel, a, e, q, u1, v1, w1)
                u2, v2, w2 = _tap3(zero, xflat, i + 2 * pixel, a, e, q, u2, v2, w2)
                i += row
                u3, v3, w3 = _tap3(zero, xflat, i, a, e, q, u3, v3, w3)
                u4, v4, w4 = _tap3(zero, xflat, i + pixel, a, e, q, u4, v4, w4)
                u5, v5, w5 = _tap3(zero, xflat, i + 2 * pixel, a, e, q, u5, v5, w5)
                i += row
                u6, v6, w6 = _tap3(zero, xflat, i, a, e, q, u6, v6, w6)
                u7, v7, w7 = _tap3(zero, xflat, i + pixel, a, e, q, u7, v7, w7)
                u8, v8, w8 = _tap3(zero, xflat, i + 2 * pixel, a, e, q, u8, v8, w8)
    _add_taps(gw9[k0], c0, u0, u1, u2, u3, u4, u5, u6, u7, u8, buf)
    if k1 != k0:
        _add_taps(gw9[k1], c0, v0, v1, v2, v3, v4, v5, v6, v7, v8, buf)
    if k2 != k1:
        _add_taps(gw9[k2], c0, w0, w1, w2, w3, w4, w5, w6, w7, w8, buf)


@njit(cache=True, nogil=True)
def _direct3x3_grad_weight(x, gy, padding, stride, xcl, gw9, buf):
    """gw9 (K, 9, cpad) = the weight gradient of a 3x3 conv at `stride`, chunk by chunk.

    x: (N, C, H, W) float32; gy: (N, K, Ho, Wo) float32; xcl: (images, Hp, Wp, cpad), zero
    from its allocation, cpad a multiple of the lanes; gw9 zeroed on entry; buf: (lanes,)
    float32 scratch, lanes = 8 or 16 the vectors' width."""
    n_img = x.shape[0]
    k_out = gy.shape[1]
    images, hp, wp, cpad = xcl.shape
    lanes = buf.size
    xflat = xcl.reshape(-1)
    for n0 in range(0, n_img, images):
        # (a shorter last chunk leaves the previous chunk's last images in xcl: unread)
        count = min(images, n_img - n0)
        _pack_channels_last(x, n0, count, padding, xcl)
        for k0 in range(0, k_out, 3):
            k1, k2 = min(k0 + 1, k_out - 1), min(k0 + 2, k_out - 1)
            for c0 in range(0, cpad, lanes):
                # the width comes from the zero vector the tile is given (`simd.vload_like`)
                if lanes == LANES16:
                    _grad_weight_tile(xflat, gy, n0, count, k0, k1, k2, c0, hp, wp, cpad,
                                      stride, vzero16(), gw9, buf)
                else:
                    _grad_weight_tile(xflat, gy, n0, count, k0, k1, k2, c0, hp, wp, cpad,
                                      stride, vzero(), gw9, buf)


def direct3x3_grad_weight_serial(grad_y: np.ndarray, x: np.ndarray, padding: int,
                                 lanes: int, stride: int = 1) -> np.ndarray:
    """Weight gradient of a 3x3 convolution on the calling thread, no im2col.

    Args:
        grad_y: (N, K, Ho, Wo) float32, C-contiguous.
        x: (N, C, H, W) float32, C-contiguous; Ho = (H + 2*padding - 3) // stride + 1 (same
            for W).
        padding: the forward's padding.
        lanes: input channels a vector, 8 or 16 (`dispatch.grad_weight_lanes`); C is
            rounded up to a multiple of it with zero channels.
        stride: the forward's stride, 1 or 2.

    Returns:
        grad_w, (K, C, 3, 3) float32.

    Raises:
        ValueError: a dtype, width or stride this kernel does not take.
    """
    if (x.dtype != np.float32 or grad_y.dtype != np.float32 or lanes not in (LANES, LANES16)
            or stride not in (1, 2)):
        raise ValueError(f"direct3x3_grad_weight: needs float32, 8 or 16 lanes and stride 1 "
                         f"or 2; got {x.dtype}/{grad_y.dtype}, {lanes} lanes, stride {stride}")
    n, c, h, wd = x.shape
    k = grad_y.shape[1]
    hp, wp = h + 2 * padding, wd + 2 * padding
    cpad = -(-c // lanes) * lanes
    images = max(1, min(n, _CHUNK_BYTES // (hp * wp * cpad * 4)))
    xcl = np.zeros((images, hp, wp, cpad), dtype=np.float32)
    gw9 = np.zeros((k, 9, cpad), dtype=np.float32)
    _direct3x3_grad_weight(x, grad_y, padding, stride, xcl, gw9, np.empty(lanes, np.float32))
    return np.ascontiguousarray(gw9[:, :, :c].transpose(0, 2, 1)).reshape(k, c, 3, 3)
