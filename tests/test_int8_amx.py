"""AMX tiles from numba (`kernels/amx.py`) and the conv on them (`kernels/int8_amx.py`): the
tile product equals NumPy's integer matmul, compiled and as plain Python, and the conv equals
the NumPy integer reference bit for bit on wide layers (several tile chunks per kernel row,
several passes of output channels, blocks that run on into the next row)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from numba import njit
from strategies import seeds
from test_int8_conv import inputs, random_layer

from minitorch_compress.kernels import amx, int8_amx, int8_conv
from minitorch_compress.kernels import int8_reference as ir

needs_amx = pytest.mark.skipif(not amx.amx_available(), reason="no AMX tiles here")


def tile_product(cfg, a, b, c, k):
    """c = a (M x K u8) times b (K x N s8, VNNI layout), K = k bytes, on tiles 0-2."""
    amx.tile_config(cfg)
    amx.tile_zero(0)
    amx.tile_load(1, a, 0, k)
    amx.tile_load(2, b, 0, b.shape[1])
    amx.tile_dpbusd(0, 1, 2)
    amx.tile_store(0, c, 0, 4 * c.shape[1])
    amx.tile_release()


compiled_tile_product = njit(tile_product)


def vnni_layout(b: np.ndarray) -> np.ndarray:
    """(K, N) s8 -> (K / 4, 4 N): row r holds rows 4r..4r+3 of b, 4 bytes per column."""
    k, n = b.shape
    return np.ascontiguousarray(b.reshape(k // 4, 4, n).transpose(0, 2, 1)).reshape(k // 4, 4 * n)


problems = st.tuples(st.integers(1, 16), st.integers(1, 16), st.integers(1, 16), seeds)


@pytest.mark.parametrize("product", [
    pytest.param(tile_product, id="python"),
    # compiled: pins the tile intrinsics this llvmlite accepts (llvm.x86.tileloadd64, ...)
    pytest.param(compiled_tile_product, id="compiled", marks=needs_amx)])
@settings(deadline=None, max_examples=30)
@given(problems)
def test_the_tile_product_is_numpys_integer_matmul(product, problem):
    m, n, groups, seed = problem
    rng = np.random.default_rng(seed)
    a = rng.integers(0, 256, (m, 4 * groups)).astype(np.uint8)
    b = rng.integers(-128, 128, (4 * groups, n)).astype(np.int8)
    cfg = amx.tile_config_bytes({0: (m, 4 * n), 1: (m, 4 * groups), 2: (groups, 4 * n)})
    c = np.zeros((m, n), np.int32)
    product(cfg, a, vnni_layout(b), c, 4 * groups)
    np.testing.assert_array_equal(c, a.astype(np.int64) @ b.astype(np.int64))


@needs_amx
def test_the_compiled_kernel_uses_the_tile_instructions():
    cfg = amx.tile_config_bytes({0: (16, 64), 1: (16, 64), 2: (16, 64)})
    a, b, c = np.zeros((16, 64), np.uint8), np.zeros((16, 64), np.int8), np.zeros((16, 16),
                                                                                    np.int32)
    compiled_tile_product(cfg, a, b, c, 64)
    asm = compiled_tile_product.inspect_asm(compiled_tile_product.signatures[0])
    for instruction in ("ldtilecfg", "tilezero", "tileloadd", "tdpbusd", "tilestored",
                        "tilerelease"):
        assert instruction in asm


def test_a_tile_configuration_is_64_bytes_of_rows_and_row_widths():
    cfg = amx.tile_config_bytes({0: (16, 64), 5: (3, 12)})
    assert cfg[0] == 1 and cfg[48] == 16 and cfg[53] == 3
    assert cfg[16:48].view("<u2")[0] == 64 and cfg[16:48].view("<u2")[5] == 12
    for bad in ({0: (17, 64)}, {0: (16, 65)}, {0: (16, 6)}, {8: (1, 4)}):
        with pytest.raises(ValueError, match="not a tile"):
            amx.tile_config_bytes(bad)


def test_chunks_and_blocks():
    assert int8_amx.chunk_bytes(3 * 16) == 48  # one chunk per kernel row
    assert int8_amx.chunk_bytes(3 * 64) == 64
    assert int8_amx.chunk_bytes(3 * 32) == 48
    assert int8_amx.chunk_bytes(3 * 4) == 12
    assert int8_amx.chunk_bytes(3 * 80) == 60
    assert int8_amx.block_positions(1, 8, 8, 10) == 16  # the long row of 7 x 10 + 8
    assert int8_amx.block_positions(2, 8, 8, 18) == 8  # one output row
    assert int8_amx.block_positions(1, 1, 3, 5) == 3


wide_problems = st.tuples(
    st.integers(1, 2),  # n
    st.sampled_from([3, 16, 20, 40, 64, 70]),  # c: 1 to 4 chunks per kernel row
    st.sampled_from([5, 16, 40, 64, 70]),  # k: 1 to 3 passes of 64 packed channels (masks)
    st.integers(3, 12), st.integers(3, 20),  # h, w
    st.sampled_from([1, 3]), st.sampled_from([1, 2]), st.integers(0, 1),
    st.booleans(), st.booleans(), st.booleans(),
    st.sampled_from([(1e-6, 1e-4), (1e-3, 0.1), (0.5, 40.0)]),
    seeds)


@needs_amx
@settings(deadline=None, max_examples=60)
@given(wide_problems)
def test_the_amx_conv_equals_the_reference_on_wide_layers(problem):
    q, layer, residual = inputs(problem)
    np.testing.assert_array_equal(int8_conv.conv_layer(q, layer, residual, kernel="amx"),
                                  ir.conv_layer(q, layer, residual))


def test_the_amx_kernel_is_refused_where_the_tiles_are_not(monkeypatch):
    monkeypatch.setattr(int8_conv, "amx_available", lambda: False)
    rng = np.random.default_rng(1)
    layer = random_layer(rng, 4, 4, 3, 1, 1, False, False, True, (1e-3, 0.1))
    x = int8_conv.to_padded(np.zeros((1, 4, 5, 5), np.uint8), layer.in_zero_point)
    with pytest.raises(ValueError, match="AMX"):
        int8_conv.conv_padded(x, layer, kernel="amx")
    assert int8_conv.default_kernel() != "amx" and int8_conv.int8_isa() != "amx"
