"""Direct sparse convolution for inference: unstructured sparsity turned into fewer flops.

Design (Park et al., "Faster CNNs with Direct Sparse Convolutions and Guided Pruning", ICLR
2017): every output channel k keeps only its non-zero weights, in CSR order over (input
channel c, kernel row ky, kernel column kx). For one image and one output channel, each
non-zero adds a shifted window of one zero-padded input plane to the whole output plane::

    y[n, k] = sum over the non-zeros j of k:
                  w_j * xpad[n, c_j, ky_j : ky_j + s*Ho : s, kx_j : kx_j + s*Wo : s]

so a weight that is zero costs nothing and no im2col buffer is ever written.

Register tile (`kernels/simd.py`, as in the dense `direct_conv_tiled.py`). A *position
vector* is L neighbouring outputs of one output row (L = 8 lanes, or 16 on AVX-512 CPUs
where Wo is a multiple of 16: `dispatch.sparse_lanes`). A tile is 8 position vectors of one
output channel, whose 8 sums stay in vector registers across all the channel's non-zeros::

    for j in non-zeros of channel k:                 # nnz(k) steps
        b = broadcast(w_j)
        for v in 0..7:  sum[v] += b * (the L inputs of vector v under tap j)   (8 FMAs)

One weight load serves 8L multiply-adds, each input is one vector load fused into its FMA,
and nothing is stored until the tile is done. 8 sums and a weight fit the 16 vector
registers of AVX2 CPUs, and 8 independent sums cover the FMA latency (4 cycles, 2 a cycle);
the 8 vectors' addresses stay in 8 general registers. CPUs with 32 vector registers keep
the same tile: the loop is bound by its input loads, not by the per-non-zero work that a
16-vector tile would share out, and one measured no faster. On AVX-512 the same tile on
16-lane vectors (`_tile8` is one function for both widths) does twice the multiply-adds per
load, but most of its loads straddle two cache lines (a tap's offset moves by one value
with kx), and such a 16-lane load costs about two 8-lane ones, so it gains less than the
dense tile, which feeds 4 channels from each load. An 8-wide plane (ResNet-20's 8x8)
stays on 8 lanes: 16-lane vectors spanning rows need three shifted copies of the input (the
dense kernel's flat layout), and the sparse tile ran 2x slower on them. For each
tile position, every output channel runs its tile in turn, so the few input rows the tile
reads stay in L1 while all the channels read them.
Once an image is done, the fused epilogue (batch norm, residual add, ReLU) runs over each of
its planes as one row of Ho*Wo values (`rows.affine_row`, the loop every other path uses).
Images are shared out between the kernel threads. Which convs are worth running here rather
than dense is measured per CPU (`kernels/sparse_break_even.py`).

Layout. Each image is copied into zero-padded planes ``xpad[c]`` of ``Hp`` rows, each row
split by column phase for stride s: padded column px lies at ``(px % s) * part + px // s``
(s = 1: the padded row itself). Output column ox + lane reads padded column
``s*(ox + lane) + kx``, i.e. phase ``kx % s`` at ``ox + lane + kx // s``: so the inputs of a
position vector under any tap are L contiguous values, at stride 2 as at stride 1, and one
offset per non-zero (``c*plane + ky*rowlen + (kx % s)*part + kx // s``, `_tap_offsets`) plus
one per position vector (``s*oy*rowlen + ox``) addresses every load. The same tiles serve
every stride and kernel size.

Any shape: a Wo that is not a multiple of the lanes runs into a scratch image with Wo
rounded up to whole vectors, cropped into y (the epilogue then runs on the copied rows).
Lanes past Wo read whatever lies past the row (zeros or the next row) and are dropped.
float64 inputs run the dense im2col path on the decoded weights (the SIMD vectors are
float32). The sums run in another order than the reference's, so results agree to float
rounding, not bit for bit (tests/test_sparse_conv.py).

``NUMBA_DISABLE_JIT=1`` runs the same loops in plain Python (`kernels/simd.py`'s vectors as
8- or 16-value NumPy arrays); `kernels/reference.py`'s sparse conv is the readable twin (the
same formula, one NumPy window per non-zero).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from numba import njit

from minitorch_compress.kernels import conv, dispatch
from minitorch_compress.kernels.common import Epilogue
from minitorch_compress.kernels.common import epilogue_args as make_epilogue_args
from minitorch_compress.kernels.parallel import run_parallel, split_range
from minitorch_compress.kernels.rows import affine_row, epilogue_on_row
from minitorch_compress.kernels.rules import conv2d_output_size
from minitorch_compress.kernels.simd import (
    LANES16,
    vbroadcast_like,
    veven,
    vfma,
    vload,
    vload_like,
    vodd,
    vstore,
    vzero,
    vzero16,
)

#: Names the kernel's code: calibrated break-evens (`kernels/sparse_break_even.py`) are
#: cached under it, so a changed kernel is measured again. Change it with the kernel.
KERNEL_VERSION = "tiled-lanes8or16-1"


@dataclass(frozen=True)
class SparseWeights:
    """A conv weight (K, C, kh, kw) in CSR form over each output channel's (c, ky, kx).

    Attributes:
        shape: the dense shape (K, C, kh, kw).
        indptr: (K + 1,) int64, channel k's non-zeros are ``indptr[k]:indptr[k + 1]``.
        channel, row, col: (nnz,) int64, each non-zero's c, ky, kx.
        values: (nnz,) the non-zero weights, in the weight's float dtype.
        taps: `tap_offsets` for each packed-image geometry they were asked for (computed at
            a geometry's first use; a model runs each conv on one geometry per input size).
    """

    shape: tuple[int, int, int, int]
    indptr: np.ndarray
    channel: np.ndarray
    row: np.ndarray
    col: np.ndarray
    values: np.ndarray
    taps: dict = field(default_factory=dict, compare=False, repr=False)

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


def _tap_offsets(sw: SparseWeights, stride: int, plane: int, rowlen: int,
                 part: int) -> np.ndarray:
    """(nnz,) intp: where non-zero j's tap starts in a packed image, relative to a position
    vector's own offset: ``c*plane + ky*rowlen + (kx % s)*part + kx // s`` (module notes).
    Kept in ``sw.taps``: computing them on every call took 4 % of a sparse model's time."""
    key = (stride, plane, rowlen, part)
    if key not in sw.taps:
        sw.taps[key] = (sw.channel * plane + sw.row * rowlen + (sw.col % stride) * part
                        + sw.col // stride).astype(np.intp)
    return sw.taps[key]


@njit(cache=True, nogil=True)
def _pack_phases(x, n, padding, stride, part, xpad):
    """xpad[c, padding + iy, (px % s)*part + px // s] = x[n, c, iy, ix] with px = padding + ix;
    the rest of xpad keeps the zeros of its allocation.

    x: (N, C, H, W); xpad: (C, H + 2*padding, s*part), part >= ceil((W + 2*padding) / s)."""
    for c in range(x.shape[1]):
        for iy in range(x.shape[2]):
            src = x[n, c, iy]
            dst = xpad[c, padding + iy]
            # views indexed from 0: with `dst[padding + ix]` (padding not known to be >= 0)
            # numba adds wrap-around code and LLVM no SIMD, and the copy cost more than the
            # whole tile loop of an 80 %-sparse 16x32x32 conv
            if stride == 1:
                row = dst[padding:]
                for ix in range(x.shape[3]):
                    row[ix] = src[ix]
            elif stride == 2:
                # 16 columns at a time: their even and odd ones picked out of two vectors
                # (column ix = 2i goes to even + i, ix = 2i + 1 to odd + i)
                even = (padding % 2) * part + padding // 2
                odd = ((padding + 1) % 2) * part + (padding + 1) // 2
                done = x.shape[3] // 16 * 16
                for ix in range(0, done, 16):
                    a, b = vload(src, ix), vload(src, ix + 8)
                    vstore(dst, even + ix // 2, veven(a, b))
                    vstore(dst, odd + ix // 2, vodd(a, b))
                for ix in range(done, x.shape[3]):
                    px = padding + ix
                    dst[(px % 2) * part + px // 2] = src[ix]
            else:  # phase by phase: no division in the inner loop
                for phase in range(stride):
                    ix0 = (phase - padding) % stride  # first ix with px % s == phase
                    out = dst[phase * part + (padding + ix0) // stride:]
                    col = src[ix0:]
                    for i in range((x.shape[3] - ix0 + stride - 1) // stride):
                        out[i] = col[i * stride]


@njit(cache=True, nogil=True)
def _tile8(xflat, taps, values, j0, j1, ins, yplane, outs, zero):
    """One tile: 8 position vectors of one output channel, summed over its non-zeros
    j0..j1-1 in registers, then stored.

    xflat: the packed image, flat; taps: (nnz,) `_tap_offsets`; values: (nnz,) float32;
    ins: (8,) each vector's offset in the packed image; yplane: (Ho*Wo_t,) the channel's
    output plane; outs: (8,) each vector's offset in it; zero: the zero vector of the width
    to compute in, 8 or 16 lanes (`simd.vload_like`: numba compiles the tile once per
    width, as the dense `_tile4x4`)."""
    i0, i1, i2, i3, i4, i5, i6, i7 = ins[0], ins[1], ins[2], ins[3], ins[4], ins[5], ins[6], \
        ins[7]
    s0 = s1 = s2 = s3 = s4 = s5 = s6 = s7 = zero
    # slice views indexed from 0: numba adds no negative-index wrap-around code
    tap_k, value_k = taps[j0:j1], values[j0:j1]
    for j in range(j1 - j0):
        b = vbroadcast_like(zero, value_k[j])
        t = tap_k[j]
        s0 = vfma(b, vload_like(zero, xflat, t + i0), s0)
        s1 = vfma(b, vload_like(zero, xflat, t + i1), s1)
        s2 = vfma(b, vload_like(zero, xflat, t + i2), s2)
        s3 = vfma(b, vload_like(zero, xflat, t + i3), s3)
        s4 = vfma(b, vload_like(zero, xflat, t + i4), s4)
        s5 = vfma(b, vload_like(zero, xflat, t + i5), s5)
        s6 = vfma(b, vload_like(zero, xflat, t + i6), s6)
        s7 = vfma(b, vload_like(zero, xflat, t + i7), s7)
    vstore(yplane, outs[0], s0)
    vstore(yplane, outs[1], s1)
    vstore(yplane, outs[2], s2)
    vstore(yplane, outs[3], s3)
    vstore(yplane, outs[4], s4)
    vstore(yplane, outs[5], s5)
    vstore(yplane, outs[6], s6)
    vstore(yplane, outs[7], s7)


@njit(cache=True, nogil=True)
def _sparse_tiled(x, taps, values, indptr, padding, stride, part, lanes, xflat, direct, y,
                  scratch, epilogue, coef, relu, res, add_res):
    """y = epilogue(sparse conv of x), one image at a time, tiles of 8 position vectors of
    `lanes` (8 or 16) outputs.

    x: (N, C, H, W) float32; taps, values, indptr: the weights (`_tap_offsets`); xflat:
    the packed image's buffer, zero from its allocation: C*Hp*s*part values, then slack
    for the lanes past the last row (`sparse_conv2d_forward`); y: (N, K, Ho, Wo); direct: y
    is C-contiguous with Wo a multiple of the lanes, so tiles write into it; else scratch
    (K, Ho*Wo_t) receives each image, cropped into y."""
    n_img, c_in, h = x.shape[0], x.shape[1], x.shape[2]
    k_out, ho, wo = y.shape[1], y.shape[2], y.shape[3]
    hp, rowlen = h + 2 * padding, stride * part
    xpad = xflat[:c_in * hp * rowlen].reshape(c_in, hp, rowlen)
    wo_t = scratch.shape[1] // ho if not direct else wo
    per_row = wo_t // lanes
    vectors = ho * per_row
    # where each tile's vectors start, in a packed input plane and in an output plane (the
    # same for every image and channel)
    tiles = (vectors + 7) // 8
    ins = np.empty((tiles, 8), np.intp)
    outs = np.empty((tiles, 8), np.intp)
    for t in range(tiles):
        for i in range(8):
            v = min(8 * t + i, vectors - 1)  # past the last: the last again
            oy, ox = v // per_row, (v % per_row) * lanes
            ins[t, i] = stride * oy * rowlen + ox
            outs[t, i] = oy * wo_t + ox
    for n in range(n_img):
        _pack_phases(x, n, padding, stride, part, xpad)
        yimg = y[n].reshape(k_out, ho * wo) if direct else scratch
        # tiles outside, channels inside: a tile's input window stays in L1 while every
        # output channel reads it (the other order streamed the whole image once a channel)
        for t in range(tiles):
            for k in range(k_out):
                if lanes == LANES16:
                    _tile8(xflat, taps, values, indptr[k], indptr[k + 1], ins[t], yimg[k],
                           outs[t], vzero16())
                else:
                    _tile8(xflat, taps, values, indptr[k], indptr[k + 1], ins[t], yimg[k],
                           outs[t], vzero())
        for k in range(k_out):
            yplane = yimg[k]
            if direct:  # the whole plane, one contiguous row, while it is in L1
                if epilogue:
                    res_plane = res[n, k].reshape(ho * wo) if add_res else yplane
                    affine_row(yplane, yplane, coef[k, 0], coef[k, 1], relu, res_plane,
                               add_res)
            else:
                for oy in range(ho):
                    dst = y[n, k, oy]
                    src = yplane[oy * wo_t:]
                    for ox in range(wo):
                        dst[ox] = src[ox]
                    epilogue_on_row(dst, n, k, oy, epilogue, coef, relu, res, add_res)


def sparse_conv2d_forward(x: np.ndarray, sw: SparseWeights, stride: int = 1, padding: int = 0,
                          coef: np.ndarray | None = None, relu: bool = False,
                          residual: np.ndarray | None = None) -> np.ndarray:
    """``relu?(conv2d(x, w) * a + b (+ residual))`` with `w` given by its non-zeros.

    Args:
        x: input (N, C, H, W), float32 or float64.
        sw: the weights (K, C, kh, kw) as `SparseWeights`.
        stride, padding: the conv's (any stride >= 1).
        coef: (K, 2) per-channel (a, b) (default (1, 0): the plain convolution).
        relu: apply ``max(., 0)`` last.
        residual: optional (N, K, Ho, Wo) added before the ReLU.

    Returns:
        y (N, K, Ho, Wo), in x's dtype (float32 unless x is float64).
    """
    x = np.asarray(x)
    n, c, h, w = x.shape
    k, c_w, kh, kw = sw.shape
    if c != c_w:
        raise ValueError(f"sparse_conv2d_forward: input has {c} channels, weights {c_w}")
    ho, wo = conv2d_output_size(h, w, kh, kw, stride, padding)
    dtype = np.dtype(np.float64) if x.dtype == np.float64 else np.dtype(np.float32)
    coef = (np.tile(np.array([1.0, 0.0], dtype=dtype), (k, 1)) if coef is None
            else np.ascontiguousarray(coef, dtype=dtype))
    if dispatch.sparse_forward_kernel(dtype) == dispatch.IM2COL_GEMM:
        return conv.conv2d_affine_forward(x.astype(dtype, copy=False),
                                          sw.to_dense().astype(dtype), stride, padding, coef,
                                          relu, residual)
    x = np.ascontiguousarray(x, dtype=np.float32)
    epilogue = Epilogue(coef, bool(relu), None if residual is None
                        else np.ascontiguousarray(residual, dtype=np.float32))
    hp, wp = h + 2 * padding, w + 2 * padding
    part = -(-wp // stride)  # a phase of a packed row
    rowlen = stride * part
    plane = hp * rowlen
    lanes = dispatch.sparse_lanes(wo)
    wo_t = -(-wo // lanes) * lanes
    taps = _tap_offsets(sw, stride, plane, rowlen, part)
    values = sw.values.astype(np.float32, copy=False)
    y = np.empty((n, k, ho, wo), dtype=np.float32)
    direct = wo_t == wo
    tasks = []
    for n0, n1 in split_range(n):
        # the last vector's lanes read up to wo_t + kw past the last plane: zero slack
        xflat = np.zeros(c * plane + wo_t + kw + lanes, np.float32)
        scratch = np.empty((k, 1 if direct else ho * wo_t), np.float32)
        tasks.append((_sparse_tiled, (x[n0:n1], taps, values, sw.indptr, padding, stride,
                                      part, lanes, xflat, direct, y[n0:n1], scratch,
                                      *make_epilogue_args(epilogue.part(n0, n1), 4,
                                                          np.dtype(np.float32)))))
    run_parallel(tasks)
    return y
