"""The fast integer conv (`kernels/int8_conv.py`, `kernels/simd_int8.py`) equals the NumPy
integer reference bit for bit."""

from __future__ import annotations

import gc
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from numba import njit
from strategies import seeds

from minitorch_compress.kernels import amx, int8_conv, simd_int8
from minitorch_compress.kernels import int8_reference as ir

KERNELS = (["portable"] + (["avx512_vnni"] if simd_int8.has_avx512_vnni() else [])
           + (["amx"] if amx.amx_available() else []))
needs_vnni = pytest.mark.skipif(not simd_int8.has_avx512_vnni(), reason="no AVX-512 VNNI")


def random_layer(rng, c, k, ksize, stride, padding, with_mask, with_residual, relu,
                 multiplier_range):
    weight = rng.integers(-128, 128, (k, c, ksize, ksize)).astype(np.int8)
    mask = None
    if with_mask:
        mask = (rng.random(weight.shape) < 0.6).astype(np.uint8)
        weight = (rng.integers(0, 16, weight.shape) * mask).astype(np.int8)

    def requant(shape):
        low, high = multiplier_range
        return ir.Requant.from_real(rng.uniform(low, high, shape) * rng.choice([-1, 1], shape))

    return ir.IntConv(
        weight=weight, bias=rng.integers(-5000, 5000, k).astype(np.int32),
        scale_a=requant(k), mask=mask, scale_b=requant(k) if with_mask else None,
        stride=stride, padding=padding, in_zero_point=int(rng.integers(0, 256)),
        out_zero_point=int(rng.integers(0, 256)), relu=relu,
        residual_scale=ir.Requant.from_real(np.float64(rng.uniform(0.1, 3)))
        if with_residual else None, residual_zero_point=int(rng.integers(0, 256)))


layer_problems = st.tuples(
    st.integers(1, 2),  # n
    st.integers(1, 9),  # c: not a multiple of 4
    st.integers(1, 20),  # k: more and fewer than 16 lanes
    st.integers(1, 9), st.integers(1, 9),  # h, w
    st.sampled_from([1, 3]), st.sampled_from([1, 2]), st.integers(0, 1),
    st.booleans(), st.booleans(), st.booleans(),
    # tiny multipliers, ordinary ones, ones just below 1 whose terms reach 2^31 (the int32
    # epilogue, PackedConv.bounded) and ones past 1 that saturate (the 64-bit epilogue)
    st.sampled_from([(1e-6, 1e-4), (1e-3, 0.1), (0.3, 0.99), (0.5, 40.0)]),
    seeds)


def inputs(problem):
    n, c, k, h, w, ksize, stride, padding, with_mask, with_res, relu, mrange, seed = problem
    rng = np.random.default_rng(seed)
    h, w = max(h, ksize), max(w, ksize)
    layer = random_layer(rng, c, k, ksize, stride, padding, with_mask, with_res, relu, mrange)
    q = rng.integers(0, 256, (n, c, h, w), dtype=np.uint8)
    residual = None
    if with_res:
        ho, wo = (h + 2 * padding - ksize) // stride + 1, (w + 2 * padding - ksize) // stride + 1
        residual = rng.integers(0, 256, (n, k, ho, wo), dtype=np.uint8)
    return q, layer, residual


@pytest.mark.parametrize("kernel", KERNELS)
@settings(deadline=None, max_examples=60)
@given(problem=layer_problems)
def test_fast_conv_layer_equals_the_reference_bit_for_bit(kernel, problem):
    q, layer, residual = inputs(problem)
    expected = ir.conv_layer(q, layer, residual)
    got = int8_conv.conv_layer(q, layer, residual, kernel=kernel)
    assert got.dtype == np.uint8
    np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("kernel", KERNELS)
def test_fast_conv_layer_at_the_extremes(kernel):
    """All-255 codes times all -128 weights with zero point 0 (the largest sums) and the
    ResNet-20 shapes 64 x 64 x 3 x 3."""
    rng = np.random.default_rng(0)
    layer = random_layer(rng, 64, 64, 3, 1, 1, False, True, True, (1e-6, 1e-5))
    layer = ir.IntConv(**{**layer.__dict__, "weight": np.full((64, 64, 3, 3), -128, np.int8),
                          "in_zero_point": 0})
    q = np.full((2, 64, 8, 8), 255, np.uint8)
    residual = rng.integers(0, 256, (2, 64, 8, 8), dtype=np.uint8)
    np.testing.assert_array_equal(int8_conv.conv_layer(q, layer, residual, kernel=kernel),
                                  ir.conv_layer(q, layer, residual))


def test_isa_is_named():
    assert int8_conv.int8_isa() in ("amx", "avx512_vnni", "avx512bw", "avx2", "sse2")
    assert (int8_conv.default_kernel() == "avx512_vnni") == (int8_conv.int8_isa() == "avx512_vnni")
    assert (int8_conv.default_kernel() == "amx") == (int8_conv.int8_isa() == "amx")


@njit
def one_step(acc, a, b, out):
    """out[:16] = dpbusd(acc[:16], a[:16], b[:16]), compiled."""
    simd_int8.istore(out, 0, simd_int8.dpbusd(simd_int8.iload(acc, 0), simd_int8.iload(a, 0),
                                              simd_int8.iload(b, 0)))


@needs_vnni
@settings(deadline=None)
@given(seeds)
def test_vpdpbusd_intrinsic_compiles_and_matches_its_python_twin(seed):
    """Pins the operand types this llvmlite accepts for llvm.x86.avx512.vpdpbusd.512."""
    rng = np.random.default_rng(seed)
    acc = rng.integers(-(2**20), 2**20, 16).astype(np.int32)
    a, b = (rng.integers(-(2**31), 2**31, 16).astype(np.int32) for _ in range(2))
    out = np.zeros(16, np.int32)
    one_step(acc, a, b, out)
    np.testing.assert_array_equal(out, simd_int8.dpbusd(acc, a, b))
    ua = a.view(np.uint8).reshape(16, 4).astype(np.int64)
    sb = b.view(np.int8).reshape(16, 4).astype(np.int64)
    np.testing.assert_array_equal(out, acc + (ua * sb).sum(axis=1))
    asm = one_step.inspect_asm(one_step.signatures[0])
    assert "vpdpbusd" in asm


def test_steppable_without_jit():
    """Under NUMBA_DISABLE_JIT=1 every kernel runs as plain Python and still matches (the AMX
    one on its tiles' NumPy twins, where the CPU has AMX)."""
    script = textwrap.dedent("""
        import numpy as np
        from minitorch_compress.kernels import int8_conv, int8_reference as ir
        rng = np.random.default_rng(3)
        k, c = 5, 3
        layer = ir.IntConv(
            weight=rng.integers(0, 8, (k, c, 3, 3)).astype(np.int8),
            bias=rng.integers(-50, 50, k).astype(np.int32),
            scale_a=ir.Requant.from_real(rng.uniform(0.001, 0.01, k)),
            mask=np.ones((k, c, 3, 3), np.uint8),
            scale_b=ir.Requant.from_real(rng.uniform(-0.01, 0.01, k)),
            stride=2, padding=1, in_zero_point=7, out_zero_point=3, relu=True,
            residual_scale=ir.Requant.from_real(np.float64(1.7)), residual_zero_point=9)
        q = rng.integers(0, 256, (1, c, 5, 5), dtype=np.uint8)
        residual = rng.integers(0, 256, (1, k, 3, 3), dtype=np.uint8)
        expected = ir.conv_layer(q, layer, residual)
        from minitorch_compress.kernels.amx import amx_available
        for kernel in ("portable", "avx512_vnni") + (("amx",) if amx_available() else ()):
            got = int8_conv.conv_layer(q, layer, residual, kernel=kernel)
            assert (got == expected).all(), kernel
        x = rng.normal(0, 1, (1, 3, 4, 4))
        assert (int8_conv.quantize_padded(x, 0.1, 5)
                == int8_conv.to_padded(ir.quantize(x, 0.1, 5), 5)).all()
        print("ok")
    """)
    env = {**os.environ, "NUMBA_DISABLE_JIT": "1"}
    result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


@settings(deadline=None)
@given(seeds, st.sampled_from([4, 16]))
def test_padded_codes_hold_the_zero_point_around_the_codes(seed, multiple):
    rng = np.random.default_rng(seed)
    q = rng.integers(0, 256, (2, 5, 3, 4), dtype=np.uint8)
    x = int8_conv.to_padded(q, 17, multiple)
    assert x.shape == (2, 5, 6, multiple * -(-5 // multiple))
    np.testing.assert_array_equal(int8_conv.from_padded(x, 5), q)
    border = np.ones(x.shape[1:3], bool)
    border[1:-1, 1:-1] = False
    assert (x[:, border] == 17).all() and (x[..., 5:] == 17).all()


@settings(deadline=None)
@given(seeds, st.sampled_from([np.float32, np.float64]), st.integers(1, 5))
def test_quantize_padded_equals_quantize_then_pad(seed, dtype, channels):
    """Ties included: with scale 0.5 every quarter is a tie of x / scale (to even)."""
    rng = np.random.default_rng(seed)
    x = (rng.integers(-600, 600, (2, channels, 3, 4)) / 4).astype(dtype)
    zero_point = int(rng.integers(0, 256))
    expected = int8_conv.to_padded(ir.quantize(x, 0.5, zero_point), zero_point)
    np.testing.assert_array_equal(int8_conv.quantize_padded(x, 0.5, zero_point), expected)


@pytest.mark.parametrize("kernel", KERNELS)
def test_a_layer_writes_its_output_zero_point_into_the_border(kernel):
    rng = np.random.default_rng(6)
    layer = random_layer(rng, 5, 20, 3, 2, 1, False, False, True, (1e-3, 0.1))
    x = int8_conv.to_padded(rng.integers(0, 256, (3, 5, 7, 7), dtype=np.uint8),
                            layer.in_zero_point)
    out = int8_conv.conv_padded(x, layer, kernel=kernel)
    assert out.shape == (3, 6, 6, 32)
    inner = np.zeros(out.shape[1:3], bool)
    inner[1:-1, 1:-1] = True
    assert (out[:, ~inner] == layer.out_zero_point).all()


def test_conv_padded_refuses_what_it_cannot_compute():
    rng = np.random.default_rng(7)
    layer = random_layer(rng, 4, 4, 3, 1, 1, False, True, True, (1e-3, 0.1))
    x = int8_conv.to_padded(np.zeros((1, 4, 5, 5), np.uint8), 0)
    with pytest.raises(ValueError, match="residual"):
        int8_conv.conv_padded(x, layer)
    with pytest.raises(ValueError, match="residual"):
        int8_conv.conv_padded(x, layer, np.zeros((1, 6, 6, 16), np.uint8))
    with pytest.raises(ValueError, match="kernel"):
        int8_conv.conv_padded(x, layer, np.zeros((1, 7, 7, 16), np.uint8), kernel="mmx")
    wide = ir.IntConv(**{**layer.__dict__, "padding": 2})
    with pytest.raises(ValueError, match="border"):
        int8_conv.conv_padded(x, wide, np.zeros((1, 9, 9, 16), np.uint8))
    narrow = int8_conv.to_padded(np.zeros((1, 3, 5, 5), np.uint8), 0)[..., :0]
    with pytest.raises(ValueError, match="channels"):
        int8_conv.conv_padded(narrow, layer, np.zeros((1, 7, 7, 16), np.uint8))


def test_the_int32_epilogue_is_chosen_only_where_it_is_exact():
    rng = np.random.default_rng(8)
    small = random_layer(rng, 4, 4, 3, 1, 1, True, True, True, (1e-3, 0.1))
    assert int8_conv.pack(small, 1).bounded
    large = random_layer(rng, 4, 4, 3, 1, 1, False, False, True, (1.5, 3.0))
    assert not int8_conv.pack(large, 1).bounded  # left shifts that may saturate
    huge_b = ir.IntConv(**{**small.__dict__, "scale_b": ir.Requant.from_real(np.full(4, 1e5))})
    assert not int8_conv.pack(huge_b, 1).bounded  # a B term beyond 2^28


def test_fast_conv_layer_refuses_the_one_multiplier_it_does_not_saturate():
    rng = np.random.default_rng(4)
    layer = random_layer(rng, 2, 3, 1, 1, 0, False, False, True, (1e-3, 0.1))
    bad = ir.Requant(np.full(3, ir.INT32_MIN, np.int32), np.zeros(3, np.int32))
    layer = ir.IntConv(**{**layer.__dict__, "scale_a": bad})
    with pytest.raises(ValueError, match="INT32_MIN"):
        int8_conv.conv_layer(np.zeros((1, 2, 3, 3), np.uint8), layer)


def test_packed_weights_are_kept_once_per_layer_and_dropped_with_it():
    rng = np.random.default_rng(5)
    layer = random_layer(rng, 3, 4, 3, 1, 1, True, False, True, (1e-3, 0.1))
    first = int8_conv.packed_weights(layer, 1)
    assert int8_conv.packed_weights(layer, 1) is first
    assert int8_conv.packed_weights(layer, 4) is not first
    key = id(layer)
    del layer
    gc.collect()
    assert not any(other == key for other, _ in int8_conv._PACKED)
