"""Convolution kernels: the entry points the conv op calls, and im2col + BLAS GEMM.

Which kernel computes a conv is decided in one place, `kernels/dispatch.py` (per op and
direction, with the shapes and the reasons); this module follows it. The register-tiled 3x3
forward is in `kernels/direct_conv_tiled.py`, the direct 3x3 grad-weight in
`kernels/direct_conv.py`; the im2col + GEMM kernels are here.

Layouts: activations NCHW, weights (K, C, kh, kw), ``w2d = w.reshape(K, C*kh*kw)``. The
GEMM kernels walk the batch in chunks of `nc` images:

* forward:      ``cols = im2col(x[chunk])``              (C*kh*kw, nc*Ho*Wo)
                ``out  = w2d @ cols``                     (K, nc*Ho*Wo)
                ``y[chunk] = out`` re-laid out as        (nc, K, Ho, Wo)
* grad-weight:  ``grad_w.T += cols @ gy2d.T`` with gy2d = grad_y[chunk] laid out as
                (K, nc*Ho*Wo)
* grad-input:   stride 1: a forward convolution of grad_y with the spatially flipped,
                channel-transposed weights and padding ``kh - 1 - padding``. Otherwise:
                ``dcols = w2d.T @ gy2d`` and a col2im scatter-add into grad_x[chunk].
* inference:    `conv2d_affine_forward` is the forward with an epilogue: each output row
                gets ``relu?(y*a + b (+ residual))`` (eval batch norm, shortcut add, ReLU;
                `rows.affine_row`) right after the kernel writes it.

Why chunks: a GEMM is only fast while its `cols` operand stays in cache (see
`_CHUNK_BYTES`). Why the flipped-weight grad-input: ``w2d.T @ gy2d`` contracts over only K
(16 in stage 1) and writes a 9x larger dcols that col2im must read back, whereas the
flipped forward contracts over K*kh*kw like the forward and gathers instead of
scatter-adding. Why numba for the re-layouts and BLAS (through numpy) for the products: a
GEMM written in numba reaches a fraction of OpenBLAS's speed, while the gathers and
scatters around it are simple loops that numba compiles to tight SIMD code. Each kernel is
serial: the cores are used by giving each part of the batch to its own thread
(`kernels/parallel.py`).

The numba kernels are plain Python loops over arrays, so ``NUMBA_DISABLE_JIT=1`` runs them
as ordinary (slow) Python you can step through in a debugger. `kernels/reference.py` holds
the slow NumPy twins the tests compare against.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from numba import njit

from minitorch_compress.kernels import direct_conv, direct_conv_tiled, dispatch
from minitorch_compress.kernels.common import Epilogue, epilogue_args, pad_chunk
from minitorch_compress.kernels.parallel import run_parallel, split_range
from minitorch_compress.kernels.rows import affine_row
from minitorch_compress.kernels.rules import conv2d_output_size, result_float_dtype

# Bytes of one chunk's `cols` buffer. A few MB keeps it in cache (1 MB L2 per core, 32 MB
# shared L3) between the im2col that writes it and the GEMM that reads it: on the 2-core
# AVX-512 box a (16, 144) @ (144, M) GEMM ran at ~100 GFLOP/s for M = 16 images * 1024
# pixels (cols ~9 MB), ~44 GFLOP/s for a whole batch of 256 (cols ~150 MB). Measured on
# ResNet-20's shapes: 16 MB and more clearly slower; on one core 1-3 MB beat 6 MB by 5-10 %,
# while two-thread GEMMs preferred ~5 MB by about as much. 3 MB splits the difference.
_CHUNK_BYTES = 3 * 1024 * 1024


# Data parallelism (see `kernels/parallel.py`): the batch is cut into one part per core and
# each part runs the serial kernels below on its own thread. Parts smaller than
# `_MIN_IMAGES_PER_PART` are not worth a thread hand-off.
_MIN_IMAGES_PER_PART = 2


def _batch_parts(n: int) -> list[tuple[int, int]]:
    """[(start, stop)] ranges of images, one per worker (a single range for small batches)."""
    return split_range(n, _MIN_IMAGES_PER_PART)


def _run_parts(tasks: Sequence[tuple[Callable[..., Any], tuple[Any, ...]]]) -> list[Any]:
    """Run the per-part tasks in parallel, BLAS held to one thread; results in order."""
    return run_parallel(tasks, blas_single_thread=True)


# ----------------------------------------------------------------------------- helpers
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


def _images_per_chunk(n: int, cols_bytes_per_image: int, chunk_bytes: int) -> int:
    """How many images fit in a `chunk_bytes` cols buffer (at least 1, at most n)."""
    return max(1, min(n, chunk_bytes // max(1, cols_bytes_per_image)))


class _ChunkBuffers:
    """Scratch arrays for one call, allocated once and reused by every chunk of images.

    Each buffer is flat and handed out as a C-contiguous view of the current chunk's size,
    so the shorter last chunk needs no copy either.
    """

    def __init__(self, n, c, h, w, k, kh, kw, ho, wo, padding, dtype):
        self.c, self.h, self.w, self.k, self.kh, self.kw = c, h, w, k, kh, kw
        self.ho, self.wo, self.padding = ho, wo, padding
        self.hp, self.wp = h + 2 * padding, w + 2 * padding
        self.rows = c * kh * kw
        self.nc = _images_per_chunk(n, self.rows * ho * wo * dtype.itemsize, _CHUNK_BYTES)
        self._cols = np.empty(self.rows * self.nc * ho * wo, dtype=dtype)
        self._kmajor = np.empty(k * self.nc * ho * wo, dtype=dtype)
        self._dtype = dtype
        self._padder = _Padder(self.nc, c, h, w, padding, dtype)
        self._planes = None  # allocated on first use: not every call needs them


    def planes(self, nc):
        """(nc, C, Hp, Wp) view: col2im's scratch planes (zeroed by col2im itself)."""
        if self._planes is None:
            self._planes = np.empty(self.nc * self.c * self.hp * self.wp, dtype=self._dtype)
        return self._planes[: nc * self.c * self.hp * self.wp].reshape(nc, self.c, self.hp, self.wp)

    def cols(self, nc):
        """(C*kh*kw, nc, Ho, Wo) view: im2col output / GEMM operand / dcols."""
        return self._cols[: self.rows * nc * self.ho * self.wo].reshape(
            self.rows, nc, self.ho, self.wo
        )

    def kmajor(self, nc):
        """(K, nc, Ho*Wo) view: forward GEMM result, or grad_y laid out for the GEMMs."""
        return self._kmajor[: self.k * nc * self.ho * self.wo].reshape(
            self.k, nc, self.ho * self.wo
        )

    def im2col(self, x, n0, n1, stride):
        """cols of images x[n0:n1] (padding them first if needed)."""
        xp = self._padder.chunk(x, n0, n1)
        cols = self.cols(n1 - n0)
        _im2col(xp, self.kh, self.kw, stride, cols)
        return cols


# ---------------------------------------------------------------------- numba kernels
# Indexing note (for speed): numba wraps negative indices around like Python, so an inner
# loop index such as ``ox + kx - padding`` (which *could* be negative) costs a check per
# element and blocks SIMD code. The kernels therefore take 1-D row views (``src = a[..., k:]``)
# and index them with the bare loop counter. Zero padding is materialised once per chunk in
# a padded copy of the input, so the inner loops have no bounds tests either.


@njit(cache=True, nogil=True)
def _im2col(xp, kh, kw, stride, cols):
    """cols[(c, ky, kx), i, oy, ox] = xp[i, c, oy*stride + ky, ox*stride + kx].

    xp: (nc, C, Hp, Wp), the chunk with its padding; cols: (C*kh*kw, nc, Ho, Wo), which is
    the (C*kh*kw, nc*Ho*Wo) GEMM operand seen as 4-D."""
    nc, c_in, _, _ = xp.shape
    _, _, ho, wo = cols.shape
    # one (image, channel) plane at a time, read kh*kw times while it sits in L1 cache
    # (measured 1.5-3x faster than walking the rows of cols in order)
    for i in range(nc):
        for c in range(c_in):
            for ky in range(kh):
                for kx in range(kw):
                    r = (c * kh + ky) * kw + kx
                    for oy in range(ho):
                        dst = cols[r, i, oy]
                        src = xp[i, c, oy * stride + ky, kx:]
                        if stride == 1:  # the common case: a contiguous copy
                            for ox in range(wo):
                                dst[ox] = src[ox]
                        else:
                            for ox in range(wo):
                                dst[ox] = src[ox * stride]


@njit(cache=True, nogil=True)
def _col2im(dcols, n0, kh, kw, stride, padding, gxp, gx):
    """gx[n0 + i, c] = the interior of the padded plane that collects, for every kernel tap
    (ky, kx), dcols[(c, ky, kx), i, oy, ox] at xp position (oy*stride + ky, ox*stride + kx).

    dcols: (C*kh*kw, nc, Ho, Wo); gxp: (nc, C, Hp, Wp) scratch; gx: (N, C, H, W)."""
    _, nc, ho, wo = dcols.shape
    _, c_in, h, w = gx.shape
    # one (image, channel) plane at a time: accumulate in the small padded scratch plane
    # (in L1 cache), then copy its interior out
    for i in range(nc):
        for c in range(c_in):
            plane = gxp[i, c]
            for py in range(plane.shape[0]):
                row = plane[py]
                for px in range(plane.shape[1]):
                    row[px] = 0.0
            for ky in range(kh):
                for kx in range(kw):
                    r = (c * kh + ky) * kw + kx
                    for oy in range(ho):
                        src = dcols[r, i, oy]
                        dst = plane[oy * stride + ky, kx:]
                        if stride == 1:
                            for ox in range(wo):
                                dst[ox] += src[ox]
                        else:
                            for ox in range(wo):
                                dst[ox * stride] += src[ox]
            for iy in range(h):
                src = plane[padding + iy, padding:]
                dst = gx[n0 + i, c, iy]
                for ix in range(w):
                    dst[ix] = src[ix]


@njit(cache=True, nogil=True)
def _kmajor_to_nchw(buf, n0, y, epilogue, coef, relu, res, add_res):
    """y[n0 + i, k, p] = buf[k, i, p]: GEMM result (K, nc, P) -> NCHW rows of y (N, K, P),
    P = Ho*Wo; then the epilogue if asked (arguments of `rows.affine_row`, res: (N, K, P))."""
    k_out, nc, p_len = buf.shape
    for i in range(nc):
        for k in range(k_out):
            src = buf[k, i]
            dst = y[n0 + i, k]
            for p in range(p_len):
                dst[p] = src[p]
            if epilogue:
                res_row = res[n0 + i, k] if add_res else dst
                affine_row(dst, dst, coef[k, 0], coef[k, 1], relu, res_row, add_res)


@njit(cache=True, nogil=True)
def _nchw_to_kmajor(g, n0, buf):
    """buf[k, i, p] = g[n0 + i, k, p], the inverse of `_kmajor_to_nchw`.
    g: (N, K, P); buf: (K, nc, P)."""
    k_out, nc, p_len = buf.shape
    for i in range(nc):
        for k in range(k_out):
            src = g[n0 + i, k]
            dst = buf[k, i]
            for p in range(p_len):
                dst[p] = src[p]


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
    _check_shapes(np.shape(x), np.shape(w), stride, padding)
    dtype = result_float_dtype(x, w)
    return _forward(_as_float(x, dtype), _as_float(w, dtype), stride, padding)


def conv2d_affine_forward(
    x: np.ndarray,
    w: np.ndarray,
    stride: int,
    padding: int,
    coef: np.ndarray,
    relu: bool = False,
    residual: np.ndarray | None = None,
) -> np.ndarray:
    """Inference fusion: ``y = relu?(conv2d(x, w) * a + b (+ residual))``, per channel k
    ``(a, b) = coef[k]``, in one pass over the output.

    This is conv -> eval-mode batch norm (``a = gamma/sqrt(running_var + eps)``,
    ``b = beta - running_mean*a``, see `batchnorm.eval_coefficients`) -> residual add ->
    ReLU, applied to each output row right after the conv kernel writes it, instead of three more
    sweeps over the whole activation. Bit for bit equal to `conv2d_forward` followed by
    `batchnorm_eval_forward` and `add_relu_forward` (the same float operations in the same
    order); there is no backward: it is for inference only.

    Args:
        x: input, shape (N, C, H, W).
        w: weights, shape (K, C, kh, kw).
        stride, padding: as in `conv2d_forward`.
        coef: (K, 2) per-channel scale and shift, cast to the result dtype.
        relu: apply ``max(., 0)`` last.
        residual: optional (N, K, Ho, Wo) added after the affine step.

    Returns:
        y, shape (N, K, Ho, Wo); float64 if x or w is float64, else float32.

    Raises:
        ValueError: on bad conv shapes, or a coef/residual of the wrong shape.
    """
    stride, padding = _check_hyper(stride, padding)
    ho, wo = _check_shapes(np.shape(x), np.shape(w), stride, padding)
    n, k = np.shape(x)[0], np.shape(w)[0]
    dtype = result_float_dtype(x, w)
    if np.shape(coef) != (k, 2):
        raise ValueError(f"conv2d_affine_forward: coef must have shape ({k}, 2), "
                         f"got {np.shape(coef)}")
    if residual is not None and np.shape(residual) != (n, k, ho, wo):
        raise ValueError(f"conv2d_affine_forward: residual must have shape {(n, k, ho, wo)}, "
                         f"got {np.shape(residual)}")
    epilogue = Epilogue(_as_float(coef, dtype), bool(relu),
                         None if residual is None else _as_float(residual, dtype))
    return _forward(_as_float(x, dtype), _as_float(w, dtype), stride, padding,
                    epilogue=epilogue)


def _forward(x: np.ndarray, w: np.ndarray, stride: int, padding: int,
             out: np.ndarray | None = None, epilogue: Epilogue | None = None) -> np.ndarray:
    """`conv2d_forward` (and `conv2d_affine_forward`, with an epilogue) on validated,
    C-contiguous arrays of one float dtype.

    The batch is split between the worker threads (see `_batch_parts`); each half runs the
    serial kernels into its own rows of the output.
    """
    n, _, h, wd = x.shape
    k, _, kh, kw = w.shape
    if out is None:
        out = np.empty((n, k, *conv2d_output_size(h, wd, kh, kw, stride, padding)), x.dtype)
    _run_parts([(_forward_serial, (x[a:b], w, stride, padding, out[a:b],
                                   None if epilogue is None else epilogue.part(a, b)))
                for a, b in _batch_parts(n)])
    return out


def _forward_serial(x: np.ndarray, w: np.ndarray, stride: int, padding: int,
                    out: np.ndarray, epilogue: Epilogue | None = None) -> None:
    """Forward of one part of the batch on the calling thread, into `out`, by the kernel
    `dispatch.forward_kernel` names."""
    _, _, kh, kw = w.shape
    if dispatch.forward_kernel(kh, kw, stride, x.dtype) == dispatch.TILED_3X3:
        direct_conv_tiled.tiled3x3_forward_serial(x, w, padding, out,
                                                  epilogue_args(epilogue, 4, x.dtype),
                                                  vectors=dispatch.TILE_VECTORS,
                                                  stride=stride,
                                                  lanes=dispatch.forward_lanes(
                                                      *out.shape[2:], stride))
    else:
        _forward_cols(x, w, stride, padding, out, epilogue)


def _forward_cols(x: np.ndarray, w: np.ndarray, stride: int, padding: int,
                  y: np.ndarray, epilogue: Epilogue | None = None) -> None:
    """`dispatch.IM2COL_GEMM`: per chunk of images a full im2col, one GEMM, a re-layout
    into y (and the epilogue, if any, on each row it writes)."""
    n, c, h, wd = x.shape
    k, _, kh, kw = w.shape
    ho, wo = conv2d_output_size(h, wd, kh, kw, stride, padding)
    rows, p_len = c * kh * kw, ho * wo
    w2d = w.reshape(k, rows)
    y3 = y.reshape(n, k, p_len)
    epi = epilogue_args(epilogue, 3, x.dtype)
    bufs = _ChunkBuffers(n, c, h, wd, k, kh, kw, ho, wo, padding, x.dtype)
    for n0 in range(0, n, bufs.nc):
        n1 = min(n, n0 + bufs.nc)
        cols = bufs.im2col(x, n0, n1, stride)
        out = bufs.kmajor(n1 - n0)
        np.dot(w2d, cols.reshape(rows, -1), out=out.reshape(k, -1))
        _kmajor_to_nchw(out, n0, y3, *epi)


class _Padder:
    """Zero-padded copies of consecutive chunks of images, in one reused buffer.

    The buffer is allocated with zeros and `common.pad_chunk` writes only the interior, so the
    border stays zero for every chunk; with ``padding == 0`` a chunk is a view of the input.
    """

    def __init__(self, nc: int, c: int, h: int, w: int, padding: int, dtype: np.dtype) -> None:
        self.padding, self.shape = padding, (c, h + 2 * padding, w + 2 * padding)
        self._flat = None  # allocated on first use
        self._size = nc * c * self.shape[1] * self.shape[2]
        self._dtype = dtype

    def chunk(self, x: np.ndarray, n0: int, n1: int) -> np.ndarray:
        """x[n0:n1] zero-padded: (n1 - n0, C, H + 2p, W + 2p)."""
        if self.padding == 0:
            return x[n0:n1]  # a contiguous view: nothing to copy
        if self._flat is None:
            self._flat = np.zeros(self._size, dtype=self._dtype)
        c, hp, wp = self.shape
        xp = self._flat[: (n1 - n0) * c * hp * wp].reshape(n1 - n0, c, hp, wp)
        pad_chunk(x, n0, self.padding, xp)
        return xp


def _backward(grad_y, x, x_shape, w, w_shape, stride, padding, need_gx, need_gw):
    """Shared body of the three gradient entry points (x is None when only grad_x is
    wanted, w is None when only grad_w is wanted).

    The batch is split between the worker threads (see `_batch_parts`): each part writes its
    own rows of grad_x and returns its own grad_w, summed here in a fixed order.
    """
    stride, padding = _check_hyper(stride, padding)
    ho, wo = _check_shapes(x_shape, w_shape, stride, padding)
    n, c, h, wd = x_shape
    k = w_shape[0]
    _check_grad_y(np.shape(grad_y), n, k, ho, wo)
    dtype = result_float_dtype(*(a for a in (grad_y, x, w) if a is not None))
    grad_y = _as_float(grad_y, dtype)
    x = _as_float(x, dtype) if need_gw else None
    w = _as_float(w, dtype) if need_gx else None
    gx = np.empty((n, c, h, wd), dtype=dtype) if need_gx else None
    parts = _batch_parts(n)
    partial_gw = _run_parts([
        (_backward_serial, (grad_y[a:b], None if x is None else x[a:b], w, w_shape, stride,
                            padding, None if gx is None else gx[a:b], need_gw))
        for a, b in parts
    ])
    if not need_gw:
        return gx, None
    gw_t = partial_gw[0]
    for more in partial_gw[1:]:
        gw_t += more
    return gx, np.ascontiguousarray(gw_t.T).reshape(w_shape)


def _backward_serial(grad_y, x, w, w_shape, stride, padding, gx, need_gw):
    """Gradients of one part of the batch on the calling thread: writes grad_x into `gx`
    (when not None) and returns grad_w transposed, (C*kh*kw, K), or None."""
    n, k, ho, wo = grad_y.shape
    _, c, kh, kw = w_shape
    h, wd = (gx.shape[2:] if gx is not None else x.shape[2:])
    dtype = grad_y.dtype
    rows = c * kh * kw
    gw_t = w2d = None
    scatter_gx = False
    if gx is not None:
        if dispatch.grad_input_kernel(kh, kw, stride, padding, dtype) != dispatch.GEMM_COL2IM:
            # grad_x[n,c,i,j] = sum_{k,ky,kx} grad_y[n,k,i+p-ky,j+p-kx] * w[k,c,ky,kx]: a
            # stride-1 convolution of grad_y (padded by kh-1-p) with w flipped in space and
            # with its K and C axes swapped; it yields exactly H x W outputs
            w_flip = np.ascontiguousarray(w.transpose(1, 0, 2, 3)[:, :, ::-1, ::-1])
            _forward_serial(grad_y, w_flip, 1, kh - 1 - padding, gx)
        else:
            w2d = w.reshape(k, rows)
            scatter_gx = True
    if (need_gw and dispatch.grad_weight_kernel(kh, kw, stride, dtype)
            == dispatch.DIRECT_GRAD_WEIGHT):
        gw = direct_conv.direct3x3_grad_weight_serial(grad_y, x, padding,
                                                      lanes=dispatch.grad_weight_lanes(c),
                                                      stride=stride)
        gw_t = np.ascontiguousarray(gw.reshape(k, rows).T)
        need_gw = False  # done: the chunk loop below has at most grad_x to scatter
    if need_gw:
        gw_t = np.zeros((rows, k), dtype=dtype)  # grad_w transposed, see below
        gw_t_chunk = np.empty((rows, k), dtype=dtype)
    if not (need_gw or scatter_gx):
        return gw_t
    gy3 = grad_y.reshape(n, k, ho * wo)
    bufs = _ChunkBuffers(n, c, h, wd, k, kh, kw, ho, wo, padding, dtype)
    for n0 in range(0, n, bufs.nc):
        n1 = min(n, n0 + bufs.nc)
        # one re-layout of grad_y per chunk, shared by both GEMMs
        gy2d = bufs.kmajor(n1 - n0)
        _nchw_to_kmajor(gy3, n0, gy2d)
        gy2d = gy2d.reshape(k, -1)
        if need_gw:
            cols = bufs.im2col(x, n0, n1, stride).reshape(rows, -1)
            # (C*kh*kw, M) @ (M, K) rather than (K, M) @ (M, C*kh*kw): same product, but
            # OpenBLAS runs this orientation 1.2-1.5x faster for these skinny shapes
            np.dot(cols, gy2d.T, out=gw_t_chunk)
            gw_t += gw_t_chunk
        if scatter_gx:
            dcols = bufs.cols(n1 - n0)  # free again once grad_w has used it
            np.dot(w2d.T, gy2d, out=dcols.reshape(rows, -1))
            _col2im(dcols, n0, kh, kw, stride, padding, bufs.planes(n1 - n0), gx)
    return gw_t


def conv2d_backward(
    grad_y: np.ndarray,
    x: np.ndarray,
    w: np.ndarray,
    stride: int,
    padding: int,
    need_input_grad: bool = True,
    need_weight_grad: bool = True,
) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Both gradients of `conv2d_forward`, sharing the work they have in common.

    Per chunk of images, grad_y is re-laid out once as (K, nc*Ho*Wo) and shared by the two
    GEMMs; x is im2col'ed only if the weight gradient is wanted. For stride 1, grad_x is
    instead one forward convolution of grad_y with flipped weights (see the module notes).

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
