"""Direct sparse convolution for inference: unstructured sparsity turned into fewer flops.

Design (Park et al., "Faster CNNs with Direct Sparse Convolutions and Guided Pruning", ICLR
2017): every output channel k keeps only its non-zero weights, in CSR order over (input
channel c, kernel row ky, kernel column kx). For one image and one output channel, each
non-zero adds a shifted window of one zero-padded input plane to the whole output plane::

    y[n, k] = sum over the non-zeros j of k:
                  w_j * xpad[n, c_j, ky_j : ky_j + s*Ho : s, kx_j : kx_j + s*Wo : s]

so a weight that is zero costs nothing, no im2col buffer is ever written, and one weight
load serves Ho * Wo multiply-adds on an output tile that stays in L1 (the register/cache
blocking). The layout stays NCHW, so no layer pays for a transpose. Batch norm, the
residual add and ReLU run on the finished tile (the same epilogue as the dense inference
path). Images are shared out between the kernel threads.

For stride 1 the kernel puts the batch inside the tile (`_sparse_conv_batched`, see
`kernels/dispatch.py`): a block of images is padded into the layout (C, Hp, nb, Wp), where
one non-zero's window over all output rows of all nb images is a single contiguous run, and
four non-zeros share each pass over the tile. Per image, the runs on 8x8 planes are only 80
floats long, so loop set-up and index loads would cost as much as the multiply-adds; other
strides run one image at a time (`_sparse_conv_images`).
`kernels/reference.py`'s dense convolution of the same weights is the slow twin the tests
compare with; sums run in another order, so results agree to float rounding, not bit for bit.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numba import njit

from minitorch_compress.kernels import dispatch
from minitorch_compress.kernels.common import pad_chunk
from minitorch_compress.kernels.parallel import run_parallel, split_range
from minitorch_compress.kernels.rules import conv2d_output_size


@dataclass(frozen=True)
class SparseWeights:
    """A conv weight (K, C, kh, kw) in CSR form over each output channel's (c, ky, kx).

    Attributes:
        shape: the dense shape (K, C, kh, kw).
        indptr: (K + 1,) int64, channel k's non-zeros are ``indptr[k]:indptr[k + 1]``.
        channel, row, col: (nnz,) int64, each non-zero's c, ky, kx.
        values: (nnz,) the non-zero weights, in the weight's float dtype.
    """

    shape: tuple[int, int, int, int]
    indptr: np.ndarray
    channel: np.ndarray
    row: np.ndarray
    col: np.ndarray
    values: np.ndarray

    @classmethod
    def from_dense(cls, w: np.ndarray) -> SparseWeights:
        """The non-zeros of `w` (K, C, kh, kw), in C order within each output channel."""
        w = np.ascontiguousarray(w)
        k = w.shape[0]
        flat = w.reshape(k, -1)
        rows, cols = np.nonzero(flat)  # row-major: sorted by k, then by (c, ky, kx)
        c, ky, kx = np.unravel_index(cols, w.shape[1:])
        indptr = np.zeros(k + 1, dtype=np.int64)
        np.cumsum(np.bincount(rows, minlength=k), out=indptr[1:])
        return cls(tuple(w.shape), indptr, c.astype(np.int64), ky.astype(np.int64),
                   kx.astype(np.int64), flat[rows, cols])

    @property
    def sparsity(self) -> float:
        """Fraction of zero weights."""
        return 1.0 - self.values.size / float(np.prod(self.shape))

    def to_dense(self) -> np.ndarray:
        """The dense weight again (for the tests and the reference)."""
        w = np.zeros(self.shape, dtype=self.values.dtype)
        ks = np.repeat(np.arange(self.shape[0]), np.diff(self.indptr))
        w[ks, self.channel, self.row, self.col] = self.values
        return w


@njit(cache=True, nogil=True)
def _sparse_conv_images(xp, xp_flat, channel, row, col, values, indptr, stride, coef, relu,
                        res, add_res, y, acc, n0, n1):
    """Images n0..n1-1: y[n, k] = epilogue(sum_j values[j] * shifted window j of xp[n]).

    xp: the zero-padded input (N, C, Hp, Wp), and xp_flat the same memory flat with at least
    kw - 1 elements after it (the stride-1 runs may read up to kw - 1 past a plane, into
    columns that are discarded); y, res: (N, K, Ho, Wo); acc: (Ho * Wp,) scratch of this
    thread. For each output channel the whole (Ho, Wo) output plane is the tile
    that each non-zero updates, so one weight load serves Ho * Wo multiply-adds.
    """
    _, k_out, ho, wo = y.shape
    _, c_in, hp, wp = xp.shape
    zero = y.dtype.type(0)
    plane_size = hp * wp
    # stride 1 accumulates Ho rows of the padded width Wp; other strides Ho rows of Wo
    row_pitch = wp if stride == 1 else wo
    span = ho * row_pitch
    flat_acc = acc[:span]
    for n in range(n0, n1):
        for k in range(k_out):
            a, b = coef[k, 0], coef[k, 1]
            for i in range(span):
                flat_acc[i] = zero
            for j in range(indptr[k], indptr[k + 1]):
                v = values[j]
                if stride == 1:
                    # unit stride: over padded-width rows the whole window is ONE contiguous
                    # run (`flat_acc` is Ho rows of Wp; the last Wp - Wo columns of each are
                    # discarded), so each non-zero is a single long vector multiply-add
                    start = (n * c_in + channel[j]) * plane_size + row[j] * wp + col[j]
                    src = xp_flat[start:start + span]
                    for i in range(span):
                        flat_acc[i] += v * src[i]
                else:
                    plane = xp[n, channel[j]]
                    for oy in range(ho):
                        src = plane[oy * stride + row[j], col[j]:]  # a row view
                        dst = flat_acc[oy * wo:(oy + 1) * wo]
                        for ox in range(wo):
                            dst[ox] += v * src[ox * stride]
            for oy in range(ho):
                out_row = y[n, k, oy]
                src = flat_acc[oy * row_pitch:oy * row_pitch + wo]
                if add_res:
                    r = res[n, k, oy]
                    for ox in range(wo):
                        t = src[ox] * a + b + r[ox]
                        out_row[ox] = zero if relu and t < zero else t
                else:
                    for ox in range(wo):
                        t = src[ox] * a + b
                        out_row[ox] = zero if relu and t < zero else t


#: floats of the accumulator tile of the batched stride-1 kernel (64 KiB: stays in L1/L2)
BATCHED_TILE_FLOATS = 16384


@njit(cache=True, nogil=True)
def _sparse_conv_batched(x, channel, row, col, values, indptr, padding, coef, relu, res,
                         add_res, y, xb_flat, acc, nb_max, n0, n1):
    """Stride 1, images n0..n1-1 in blocks of up to `nb_max`: the batch inside the tile.

    Each block of nb images is copied, zero-padded, into the layout (C, Hp, nb, Wp): the rows
    of all nb images for one (channel, padded row) lie next to each other. For a non-zero at
    (c, ky, kx), the window of every output row of every image of the block is then ONE
    contiguous run of Ho * nb * Wp floats starting at ((c * Hp + ky) * nb) * Wp + kx (the
    Wp - Wo columns per row that run past the output are discarded, as in the per-image
    kernel). So one weight serves Ho * nb * Wo multiply-adds in a single vector loop, however
    small the plane (stage 3's 8x8 planes gave the per-image kernel runs of only 80), and four
    non-zeros share each pass over the accumulator (register blocking: one load and store of
    the tile per four weights).

    x: (N, C, H, W); y, res: (N, K, Ho, Wo); xb_flat: this thread's layout buffer of at least
    C * Hp * nb_max * Wp + kw floats; acc: (Ho * nb_max * Wp,) scratch.
    """
    n_all, c_in, h, w = x.shape
    _, k_out, ho, wo = y.shape
    hp, wp = h + 2 * padding, w + 2 * padding
    zero = y.dtype.type(0)
    for b0 in range(n0, n1, nb_max):
        nb = min(nb_max, n1 - b0)
        rows = nb * wp  # one padded row of all nb images
        span = ho * rows
        # the block in the (C, Hp, nb, Wp) layout, zero padding included
        for i in range(c_in * hp * rows + wp):
            xb_flat[i] = zero
        for c in range(c_in):
            for r in range(h):
                for m in range(nb):
                    dst = xb_flat[(c * hp + r + padding) * rows + m * wp + padding:]
                    src = x[b0 + m, c, r]
                    for q in range(w):
                        dst[q] = src[q]
        tile = acc[:span]
        for k in range(k_out):
            for i in range(span):
                tile[i] = zero
            j = indptr[k]
            end = indptr[k + 1]
            while j + 4 <= end:
                s0 = xb_flat[(channel[j] * hp + row[j]) * rows + col[j]:][:span]
                s1 = xb_flat[(channel[j + 1] * hp + row[j + 1]) * rows + col[j + 1]:][:span]
                s2 = xb_flat[(channel[j + 2] * hp + row[j + 2]) * rows + col[j + 2]:][:span]
                s3 = xb_flat[(channel[j + 3] * hp + row[j + 3]) * rows + col[j + 3]:][:span]
                v0, v1, v2, v3 = values[j], values[j + 1], values[j + 2], values[j + 3]
                for i in range(span):
                    tile[i] += v0 * s0[i] + v1 * s1[i] + v2 * s2[i] + v3 * s3[i]
                j += 4
            while j < end:
                s0 = xb_flat[(channel[j] * hp + row[j]) * rows + col[j]:][:span]
                v0 = values[j]
                for i in range(span):
                    tile[i] += v0 * s0[i]
                j += 1
            a, bias = coef[k, 0], coef[k, 1]
            for oy in range(ho):
                for m in range(nb):
                    src = tile[oy * rows + m * wp:]
                    out_row = y[b0 + m, k, oy]
                    if add_res:
                        r_row = res[b0 + m, k, oy]
                        for ox in range(wo):
                            t = src[ox] * a + bias + r_row[ox]
                            out_row[ox] = zero if relu and t < zero else t
                    else:
                        for ox in range(wo):
                            t = src[ox] * a + bias
                            out_row[ox] = zero if relu and t < zero else t


def sparse_conv2d_forward(x: np.ndarray, sw: SparseWeights, stride: int = 1, padding: int = 0,
                          coef: np.ndarray | None = None, relu: bool = False,
                          residual: np.ndarray | None = None,
                          batched: bool = True) -> np.ndarray:
    """``relu?(conv2d(x, w) * a + b (+ residual))`` with `w` given by its non-zeros.

    Args:
        x: input (N, C, H, W), float32 or float64.
        sw: the weights (K, C, kh, kw) as `SparseWeights`.
        stride, padding: the conv's.
        coef: (K, 2) per-channel (a, b) (default (1, 0): the plain convolution).
        relu: apply ``max(., 0)`` last.
        residual: optional (N, K, Ho, Wo) added before the ReLU.
        batched: stride 1: `_sparse_conv_batched` (the batch inside the tile, the default:
            about twice as fast as the per-image kernel at every 3x3 shape of ResNet-20,
            results/sparse.json) or, False, the per-image `_sparse_conv_images`. Other
            strides always run the per-image kernel.

    Returns:
        y (N, K, Ho, Wo), in x's dtype.
    """
    x = np.asarray(x)
    n, c, h, w = x.shape
    k, c_w, kh, kw = sw.shape
    if c != c_w:
        raise ValueError(f"sparse_conv2d_forward: input has {c} channels, weights {c_w}")
    ho, wo = conv2d_output_size(h, w, kh, kw, stride, padding)
    dtype = x.dtype if x.dtype in (np.float32, np.float64) else np.dtype(np.float32)
    x = np.ascontiguousarray(x, dtype=dtype)
    hp, wp = h + 2 * padding, w + 2 * padding
    coef = (np.tile(np.array([1.0, 0.0], dtype=dtype), (k, 1)) if coef is None
            else np.ascontiguousarray(coef, dtype=dtype))
    y = np.empty((n, k, ho, wo), dtype=dtype)
    res = y if residual is None else np.ascontiguousarray(residual, dtype=dtype)
    values = sw.values.astype(dtype, copy=False)
    if batched and dispatch.sparse_forward_kernel(stride) == dispatch.SPARSE_BATCHED:
        # pads into its own layout, block by block
        nb_max = max(1, min(n, BATCHED_TILE_FLOATS // (ho * wp)))
        parts = split_range(n)
        run_parallel([(_sparse_conv_batched,
                       (x, sw.channel, sw.row, sw.col, values, sw.indptr, padding, coef,
                        bool(relu), res, residual is not None, y,
                        np.empty(c * hp * nb_max * wp + wp + kw, dtype),
                        np.empty(ho * nb_max * wp, dtype), nb_max, n0, n1))
                      for n0, n1 in parts])
        return y
    xp_flat = np.zeros(n * c * hp * wp + kw, dtype=dtype)  # + kw: see _sparse_conv_images
    xp = xp_flat[:n * c * hp * wp].reshape(n, c, hp, wp)
    if padding:
        pad_chunk(x, 0, padding, xp)
    else:
        xp[:] = x
    parts = split_range(n)
    run_parallel([(_sparse_conv_images,
                   (xp, xp_flat, sw.channel, sw.row, sw.col, values, sw.indptr, stride, coef,
                    bool(relu), res, residual is not None, y, np.empty(ho * wp, dtype), n0,
                    n1))
                  for n0, n1 in parts])
    return y
