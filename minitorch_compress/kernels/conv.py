"""Fast 2-D convolution kernels: im2col in numba + one BLAS GEMM per chunk of images.

Layouts: activations NCHW, weights (K, C, kh, kw). All three kernels walk the batch in
chunks of a few images:

* forward:      ``cols = im2col(x[chunk])``           (C*kh*kw, nc*Ho*Wo)
                ``buf  = w2d @ cols``                  (K, nc*Ho*Wo), w2d = w.reshape(K, -1)
                ``y[chunk] = buf`` re-laid out as     (nc, K, Ho, Wo)
* grad-weight:  ``grad_w += gy2d @ cols.T`` where gy2d is grad_y[chunk] laid out as
                (K, nc*Ho*Wo)
* grad-input:   ``dcols = w2d.T @ gy2d``, then col2im scatter-adds dcols into grad_x[chunk]

Why chunks: the GEMM is only fast while its `cols` operand stays in cache. Measured on the
2-core AVX-512 box, (16, 144) @ (144, M) runs at ~100 GFLOP/s for M = 16 images * 1024
pixels (cols ~9 MB) but ~44 GFLOP/s for the whole batch of 256 (cols ~150 MB).

Why numba for the re-layouts and BLAS (through numpy) for the products: a GEMM written in
numba reaches a fraction of OpenBLAS's speed, while the gathers/scatters around it are
simple loops that numba compiles to tight code. The numba kernels are plain Python loops
over arrays, so ``NUMBA_DISABLE_JIT=1`` runs them as ordinary (slow) Python you can step
through in a debugger. `kernels/reference.py` holds the slow NumPy twins the tests compare
against.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

# Bytes of one chunk's `cols` buffer. A few MB keeps it in the 32 MB L3 cache (shared by the
# two cores) across the im2col that writes it and the GEMM that reads it.
_CHUNK_BYTES = 8 * 1024 * 1024


# ----------------------------------------------------------------------------- helpers
def conv2d_output_size(
    h: int, w: int, kh: int, kw: int, stride: int, padding: int
) -> tuple[int, int]:
    """Spatial output size ``((H + 2p - kh) // s + 1, (W + 2p - kw) // s + 1)``."""
    return (h + 2 * padding - kh) // stride + 1, (w + 2 * padding - kw) // stride + 1


def result_float_dtype(*arrays: np.ndarray) -> np.dtype:
    """float64 if any input is float64 (grad checks), otherwise float32 (training)."""
    if any(np.asarray(a).dtype == np.float64 for a in arrays):
        return np.dtype(np.float64)
    return np.dtype(np.float32)


def _as_float(a: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """C-contiguous copy-if-needed of `a` in `dtype` (the numba kernels index raw memory)."""
    return np.ascontiguousarray(a, dtype=dtype)


def _check_hyper(stride: int, padding: int) -> tuple[int, int]:
    stride, padding = int(stride), int(padding)
    if stride < 1:
        raise ValueError(f"conv2d: stride must be >= 1, got {stride}")
    if padding < 0:
        raise ValueError(f"conv2d: padding must be >= 0, got {padding}")
    return stride, padding


def _check_shapes(
    x_shape: tuple[int, ...], w_shape: tuple[int, ...], stride: int, padding: int
) -> tuple[int, int]:
    """Validate an (x, w) pair of shapes and return the output size (Ho, Wo)."""
    if len(x_shape) != 4:
        raise ValueError(f"conv2d: input must be 4-D (N, C, H, W), got shape {tuple(x_shape)}")
    if len(w_shape) != 4:
        raise ValueError(f"conv2d: weight must be 4-D (K, C, kh, kw), got shape {tuple(w_shape)}")
    if x_shape[1] != w_shape[1]:
        raise ValueError(
            f"conv2d: input has {x_shape[1]} channels but weight expects {w_shape[1]} "
            f"(weight shape {tuple(w_shape)})"
        )
    if w_shape[2] < 1 or w_shape[3] < 1:
        raise ValueError(f"conv2d: kernel size must be >= 1, got weight shape {tuple(w_shape)}")
    ho, wo = conv2d_output_size(x_shape[2], x_shape[3], w_shape[2], w_shape[3], stride, padding)
    if ho < 1 or wo < 1:
        raise ValueError(
            f"conv2d: input of spatial size {tuple(x_shape[2:])} is too small for a "
            f"{w_shape[2]}x{w_shape[3]} kernel with padding {padding} (output would be "
            f"{ho}x{wo})"
        )
    return ho, wo


def _check_grad_y(shape: tuple[int, ...], n: int, k: int, ho: int, wo: int) -> None:
    if tuple(shape) != (n, k, ho, wo):
        raise ValueError(
            f"conv2d: grad_y has shape {tuple(shape)} but the forward output "
            f"has shape {(n, k, ho, wo)}"
        )


def _images_per_chunk(n: int, cols_bytes_per_image: int) -> int:
    """How many images fit in one `_CHUNK_BYTES` cols buffer (at least 1, at most n)."""
    return max(1, min(n, _CHUNK_BYTES // max(1, cols_bytes_per_image)))


# ---------------------------------------------------------------------- numba kernels
@njit(cache=True)
def _valid_range(k, stride, padding, size, out):
    """Output indices o in [lo, hi) whose input index ``o*stride + k - padding`` lies in
    [0, size); outside that range the kernel tap k reads zero padding."""
    # smallest o with o*stride >= padding - k (ceil division), clipped at 0
    lo = max(0, (padding - k + stride - 1) // stride)
    # largest o with o*stride + k - padding <= size - 1, plus one, clipped at `out`
    hi = min(out, (size - 1 + padding - k) // stride + 1)
    return lo, max(lo, hi)


@njit(cache=True, parallel=True)
def _im2col(x, n0, n1, kh, kw, stride, padding, ho, wo, cols):
    """Gather x[n0:n1] into cols[(c, ky, kx), (n - n0, oy, ox)] (zero where the window hits
    the padding). x: (N, C, H, W); cols: (C*kh*kw, (n1-n0)*ho*wo)."""
    _, c_in, h, w = x.shape
    nc = n1 - n0
    rows = c_in * kh * kw
    # one task = one (row, image) pair: each writes its own contiguous ho*wo segment of cols,
    # so tasks never collide and both cores get work even for small C
    for task in prange(rows * nc):
        r = task // nc
        i = task - r * nc
        c = r // (kh * kw)
        ky = (r // kw) % kh
        kx = r % kw
        n = n0 + i
        lo, hi = _valid_range(kx, stride, padding, w, wo)
        for oy in range(ho):
            iy = oy * stride + ky - padding
            base = (i * ho + oy) * wo
            if iy < 0 or iy >= h:
                for ox in range(wo):
                    cols[r, base + ox] = 0.0
                continue
            for ox in range(lo):
                cols[r, base + ox] = 0.0
            for ox in range(lo, hi):
                cols[r, base + ox] = x[n, c, iy, ox * stride + kx - padding]
            for ox in range(hi, wo):
                cols[r, base + ox] = 0.0


@njit(cache=True, parallel=True)
def _col2im(dcols, n0, n1, kh, kw, stride, padding, ho, wo, gx):
    """Scatter-add dcols[(c, ky, kx), (n - n0, oy, ox)] into gx[n0:n1] (overwriting it).
    dcols: (C*kh*kw, (n1-n0)*ho*wo); gx: (N, C, H, W)."""
    _, c_in, h, w = gx.shape
    nc = n1 - n0
    # one task = one (image, channel) plane of gx: all writes to a plane come from the same
    # task, so the parallel loop needs no atomics
    for task in prange(nc * c_in):
        i = task // c_in
        c = task - i * c_in
        n = n0 + i
        for iy in range(h):
            for ix in range(w):
                gx[n, c, iy, ix] = 0.0
        for ky in range(kh):
            for kx in range(kw):
                r = (c * kh + ky) * kw + kx
                lo, hi = _valid_range(kx, stride, padding, w, wo)
                for oy in range(ho):
                    iy = oy * stride + ky - padding
                    if iy < 0 or iy >= h:
                        continue
                    base = (i * ho + oy) * wo
                    for ox in range(lo, hi):
                        gx[n, c, iy, ox * stride + kx - padding] += dcols[r, base + ox]


@njit(cache=True, parallel=True)
def _kmajor_to_nchw(buf, n0, n1, y):
    """y[n0 + i, k, p] = buf[k, i*P + p]: GEMM result (K, nc*P) -> NCHW block (nc, K, P).
    y is viewed as (N, K, P) with P = Ho*Wo."""
    _, k_out, p_len = y.shape
    nc = n1 - n0
    for task in prange(nc * k_out):
        i = task // k_out
        k = task - i * k_out
        for p in range(p_len):
            y[n0 + i, k, p] = buf[k, i * p_len + p]


@njit(cache=True, parallel=True)
def _nchw_to_kmajor(g, n0, n1, buf):
    """buf[k, i*P + p] = g[n0 + i, k, p]: the inverse of `_kmajor_to_nchw`.
    g is viewed as (N, K, P); buf: (K, (n1-n0)*P)."""
    _, k_out, p_len = g.shape
    nc = n1 - n0
    for task in prange(nc * k_out):
        i = task // k_out
        k = task - i * k_out
        for p in range(p_len):
            buf[k, i * p_len + p] = g[n0 + i, k, p]


# ------------------------------------------------------------------------ public API
def conv2d_forward(x: np.ndarray, w: np.ndarray, stride: int = 1, padding: int = 0) -> np.ndarray:
    """2-D cross-correlation (what deep-learning frameworks call convolution), no bias.

    ``y[n,k,i,j] = sum_{c,ky,kx} w[k,c,ky,kx] * xpad[n, c, i*stride+ky, j*stride+kx]``
    where xpad is x with `padding` zeros on every side of H and W.

    Args:
        x: input, shape (N, C, H, W).
        w: weights, shape (K, C, kh, kw).
        stride: step between output pixels (both axes), >= 1.
        padding: zeros added on each side of H and W, >= 0.

    Returns:
        y, shape (N, K, Ho, Wo) with ``Ho = (H + 2*padding - kh) // stride + 1`` (same for
        Wo); float64 if x or w is float64, else float32.

    Raises:
        ValueError: on wrong ranks, a channel mismatch, bad stride/padding, or an input too
            small for the kernel.
    """
    stride, padding = _check_hyper(stride, padding)
    ho, wo = _check_shapes(np.shape(x), np.shape(w), stride, padding)
    dtype = result_float_dtype(x, w)
    x = _as_float(x, dtype)
    w = _as_float(w, dtype)
    n, c, _, _ = x.shape
    k, _, kh, kw = w.shape
    rows, p_len = c * kh * kw, ho * wo
    w2d = w.reshape(k, rows)
    y = np.empty((n, k, ho, wo), dtype=dtype)
    nc = _images_per_chunk(n, rows * p_len * dtype.itemsize)
    # flat buffers, reshaped per chunk, so the shorter last chunk is still C-contiguous
    cols_flat = np.empty(rows * nc * p_len, dtype=dtype)
    buf_flat = np.empty(k * nc * p_len, dtype=dtype)
    y3 = y.reshape(n, k, p_len)
    for n0 in range(0, n, nc):
        n1 = min(n, n0 + nc)
        m = (n1 - n0) * p_len
        cols = cols_flat[: rows * m].reshape(rows, m)
        buf = buf_flat[: k * m].reshape(k, m)
        _im2col(x, n0, n1, kh, kw, stride, padding, ho, wo, cols)
        np.dot(w2d, cols, out=buf)
        _kmajor_to_nchw(buf, n0, n1, y3)
    return y


def _backward(grad_y, x, x_shape, w, w_shape, stride, padding, need_gx, need_gw):
    """Shared body of the three gradient entry points (x is None when only grad_x is
    wanted, w is None when only grad_w is wanted)."""
    stride, padding = _check_hyper(stride, padding)
    ho, wo = _check_shapes(x_shape, w_shape, stride, padding)
    n, c, h, wd = x_shape
    k, _, kh, kw = w_shape
    _check_grad_y(np.shape(grad_y), n, k, ho, wo)
    dtype = result_float_dtype(*(a for a in (grad_y, x, w) if a is not None))
    grad_y = _as_float(grad_y, dtype)
    rows, p_len = c * kh * kw, ho * wo
    nc = _images_per_chunk(n, rows * p_len * dtype.itemsize)
    gy_flat = np.empty(k * nc * p_len, dtype=dtype)
    cols_flat = np.empty(rows * nc * p_len, dtype=dtype)  # cols of x, then reused for dcols
    gy3 = grad_y.reshape(n, k, p_len)
    gx = gw = w2d = None
    if need_gx:
        w2d = _as_float(w, dtype).reshape(k, rows)
        gx = np.empty((n, c, h, wd), dtype=dtype)
    if need_gw:
        x = _as_float(x, dtype)
        gw = np.zeros((k, rows), dtype=dtype)
        gw_chunk = np.empty((k, rows), dtype=dtype)
    for n0 in range(0, n, nc):
        n1 = min(n, n0 + nc)
        m = (n1 - n0) * p_len
        gy2d = gy_flat[: k * m].reshape(k, m)
        cols = cols_flat[: rows * m].reshape(rows, m)
        # one re-layout of grad_y per chunk, shared by both GEMMs
        _nchw_to_kmajor(gy3, n0, n1, gy2d)
        if gw is not None:
            _im2col(x, n0, n1, kh, kw, stride, padding, ho, wo, cols)
            np.dot(gy2d, cols.T, out=gw_chunk)
            gw += gw_chunk
        if gx is not None:
            np.dot(w2d.T, gy2d, out=cols)  # dcols, (C*kh*kw, nc*Ho*Wo)
            _col2im(cols, n0, n1, kh, kw, stride, padding, ho, wo, gx)
    return gx, (gw.reshape(w_shape) if gw is not None else None)


def conv2d_backward(
    grad_y: np.ndarray,
    x: np.ndarray,
    w: np.ndarray,
    stride: int,
    padding: int,
    need_input_grad: bool = True,
    need_weight_grad: bool = True,
) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Both gradients of `conv2d_forward` in one pass over the batch.

    Per chunk of images, grad_y is re-laid out once as (K, nc*Ho*Wo) and shared by the two
    GEMMs; x is im2col'ed only if the weight gradient is wanted.

    Args:
        grad_y: upstream gradient, shape (N, K, Ho, Wo).
        x: forward input, shape (N, C, H, W).
        w: weights, shape (K, C, kh, kw).
        stride: forward stride.
        padding: forward padding.
        need_input_grad: compute grad_x (False for the network's first layer).
        need_weight_grad: compute grad_w (False for frozen weights).

    Returns:
        ``(grad_x, grad_w)``: shapes (N, C, H, W) and (K, C, kh, kw), each None when not
        requested; float64 if any input is float64, else float32.

    Raises:
        ValueError: on inconsistent shapes or bad stride/padding.
    """
    if not (need_input_grad or need_weight_grad):
        return None, None
    return _backward(
        grad_y,
        x if need_weight_grad else None,
        np.shape(x),
        w if need_input_grad else None,
        np.shape(w),
        stride,
        padding,
        need_input_grad,
        need_weight_grad,
    )


def conv2d_grad_input(
    grad_y: np.ndarray,
    w: np.ndarray,
    x_shape: tuple[int, int, int, int],
    stride: int,
    padding: int,
) -> np.ndarray:
    """Gradient of `conv2d_forward` with respect to its input.

    Args:
        grad_y: upstream gradient, shape (N, K, Ho, Wo).
        w: weights, shape (K, C, kh, kw).
        x_shape: (N, C, H, W) of the forward input (H, W cannot be recovered from grad_y
            when stride > 1).
        stride: forward stride.
        padding: forward padding.

    Returns:
        grad_x, shape `x_shape`; float64 if grad_y or w is float64, else float32.

    Raises:
        ValueError: on inconsistent shapes or bad stride/padding.
    """
    x_shape = tuple(int(s) for s in x_shape)
    gx, _ = _backward(grad_y, None, x_shape, w, np.shape(w), stride, padding, True, False)
    return gx


def conv2d_grad_weight(
    grad_y: np.ndarray,
    x: np.ndarray,
    w_shape: tuple[int, int, int, int],
    stride: int,
    padding: int,
) -> np.ndarray:
    """Gradient of `conv2d_forward` with respect to its weights.

    Args:
        grad_y: upstream gradient, shape (N, K, Ho, Wo).
        x: forward input, shape (N, C, H, W).
        w_shape: (K, C, kh, kw).
        stride: forward stride.
        padding: forward padding.

    Returns:
        grad_w, shape `w_shape`; float64 if grad_y or x is float64, else float32.

    Raises:
        ValueError: on inconsistent shapes or bad stride/padding.
    """
    w_shape = tuple(int(s) for s in w_shape)
    _, gw = _backward(grad_y, x, np.shape(x), None, w_shape, stride, padding, False, True)
    return gw
