"""Explicit SIMD for numba kernels: a vector of 8 float32 values held in one register.

Why. LLVM vectorises a loop by itself only along its innermost index, and keeps a sum in a
register only while it can prove that no store touches it. A convolution tile that keeps
16 running sums (4 output channels x 4 vectors of 8 positions, `direct_conv_tiled.py`) in
registers across its whole reduction is out of reach that way. Here a vector is a numba
value like an int (an LLVM ``<8 x float>`` in SSA form), so a kernel can keep as many as the
CPU has registers for, and LLVM emits one instruction per operation below (e.g.
``vfmadd231ps mem{1to8}, ymm, ymm``: a broadcast weight times 8 inputs added into a sum).

Eight lanes: a 256-bit register, which every x86-64 CPU with AVX2 has. On AVX-512 CPUs with
256-bit datapaths (AMD Zen 4) two 8-lane operations issue per cycle, the same throughput as
one 16-lane one, and LLVM may use all 32 registers. Elsewhere LLVM lowers the same IR to
what the CPU has (slower, still correct).

The operations (each a function usable from `@njit` code and, for ``NUMBA_DISABLE_JIT=1``
stepping, from plain Python, where a vector is a (8,) float32 ndarray):

    vload(a, i)        a.flat[i : i + 8]        (a C-contiguous float32 array)
    vstore(a, i, v)    a.flat[i : i + 8] = v
    vbroadcast(s)      [s] * 8
    vzero()            [0] * 8
    vfma(a, b, c)      a * b + c, rounded once

Compiled code does **no bounds checks**: the caller keeps i + 8 within the array (the
Python versions raise when it does not, so a stepped run finds such a bug).
"""

from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic, models, overload, register_model

LANES = 8
_VECTOR = ir.VectorType(ir.FloatType(), LANES)


class _F32x8(types.Type):
    """numba's type of an 8 x float32 vector value."""

    def __init__(self) -> None:
        super().__init__(name="f32x8")


f32x8 = _F32x8()


@register_model(_F32x8)
class _F32x8Model(models.PrimitiveModel):
    """Represented as the LLVM vector itself, so it lives in a register, not in memory."""

    def __init__(self, dmm, fe_type) -> None:
        super().__init__(dmm, fe_type, _VECTOR)


# ----------------------------------------------------------------------------- plain Python
def vload(a: np.ndarray, i: int) -> np.ndarray:
    """The 8 values a.flat[i : i + 8] as a vector."""
    v = a.reshape(-1)[i:i + LANES]
    if v.size != LANES:
        raise IndexError(f"vload: a.flat[{i}:{i + LANES}] is outside an array of {a.size}")
    return v.astype(np.float32)


def vstore(a: np.ndarray, i: int, v: np.ndarray) -> None:
    """a.flat[i : i + 8] = v (a must be C-contiguous, so that a.reshape(-1) is a view)."""
    if i < 0 or i + LANES > a.size:
        raise IndexError(f"vstore: a.flat[{i}:{i + LANES}] is outside an array of {a.size}")
    a.reshape(-1)[i:i + LANES] = v


def vbroadcast(s) -> np.ndarray:
    """The vector whose 8 lanes are the scalar s."""
    return np.full(LANES, s, np.float32)


def vzero() -> np.ndarray:
    """The vector of 8 zeros."""
    return np.zeros(LANES, np.float32)


def vfma(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    """a * b + c lane by lane, rounded once (float64 products of float32 values are exact)."""
    return (a.astype(np.float64) * b + c).astype(np.float32)


# ----------------------------------------------------------------------------- compiled
def _address(context, builder, array_type, array, index):
    """Pointer to element `index` of the array's data, as a pointer to a vector."""
    data = context.make_array(array_type)(context, builder, array).data
    return builder.bitcast(builder.gep(data, [index]), _VECTOR.as_pointer())


def _is_float32_array(a) -> bool:
    return isinstance(a, types.Array) and a.dtype == types.float32 and a.layout == "C"


@intrinsic
def _vload(typingctx, a, i):
    if not (_is_float32_array(a) and isinstance(i, types.Integer)):
        return None

    def codegen(context, builder, signature, args):
        index = context.cast(builder, args[1], signature.args[1], types.intp)
        return builder.load(_address(context, builder, signature.args[0], args[0], index),
                            align=4)
    return f32x8(a, i), codegen


@intrinsic
def _vstore(typingctx, a, i, v):
    if not (_is_float32_array(a) and isinstance(i, types.Integer) and v == f32x8):
        return None

    def codegen(context, builder, signature, args):
        index = context.cast(builder, args[1], signature.args[1], types.intp)
        builder.store(args[2], _address(context, builder, signature.args[0], args[0], index),
                      align=4)
        return context.get_dummy_value()
    return types.none(a, i, v), codegen


@intrinsic
def _vbroadcast(typingctx, s):
    if not isinstance(s, types.Float | types.Integer):
        return None

    def codegen(context, builder, signature, args):
        value = context.cast(builder, args[0], signature.args[0], types.float32)
        one = builder.insert_element(ir.Constant(_VECTOR, ir.Undefined), value,
                                     ir.Constant(ir.IntType(32), 0))
        lanes = ir.Constant(ir.VectorType(ir.IntType(32), LANES), [0] * LANES)
        return builder.shuffle_vector(one, ir.Constant(_VECTOR, ir.Undefined), lanes)
    return f32x8(s), codegen


@intrinsic
def _vzero(typingctx):
    def codegen(context, builder, signature, args):
        return ir.Constant(_VECTOR, [0.0] * LANES)
    return f32x8(), codegen


@intrinsic
def _vfma(typingctx, a, b, c):
    if not a == b == c == f32x8:
        return None

    def codegen(context, builder, signature, args):
        function = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(_VECTOR, [_VECTOR] * 3), f"llvm.fma.v{LANES}f32")
        return builder.call(function, args)
    return f32x8(a, b, c), codegen


# In compiled code each Python function above is replaced by its intrinsic.
overload(vload)(lambda a, i: lambda a, i: _vload(a, i))
overload(vstore)(lambda a, i, v: lambda a, i, v: _vstore(a, i, v))
overload(vbroadcast)(lambda s: lambda s: _vbroadcast(s))
overload(vzero)(lambda: lambda: _vzero())
overload(vfma)(lambda a, b, c: lambda a, b, c: _vfma(a, b, c))
