"""AMX tiles from numba: the tile registers and ``tdpbusd``, through LLVM's tile intrinsics.

AMX (Advanced Matrix Extensions, Intel Xeon since Sapphire Rapids) adds 8 tile registers
``tmm0``..``tmm7`` of up to 16 rows x 64 bytes and one integer instruction this module
exists for, ``tdpbusd``: C (M x N int32) += A (M x K u8) times B (K x N s8), K <= 64, in
one instruction (16 x 16 x 64 = 16,384 multiply-adds for full tiles, against 64 for
``vpdpbusd``). B is stored in the "VNNI layout": row r of the B tile holds, for each of
its N columns, the 4 bytes of rows 4r..4r+3 of B side by side (4 N bytes a row, K / 4 rows)
-- the layout `kernels/int8_conv.py` already packs its weights in.

The operations (usable from `@njit` code, and for ``NUMBA_DISABLE_JIT=1`` stepping from
plain Python, where the 8 tiles are (16, 64) uint8 arrays of the calling thread):

    tile_config(cfg)            ldtilecfg: cfg, a (64,) uint8 array from `tile_config_bytes`,
                                sets each tile's rows and bytes per row
    tile_zero(t)                tile t = 0
    tile_load(t, a, i, stride)  tile t's row r = the bytes of a (C-contiguous) from element
                                a.flat[i], plus r * stride bytes
    tile_store(t, a, i, stride) the reverse
    tile_dpbusd(c, a, b)        tile c (int32) += tile a (u8) times tile b (s8, VNNI layout)
    tile_release()              tilerelease: the tiles are free again

The tile numbers t, c, a, b must be literal integers (the instructions encode them).

Using the tiles needs the CPU (``amx_tile`` and ``amx_int8``) and, on Linux, the kernel's
permission: a process asks once for the 8 KiB of extra register state each thread then
saves on a context switch (``arch_prctl(ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA)``);
without it the first tile instruction kills the process (SIGILL). `amx_available` checks
both and asks; call the tile operations only where it is True. Compiled code does no
bounds checks.
"""

from __future__ import annotations

import ctypes
import functools
import platform
import sys
import threading

import numpy as np
from llvmlite import binding, ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic, overload

TILES = 8
ROWS = 16  # the most rows of a tile
ROW_BYTES = 64  # the most bytes in a tile's row
_SYS_ARCH_PRCTL = 158  # x86-64 Linux
_ARCH_REQ_XCOMP_PERM = 0x1023
_XFEATURE_XTILEDATA = 18


def request_permission() -> bool:
    """Ask Linux (once per process; asking again is harmless) for the tile data state;
    whether it was granted."""
    if sys.platform != "linux" or platform.machine() != "x86_64":
        return False
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    return libc.syscall(ctypes.c_long(_SYS_ARCH_PRCTL), ctypes.c_long(_ARCH_REQ_XCOMP_PERM),
                        ctypes.c_long(_XFEATURE_XTILEDATA)) == 0


@functools.cache
def amx_available() -> bool:
    """Whether this process may use AMX's integer tiles: the CPU has ``amx_tile`` and
    ``amx_int8`` (as LLVM sees it, so it compiles for them too) and Linux granted the
    permission (asked here, once)."""
    features = binding.get_host_cpu_features()
    return bool(features.get("amx-tile") and features.get("amx-int8")) and request_permission()


def tile_config_bytes(shapes: dict[int, tuple[int, int]]) -> np.ndarray:
    """The 64-byte configuration ldtilecfg reads (palette 1): for each tile t in `shapes`
    its (rows <= 16, bytes per row <= 64, a multiple of 4); the other tiles unused."""
    cfg = np.zeros(64, np.uint8)
    cfg[0] = 1  # palette 1: 8 tiles of up to 16 x 64 bytes
    for tile, (rows, row_bytes) in shapes.items():
        if not (0 <= tile < TILES and 1 <= rows <= ROWS and 4 <= row_bytes <= ROW_BYTES
                and row_bytes % 4 == 0):
            raise ValueError(f"tile {tile}: {rows} rows of {row_bytes} bytes is not a tile")
        cfg[16 + 2 * tile:18 + 2 * tile] = np.array([row_bytes], "<u2").view(np.uint8)
        cfg[48 + tile] = rows
    return cfg


# ----------------------------------------------------------------------------- plain Python
class _PythonTiles(threading.local):
    """The calling thread's tiles and their shapes (each thread has its own, as on the CPU)."""

    def __init__(self) -> None:
        self.data = np.zeros((TILES, ROWS, ROW_BYTES), np.uint8)
        self.shapes: dict[int, tuple[int, int]] | None = None


_python = _PythonTiles()


def _shape(tile: int) -> tuple[int, int]:
    if _python.shapes is None or tile not in _python.shapes:
        raise RuntimeError(f"tile {tile} is not configured (tile_config first)")
    return _python.shapes[tile]


def tile_config(cfg: np.ndarray) -> None:
    """ldtilecfg: take each tile's rows and bytes per row from the 64 bytes of cfg."""
    row_bytes = cfg[16:48].view("<u2")
    _python.shapes = {t: (int(cfg[48 + t]), int(row_bytes[t])) for t in range(TILES)
                      if cfg[48 + t] and row_bytes[t]}
    _python.data[:] = 0


def tile_release() -> None:
    """tilerelease: forget the configuration."""
    _python.shapes = None


def tile_zero(t: int) -> None:
    """Tile t = 0."""
    _shape(t)
    _python.data[t] = 0


def _bytes(a: np.ndarray) -> np.ndarray:
    if not a.flags.c_contiguous:
        raise ValueError("tiles load from and store to C-contiguous arrays")
    return a.reshape(-1).view(np.uint8)


def _rows_span(name: str, t: int, a: np.ndarray, i: int,
               stride: int) -> tuple[int, int, np.ndarray, int]:
    """(rows, bytes a row, a's bytes, first byte) of tile t's rows in a, checked in bounds."""
    rows, row_bytes = _shape(t)
    flat, start = _bytes(a), i * a.itemsize
    if i < 0 or start + (rows - 1) * stride + row_bytes > flat.size:
        raise IndexError(f"{name}: {rows} rows of {row_bytes} bytes every {stride} from "
                         f"byte {start} leave an array of {flat.size} bytes")
    return rows, row_bytes, flat, start


def tile_load(t: int, a: np.ndarray, i: int, stride: int) -> None:
    """Tile t's row r = the bytes of a from a.flat[i] on, plus r * stride bytes."""
    rows, row_bytes, flat, start = _rows_span("tile_load", t, a, i, stride)
    _python.data[t] = 0
    for r in range(rows):
        _python.data[t, r, :row_bytes] = flat[start + r * stride:start + r * stride + row_bytes]


def tile_store(t: int, a: np.ndarray, i: int, stride: int) -> None:
    """The bytes of a from a.flat[i] on, plus r * stride bytes = tile t's row r."""
    rows, row_bytes, flat, start = _rows_span("tile_store", t, a, i, stride)
    for r in range(rows):
        flat[start + r * stride:start + r * stride + row_bytes] = _python.data[t, r, :row_bytes]


def tile_dpbusd(c: int, a: int, b: int) -> None:
    """Tile c (M x N int32) += tile a (M x K u8) times tile b (K / 4 rows of N x 4 s8):
    c[m, n] += sum_{r, j} a[m, 4 r + j] b[r, 4 n + j], wrapping like int32."""
    (m, c_bytes), (_, k_bytes), (b_rows, b_bytes) = _shape(c), _shape(a), _shape(b)
    n = c_bytes // 4
    if k_bytes != 4 * b_rows or b_bytes != c_bytes or _shape(a)[0] != m:
        raise ValueError("tile_dpbusd: the tiles' shapes do not fit together")
    left = _python.data[a, :m, :k_bytes].astype(np.int64).reshape(m, b_rows, 4)
    right = _python.data[b, :b_rows, :b_bytes].view(np.int8).astype(np.int64)
    total = _python.data[c, :m, :c_bytes].view(np.int32).astype(np.int64) + np.einsum(
        "mrj,rnj->mn", left, right.reshape(b_rows, n, 4))
    _python.data[c, :m, :c_bytes] = total.astype(np.int32).view(np.uint8)


# ----------------------------------------------------------------------------- compiled
_I8 = ir.IntType(8)
_I64 = ir.IntType(64)
_BYTE_POINTER = ir.IntType(8).as_pointer()
_VOID = ir.VoidType()


def _call(builder, name: str, arguments: list[ir.Type], values: list[ir.Value]) -> None:
    function = cgutils.get_or_insert_function(builder.module, ir.FunctionType(_VOID, arguments),
                                              name)
    builder.call(function, values)


def _tile_number(t) -> int | None:
    """The literal tile number, or None (then the intrinsic does not apply)."""
    if isinstance(t, types.IntegerLiteral) and 0 <= t.literal_value < TILES:
        return t.literal_value
    return None


def _is_array(a) -> bool:
    return isinstance(a, types.Array) and a.layout == "C"


def _byte_address(context, builder, array_type, array, index):
    data = context.make_array(array_type)(context, builder, array).data
    return builder.bitcast(builder.gep(data, [index]), _BYTE_POINTER)


@intrinsic
def _tile_config(typingctx, cfg):
    if not (_is_array(cfg) and cfg.dtype == types.uint8):
        return None

    def codegen(context, builder, signature, args):
        address = _byte_address(context, builder, signature.args[0], args[0],
                                ir.Constant(ir.IntType(64), 0))
        _call(builder, "llvm.x86.ldtilecfg", [_BYTE_POINTER], [address])
        return context.get_dummy_value()
    return types.none(cfg), codegen


@intrinsic
def _tile_release(typingctx):
    def codegen(context, builder, signature, args):
        _call(builder, "llvm.x86.tilerelease", [], [])
        return context.get_dummy_value()
    return types.none(), codegen


@intrinsic
def _tile_zero(typingctx, t):
    tile = _tile_number(t)
    if tile is None:
        return None

    def codegen(context, builder, signature, args):
        _call(builder, "llvm.x86.tilezero", [_I8], [ir.Constant(_I8, tile)])
        return context.get_dummy_value()
    return types.none(t), codegen


def _tile_move(name: str):
    """The intrinsic of tile_load (llvm.x86.tileloadd64) or tile_store (tilestored64)."""

    def typer(typingctx, t, a, i, stride):
        tile = _tile_number(t)
        if tile is None or not (_is_array(a) and isinstance(i, types.Integer)
                                and isinstance(stride, types.Integer)):
            return None

        def codegen(context, builder, signature, args):
            index = context.cast(builder, args[2], signature.args[2], types.intp)
            step = context.cast(builder, args[3], signature.args[3], types.int64)
            address = _byte_address(context, builder, signature.args[1], args[1], index)
            _call(builder, name, [_I8, _BYTE_POINTER, _I64],
                  [ir.Constant(_I8, tile), address, step])
            return context.get_dummy_value()
        return types.none(t, a, i, stride), codegen
    return intrinsic(typer)


_tile_load = _tile_move("llvm.x86.tileloadd64")
_tile_store = _tile_move("llvm.x86.tilestored64")


@intrinsic
def _tile_dpbusd(typingctx, c, a, b):
    tiles = [_tile_number(t) for t in (c, a, b)]
    if None in tiles:
        return None

    def codegen(context, builder, signature, args):
        _call(builder, "llvm.x86.tdpbusd", [_I8] * 3, [ir.Constant(_I8, t) for t in tiles])
        return context.get_dummy_value()
    return types.none(c, a, b), codegen


# prefer_literal: the tile numbers reach the intrinsics as literals (the instructions
# encode them); inline="always": each becomes part of the kernel's own IR
_OPTIONS = {"inline": "always", "prefer_literal": True}
overload(tile_config, **_OPTIONS)(lambda cfg: lambda cfg: _tile_config(cfg))
overload(tile_release, **_OPTIONS)(lambda: lambda: _tile_release())
overload(tile_zero, **_OPTIONS)(lambda t: lambda t: _tile_zero(t))
overload(tile_load, **_OPTIONS)(lambda t, a, i, stride: lambda t, a, i, stride:
                                _tile_load(t, a, i, stride))
overload(tile_store, **_OPTIONS)(lambda t, a, i, stride: lambda t, a, i, stride:
                                 _tile_store(t, a, i, stride))
overload(tile_dpbusd, **_OPTIONS)(lambda c, a, b: lambda c, a, b: _tile_dpbusd(c, a, b))
