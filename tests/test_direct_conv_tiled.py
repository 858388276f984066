"""The register-tiled direct 3x3 forward (`kernels/direct_conv_tiled.py`) and the vector
operations it is written in (`kernels/simd.py`) agree with their plain references.

Drawn over output-channel counts 1..13 (multiples of the 4-channel tile and not: those are
padded with zero filters), output widths that are and are not multiples of 8 and 16, vector
counts that do and do not fill the last tile, paddings 0-3, strides 1 and 2 and the three
tiles (4x3 and 4x4 of 8-lane vectors, 4x4 of 16-lane ones: forced, so every x86-64 CPU
runs all three; on one without AVX-512 LLVM splits the 16-lane operations);
with the fused epilogue it equals the plain kernel followed by the same row epilogue, bit
for bit. Lab 4's pruned widths go through it from the conv entry points.
"""

from __future__ import annotations

from unittest import mock

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from numba import njit
from strategies import seeds
from test_kernels import assert_close

from minitorch_compress.kernels import conv, dispatch, simd
from minitorch_compress.kernels import direct_conv_tiled as tiled
from minitorch_compress.kernels import reference as ref
from minitorch_compress.kernels.common import Epilogue, epilogue_args
from minitorch_compress.kernels.rows import affine_row


@st.composite
def tiled_settings(draw):
    """(n, c, k, h, w, padding, stride): any K in 1..13, an output width that is a multiple
    of 8 or any width (h is None when no input height gives the drawn output height)."""
    padding, stride = draw(st.integers(0, 3)), draw(st.sampled_from([1, 2]))
    wo = draw(st.one_of(st.integers(1, 4).map(lambda v: 8 * v), st.integers(1, 36)))
    ho = draw(st.integers(1, 9))
    # the input sizes whose output is ho x wo: (size + 2p - 3) // stride + 1 == out
    extra = draw(st.integers(0, stride - 1))
    h, w = ((out - 1) * stride + 3 - 2 * padding + extra for out in (ho, wo))
    return (draw(st.integers(1, 3)), draw(st.integers(1, 9)), draw(st.integers(1, 13)),
            h if h >= 1 else None, w if w >= 1 else None, padding, stride)


#: (vectors, lanes) of each tile the kernel has
TILES = [(3, 8), (4, 8), (4, 16)]


def _run(x, w, padding, epilogue=None, tile=None, stride=1, y=None):
    n, _, h, wd = x.shape
    ho, wo = ((size + 2 * padding - 3) // stride + 1 for size in (h, wd))
    y = np.full((n, w.shape[0], ho, wo), np.nan, x.dtype) if y is None else y
    vectors, lanes = tile or (dispatch.TILE_VECTORS, dispatch.forward_lanes(ho, wo, stride))
    tiled.tiled3x3_forward_serial(x, w, padding, y, epilogue_args(epilogue, 4, x.dtype),
                                  vectors, stride, lanes)
    return y


def with_row_epilogue(plain, coef, relu, res):
    """`plain` (N, K, Ho, Wo) with `rows.affine_row` applied to each output row: what a
    kernel's fused epilogue must give, bit for bit (res: like plain, or None)."""
    expected = plain.copy()
    n, k, ho, _ = plain.shape
    for i in range(n):
        for q in range(k):
            for oy in range(ho):
                row = expected[i, q, oy]
                affine_row(row, row, coef[q, 0], coef[q, 1], relu,
                           res[i, q, oy] if res is not None else row, res is not None)
    return expected


@settings(max_examples=150, deadline=None)
@given(tiled_settings(), seeds, st.sampled_from(TILES))
@example((2, 3, 10, 8, 8, 1, 1), 0, (4, 8))  # a pruned width on an aligned output
@example((1, 2, 11, 9, 9, 1, 2), 0, (3, 8))  # odd K, odd width, stride 2
@example((2, 3, 10, 16, 16, 1, 1), 0, (4, 16))  # 16 lanes: one vector a row
@example((1, 2, 5, 7, 8, 1, 1), 0, (4, 16))  # 8 columns, stride 1: the flat layout
@example((2, 9, 8, 8, 8, 1, 1), 0, (4, 16))  # ResNet-20's 8x8 plane, flat
@example((1, 2, 5, 15, 15, 1, 2), 0, (4, 16))  # stride 2 into 8 columns: half of each padded
@example((1, 2, 5, 3, 3, 1, 1), 0, (4, 16))  # a 3x3 plane (< 16 outputs): padded rows
@example((1, 3, 13, 9, 35, 1, 2), 0, (4, 16))  # 16 lanes, stride 2, Wo 18: 2 vectors a row
def test_tiled_forward_matches_reference(setting, seed, tile):
    n, c, k, h, wd, padding, stride = setting
    if h is None or wd is None:
        return
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, c, h, wd)).astype(np.float32)
    w = rng.standard_normal((k, c, 3, 3)).astype(np.float32)
    assert_close(_run(x, w, padding, tile=tile, stride=stride),
                 ref.conv2d_forward(x, w, stride, padding),
                 ref.conv2d_forward(np.abs(x), np.abs(w), stride, padding))


@pytest.mark.parametrize("tile", TILES)
def test_tiled_forward_resnet_shapes_match_reference(tile):
    """ResNet-20's 3x3 shapes: the three stride-1 ones (reductions of 9C = 144, 288, 576
    steps) and the two stride-2 ones."""
    rng = np.random.default_rng(0)
    for c, k, size, stride in ((16, 16, 32, 1), (32, 32, 16, 1), (64, 64, 8, 1),
                               (16, 32, 32, 2), (32, 64, 16, 2)):
        x = rng.standard_normal((2, c, size, size)).astype(np.float32)
        w = rng.standard_normal((k, c, 3, 3)).astype(np.float32)
        assert_close(_run(x, w, 1, tile=tile, stride=stride),
                     ref.conv2d_forward(x, w, stride, 1),
                     ref.conv2d_forward(np.abs(x), np.abs(w), stride, 1))


@settings(max_examples=40, deadline=None)
@given(tiled_settings(), seeds, st.sampled_from(TILES))
def test_tiled_epilogue_is_the_row_epilogue_after_the_conv(setting, seed, tile):
    n, c, k, h, wd, padding, stride = setting
    if h is None or wd is None:
        return
    rng = np.random.default_rng(seed)
    relu, residual = bool(seed % 2), bool(seed % 3)
    x = rng.standard_normal((n, c, h, wd)).astype(np.float32)
    w = rng.standard_normal((k, c, 3, 3)).astype(np.float32)
    coef = rng.standard_normal((k, 2)).astype(np.float32)
    plain = _run(x, w, padding, tile=tile, stride=stride)
    res = rng.standard_normal(plain.shape).astype(np.float32) if residual else None
    fused = _run(x, w, padding, Epilogue(coef, relu, res), tile=tile, stride=stride)
    np.testing.assert_array_equal(fused, with_row_epilogue(plain, coef, relu, res))


@pytest.mark.parametrize("tile", TILES)
@pytest.mark.parametrize("size, stride", [(16, 1), (8, 1), (32, 2)])
@pytest.mark.parametrize("relu, residual", [(False, False), (True, False), (True, True),
                                            (False, True)])
def test_a_padded_channel_count_alone_is_cropped_plane_by_plane(tile, size, stride, relu,
                                                                residual):
    """K = 10 (padded to 12) on an output whose width needs no padding: the scratch is
    copied out a whole plane at a time with the epilogue on it, giving the reference conv
    and, fused, the row epilogue after the plain conv bit for bit."""
    rng = np.random.default_rng(size + stride)
    x = rng.standard_normal((2, 3, size, size)).astype(np.float32)
    w = rng.standard_normal((10, 3, 3, 3)).astype(np.float32)
    coef = rng.standard_normal((10, 2)).astype(np.float32)
    with mock.patch.object(tiled, "_crop_planes_into", wraps=tiled._crop_planes_into) as planes, \
            mock.patch.object(tiled, "_crop_into", wraps=tiled._crop_into) as rows:
        plain = _run(x, w, 1, tile=tile, stride=stride)
        res = rng.standard_normal(plain.shape).astype(np.float32) if residual else None
        fused = _run(x, w, 1, Epilogue(coef, relu, res), tile=tile, stride=stride)
    assert planes.call_count == 2 and rows.call_count == 0
    assert_close(plain, ref.conv2d_forward(x, w, stride, 1),
                 ref.conv2d_forward(np.abs(x), np.abs(w), stride, 1))
    np.testing.assert_array_equal(fused, with_row_epilogue(plain, coef, relu, res))


@pytest.mark.parametrize("tile", TILES)
def test_tiled_forward_writes_a_strided_output(tile):
    """An output that is not C-contiguous is written through the scratch, values as into a
    contiguous one."""
    rng = np.random.default_rng(5)
    x = rng.standard_normal((2, 3, 16, 16)).astype(np.float32)
    w = rng.standard_normal((8, 3, 3, 3)).astype(np.float32)
    strided = np.full((2, 8, 16, 16), np.nan, np.float32).transpose(0, 1, 3, 2)
    assert not strided.flags.c_contiguous
    _run(x, w, 1, tile=tile, y=strided)
    np.testing.assert_array_equal(strided, _run(x, w, 1, tile=tile))


def test_what_it_does_not_take_is_refused():
    x32, w32 = np.zeros((1, 2, 8, 8), np.float32), np.zeros((4, 2, 3, 3), np.float32)
    for x, w, stride, tile in ((x32.astype(np.float64), w32.astype(np.float64), 1, (4, 8)),
                               (x32, np.zeros((4, 2, 5, 5), np.float32), 1, (4, 8)),
                               (x32, w32, 3, (4, 8)), (x32, w32, 1, (5, 8)),
                               (x32, w32, 1, (4, 12))):
        with pytest.raises(ValueError, match="tiled3x3"):
            _run(x, w, 1, stride=stride, tile=tile)


@pytest.mark.parametrize("wide", [False, True])
@pytest.mark.parametrize("k, size, stride", [(10, 32, 1), (11, 16, 2), (31, 16, 1),
                                             (49, 8, 1), (13, 7, 1)])
def test_pruned_widths_run_the_tiled_kernel_from_the_conv_entry_points(k, size, stride, wide,
                                                                       monkeypatch):
    """Lab 4's channel-pruned widths (and an odd image size) take the tiled forward, plain,
    fused and as the stride-1 grad-input, and agree with the reference, with 16-lane
    vectors allowed (where Wo is a multiple of 16) and not."""
    monkeypatch.setattr(dispatch, "WIDE_VECTORS", wide)
    rng = np.random.default_rng(k)
    c = 7
    x = rng.standard_normal((3, c, size, size)).astype(np.float32)
    w = rng.standard_normal((k, c, 3, 3)).astype(np.float32)
    coef = rng.standard_normal((k, 2)).astype(np.float32)
    spy = mock.patch.object(tiled, "tiled3x3_forward_serial",
                            wraps=tiled.tiled3x3_forward_serial)
    with spy as called:
        y = conv.conv2d_forward(x, w, stride, 1)
        fused = conv.conv2d_affine_forward(x, w, stride, 1, coef, relu=True)
        assert called.call_count >= 2
        ho, wo = y.shape[2:]
        flat = stride == 1 and ho * wo >= 16
        assert {c.kwargs["lanes"] for c in called.call_args_list} == {
            16 if wide and (wo % 16 == 0 or flat) else 8}
    assert_close(y, ref.conv2d_forward(x, w, stride, 1),
                 ref.conv2d_forward(np.abs(x), np.abs(w), stride, 1))
    np.testing.assert_array_equal(fused, with_row_epilogue(y, coef, True, None))
    gy = rng.standard_normal(y.shape).astype(np.float32)
    with spy as called:
        gx = conv.conv2d_grad_input(gy, w, x.shape, stride, 1)
        assert called.called == (stride == 1)
    assert_close(gx, ref.conv2d_grad_input(gy, w, x.shape, stride, 1),
                 ref.conv2d_grad_input(np.abs(gy), np.abs(w), x.shape, stride, 1))


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


@njit(cache=True)
def _fma_rows16(a, b, c, out):
    """`_fma_rows` with 16-lane vectors (groups of 16)."""
    for i in range(0, a.size, simd.LANES16):
        simd.vstore(out, i, simd.vfma(simd.vload16(a, i), simd.vload16(b, i),
                                      simd.vload16(c, i)))


@njit(cache=True)
def _broadcast_fma16(s, a, out):
    """out[0:16] = s * a[0:16] + 0, s broadcast to 16 lanes."""
    simd.vstore(out, 0, simd.vfma(simd.vbroadcast16(s), simd.vload16(a, 0), simd.vzero16()))


@pytest.mark.parametrize("lanes, fma_rows, broadcast_fma", [
    (simd.LANES, _fma_rows, _broadcast_fma), (simd.LANES16, _fma_rows16, _broadcast_fma16)])
@settings(max_examples=40, deadline=None)
@given(st.integers(1, 4), seeds)
def test_compiled_vector_ops_equal_the_python_ones(lanes, fma_rows, broadcast_fma, groups,
                                                   seed):
    rng = np.random.default_rng(seed)
    a, b, c = (rng.standard_normal(lanes * groups).astype(np.float32) for _ in range(3))
    compiled = np.empty_like(a)
    fma_rows(a, b, c, compiled)
    expected = np.empty_like(a)
    getattr(fma_rows, "py_func", fma_rows)(a, b, c, expected)  # plain Python
    np.testing.assert_array_equal(compiled, expected)
    # rounded once: float64 products of float32 values are exact
    np.testing.assert_array_equal(compiled, (a.astype(np.float64) * b + c).astype(np.float32))
    s = np.float32(rng.standard_normal())
    out = np.full(lanes + 8, np.nan, np.float32)
    broadcast_fma(s, a[:lanes], out)
    np.testing.assert_array_equal(out[:lanes], s * a[:lanes])
    assert np.isnan(out[lanes:]).all()  # exactly `lanes` lanes stored


@njit(cache=True)
def _like_ops(s, a, out8, out16):
    """out = s * a + a through `vload_like`/`vbroadcast_like`, at the width of each zero."""
    zero8, zero16 = simd.vzero(), simd.vzero16()
    simd.vstore(out8, 0, simd.vfma(simd.vbroadcast_like(zero8, s),
                                   simd.vload_like(zero8, a, 1), simd.vload_like(zero8, a, 1)))
    simd.vstore(out16, 0, simd.vfma(simd.vbroadcast_like(zero16, s),
                                    simd.vload_like(zero16, a, 1), simd.vload_like(zero16, a, 1)))


def test_width_generic_ops_take_the_width_of_the_given_vector():
    """Compiled and plain Python: 8 lanes from `vzero()`, 16 from `vzero16()`, exactly."""
    a = np.arange(20, dtype=np.float32)
    for run in (_like_ops, _like_ops.py_func):
        out8, out16 = np.full(20, np.nan, np.float32), np.full(20, np.nan, np.float32)
        run(np.float32(2.0), a, out8, out16)
        np.testing.assert_array_equal(out8[:8], 3 * a[1:9])
        np.testing.assert_array_equal(out16[:16], 3 * a[1:17])
        assert np.isnan(out8[8:]).all() and np.isnan(out16[16:]).all()


def test_python_vector_ops_refuse_reads_and_writes_past_the_end():
    a = np.zeros(10, np.float32)
    with pytest.raises(IndexError):
        simd.vload(a, 3)
    with pytest.raises(IndexError):
        simd.vstore(a, 3, simd.vzero())
    simd.vstore(a, 2, simd.vbroadcast(1.5))
    b = np.zeros(20, np.float32)
    with pytest.raises(IndexError):
        simd.vload16(b, 5)
    with pytest.raises(IndexError):
        simd.vstore(b, 5, simd.vzero16())
    with pytest.raises(ValueError):
        simd.vfma(simd.vzero(), simd.vzero16(), simd.vzero16())
    simd.vstore(b, 4, simd.vbroadcast16(2.5))
    np.testing.assert_array_equal(a, [0, 0] + [1.5] * 8)
    np.testing.assert_array_equal(b, [0] * 4 + [2.5] * 16)

