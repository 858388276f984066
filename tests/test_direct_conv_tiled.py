"""The register-tiled direct 3x3 forward (`kernels/direct_conv_tiled.py`) and the vector
operations it is written in (`kernels/simd.py`) agree with their plain references.

Drawn over the shapes the kernel takes (K a multiple of 4, output widths multiples of 8,
vector counts that do and do not fill the last tile), paddings 0-3 and both tile sizes;
with the fused epilogue it equals the plain kernel followed by the same row epilogue, bit
for bit. Shapes it does not take are refused, and the conv module then takes another path.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from numba import njit
from strategies import seeds
from test_direct_conv import with_row_epilogue
from test_kernels import assert_close

from minitorch_compress.kernels import conv, simd
from minitorch_compress.kernels import direct_conv_tiled as tiled
from minitorch_compress.kernels import reference as ref
from minitorch_compress.kernels.conv import _Epilogue, _epilogue_args


@st.composite
def tiled_settings(draw):
    """(n, c, k, h, w, padding, stride) with K % 4 == 0 and an output width that is a
    multiple of 8 (h is None when no input height gives the drawn output height)."""
    padding, stride = draw(st.integers(0, 3)), draw(st.sampled_from([1, 2]))
    wo, ho = 8 * draw(st.integers(1, 3)), draw(st.integers(1, 9))
    # the input sizes whose output is ho x wo: (size + 2p - 3) // stride + 1 == out
    extra = draw(st.integers(0, stride - 1))
    h, w = ((out - 1) * stride + 3 - 2 * padding + extra for out in (ho, wo))
    return (draw(st.integers(1, 3)), draw(st.integers(1, 9)), 4 * draw(st.integers(1, 3)),
            h if h >= 1 else None, w, padding, stride)


def _run(x, w, padding, epilogue=None, vectors=None, stride=1):
    n, _, h, wd = x.shape
    ho, wo = ((size + 2 * padding - 3) // stride + 1 for size in (h, wd))
    y = np.full((n, w.shape[0], ho, wo), np.nan, x.dtype)
    tiled.tiled3x3_forward_serial(x, w, padding, y, _epilogue_args(epilogue, 4, x.dtype),
                                  vectors, stride)
    return y


@settings(max_examples=80, deadline=None)
@given(tiled_settings(), seeds, st.sampled_from([3, 4]))
def test_tiled_forward_matches_reference(setting, seed, vectors):
    n, c, k, h, wd, padding, stride = setting
    if h is None:
        return
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, c, h, wd)).astype(np.float32)
    w = rng.standard_normal((k, c, 3, 3)).astype(np.float32)
    assert_close(_run(x, w, padding, vectors=vectors, stride=stride),
                 ref.conv2d_forward(x, w, stride, padding),
                 ref.conv2d_forward(np.abs(x), np.abs(w), stride, padding))


@pytest.mark.parametrize("vectors", [3, 4])
def test_tiled_forward_resnet_shapes_match_reference(vectors):
    """ResNet-20's 3x3 shapes: the three stride-1 ones (reductions of 9C = 144, 288, 576
    steps) and the two stride-2 ones."""
    rng = np.random.default_rng(0)
    for c, k, size, stride in ((16, 16, 32, 1), (32, 32, 16, 1), (64, 64, 8, 1),
                               (16, 32, 32, 2), (32, 64, 16, 2)):
        x = rng.standard_normal((2, c, size, size)).astype(np.float32)
        w = rng.standard_normal((k, c, 3, 3)).astype(np.float32)
        assert_close(_run(x, w, 1, vectors=vectors, stride=stride),
                     ref.conv2d_forward(x, w, stride, 1),
                     ref.conv2d_forward(np.abs(x), np.abs(w), stride, 1))


@settings(max_examples=25, deadline=None)
@given(tiled_settings(), seeds)
def test_tiled_epilogue_is_the_row_epilogue_after_the_conv(setting, seed):
    n, c, k, h, wd, padding, stride = setting
    if h is None:
        return
    rng = np.random.default_rng(seed)
    relu, residual = bool(seed % 2), bool(seed % 3)
    x = rng.standard_normal((n, c, h, wd)).astype(np.float32)
    w = rng.standard_normal((k, c, 3, 3)).astype(np.float32)
    coef = rng.standard_normal((k, 2)).astype(np.float32)
    plain = _run(x, w, padding, stride=stride)
    res = rng.standard_normal(plain.shape).astype(np.float32) if residual else None
    fused = _run(x, w, padding, _Epilogue(coef, relu, res), stride=stride)
    np.testing.assert_array_equal(fused, with_row_epilogue(plain, coef, relu, res))


@pytest.mark.parametrize("k, wo, dtype", [(6, 8, np.float32), (8, 12, np.float32),
                                          (8, 8, np.float64)])
def test_shapes_it_does_not_take_are_refused(k, wo, dtype):
    assert not tiled.fits(k, wo, dtype)
    x = np.zeros((1, 2, wo, wo), dtype)
    w = np.zeros((k, 2, 3, 3), dtype)
    with pytest.raises(ValueError, match="tiled3x3"):
        _run(x, w, 1)
    with pytest.raises(ValueError, match="stride 1 or 2"):
        _run(np.zeros((1, 2, 10, 10), np.float32), np.zeros((8, 2, 3, 3), np.float32), 1,
             stride=3)


def test_conv_falls_back_where_the_tiled_kernel_does_not_fit():
    """With only the tiled forward switched on, a conv it cannot take (K = 6, float64, an
    output width of 7) still gives the reference result, through another path."""
    rng = np.random.default_rng(3)
    for k, size, dtype in ((6, 8, np.float32), (8, 8, np.float64), (8, 7, np.float32)):
        x = rng.standard_normal((2, 3, size, size)).astype(dtype)
        w = rng.standard_normal((k, 3, 3, 3)).astype(dtype)
        saved = conv.DIRECT_3X3
        conv.DIRECT_3X3 = frozenset({"forward_tiled"})
        try:
            y = conv.conv2d_forward(x, w, 1, 1)
        finally:
            conv.DIRECT_3X3 = saved
        assert_close(y, ref.conv2d_forward(x, w, 1, 1),
                     ref.conv2d_forward(np.abs(x), np.abs(w), 1, 1))


# ------------------------------------------------------------------ the vector operations
@njit(cache=True)
def _fma_rows(a, b, c, out):
    """out[i*8 : i*8 + 8] = a[..] * b[..] + c[..] for each group of 8, with the vector ops."""
    for i in range(0, a.size, simd.LANES):
        simd.vstore(out, i, simd.vfma(simd.vload(a, i), simd.vload(b, i), simd.vload(c, i)))


@njit(cache=True)
def _broadcast_fma(s, a, out):
    """out[0:8] = s * a[0:8] + 0, s broadcast to 8 lanes."""
    simd.vstore(out, 0, simd.vfma(simd.vbroadcast(s), simd.vload(a, 0), simd.vzero()))


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 4), seeds)
def test_compiled_vector_ops_equal_the_python_ones(groups, seed):
    rng = np.random.default_rng(seed)
    a, b, c = (rng.standard_normal(8 * groups).astype(np.float32) for _ in range(3))
    compiled = np.empty_like(a)
    _fma_rows(a, b, c, compiled)
    expected = np.empty_like(a)
    getattr(_fma_rows, "py_func", _fma_rows)(a, b, c, expected)  # plain Python
    np.testing.assert_array_equal(compiled, expected)
    # rounded once: float64 products of float32 values are exact
    np.testing.assert_array_equal(compiled, (a.astype(np.float64) * b + c).astype(np.float32))
    s = np.float32(rng.standard_normal())
    out = np.empty(8, np.float32)
    _broadcast_fma(s, a[:8], out)
    np.testing.assert_array_equal(out, s * a[:8])


def test_python_vector_ops_refuse_reads_and_writes_past_the_end():
    a = np.zeros(10, np.float32)
    with pytest.raises(IndexError):
        simd.vload(a, 3)
    with pytest.raises(IndexError):
        simd.vstore(a, 3, simd.vzero())
    simd.vstore(a, 2, simd.vbroadcast(1.5))
    np.testing.assert_array_equal(a, [0, 0] + [1.5] * 8)

