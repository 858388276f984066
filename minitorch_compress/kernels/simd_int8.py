"""Explicit SIMD for integer kernels: 16 int32 lanes in one 512-bit register, and VNNI.

The one instruction this module exists for is AVX-512 VNNI's ``vpdpbusd``: in each of 16
int32 lanes it multiplies 4 unsigned bytes of one operand by the 4 signed bytes of the
other and adds the 4 products to the lane (u8 x s8 -> s32, 64 multiply-adds). A plain
numba integer loop does not reach it (LLVM widens the products to int64), so the kernel
names it through LLVM's intrinsic ``llvm.x86.avx512.vpdpbusd.512``, declared as LLVM 12-19
spelled it, ``<16 x i32> (<16 x i32>, <16 x i32>, <16 x i32>)``; newer LLVM auto-upgrades
that declaration (`tests/test_int8_conv.py` compiles it and checks the result, so a change
of spelling is caught).

The operations (usable from `@njit` code and, for ``NUMBA_DISABLE_JIT=1`` stepping, from
plain Python, where a vector is a (16,) int32 ndarray), as in `kernels/simd.py`:

    iload(a, i)          a.flat[i : i + 16]          (a C-contiguous int32 array)
    istore(a, i, v)      a.flat[i : i + 16] = v
    ibroadcast(s)        [s] * 16                    (s an int32: 4 packed u8 values)
    izero()              [0] * 16
    dpbusd(acc, a, b)    acc + per lane sum_j u8(a)[j] * s8(b)[j], j = 0..3, wrapping int32

Call `dpbusd` only on a CPU with AVX-512 VNNI (`has_avx512_vnni`): elsewhere LLVM cannot
select the instruction. Compiled code does no bounds checks.
"""

from __future__ import annotations

import functools

import numpy as np
from llvmlite import binding, ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic, models, overload, register_model

LANES = 16
_VECTOR = ir.VectorType(ir.IntType(32), LANES)


@functools.cache
def has_avx512_vnni() -> bool:
    """Whether this CPU has AVX-512 VNNI (and AVX-512 BW, which the 512-bit loads need);
    asked once per process (LLVM's feature query costs about half a millisecond)."""
    features = binding.get_host_cpu_features()
    return bool(features.get("avx512vnni") and features.get("avx512bw"))


class _I32x16(types.Type):
    """numba's type of a 16 x int32 vector value."""

    def __init__(self) -> None:
        super().__init__(name="i32x16")


i32x16 = _I32x16()


@register_model(_I32x16)
class _I32x16Model(models.PrimitiveModel):
    """Represented as the LLVM vector itself, so it lives in a register."""

    def __init__(self, dmm, fe_type) -> None:
        super().__init__(dmm, fe_type, _VECTOR)


# ----------------------------------------------------------------------------- plain Python
def iload(a: np.ndarray, i: int) -> np.ndarray:
    """The 16 int32 values a.flat[i : i + 16] as a vector."""
    v = a.reshape(-1)[i:i + LANES]
    if v.size != LANES or i < 0:
        raise IndexError(f"iload: a.flat[{i}:{i + LANES}] is outside an array of {a.size}")
    return v.astype(np.int32)


def istore(a: np.ndarray, i: int, v: np.ndarray) -> None:
    """a.flat[i : i + 16] = v (a must be C-contiguous)."""
    if i < 0 or i + LANES > a.size:
        raise IndexError(f"istore: a.flat[{i}:{i + LANES}] is outside an array of {a.size}")
    a.reshape(-1)[i:i + LANES] = v


def ibroadcast(s) -> np.ndarray:
    """The vector whose 16 lanes are the int32 s."""
    return np.full(LANES, s, np.int32)


def izero() -> np.ndarray:
    """The vector of 16 zeros."""
    return np.zeros(LANES, np.int32)


def dpbusd(acc: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """vpdpbusd: acc + the dot product of each lane's 4 bytes, a unsigned, b signed."""
    ua = np.asarray(a, np.int32).view(np.uint8).reshape(LANES, 4).astype(np.int64)
    sb = np.asarray(b, np.int32).view(np.int8).reshape(LANES, 4).astype(np.int64)
    total = np.asarray(acc, np.int64) + (ua * sb).sum(axis=1)
    return total.astype(np.int32)  # wraps like the instruction (never reached by the convs)


# ----------------------------------------------------------------------------- compiled
def _address(context, builder, array_type, array, index):
    data = context.make_array(array_type)(context, builder, array).data
    return builder.bitcast(builder.gep(data, [index]), _VECTOR.as_pointer())


def _is_int32_array(a) -> bool:
    return isinstance(a, types.Array) and a.dtype == types.int32 and a.layout == "C"


@intrinsic
def _iload(typingctx, a, i):
    if not (_is_int32_array(a) and isinstance(i, types.Integer)):
        return None

    def codegen(context, builder, signature, args):
        index = context.cast(builder, args[1], signature.args[1], types.intp)
        return builder.load(_address(context, builder, signature.args[0], args[0], index),
                            align=4)
    return i32x16(a, i), codegen


@intrinsic
def _istore(typingctx, a, i, v):
    if not (_is_int32_array(a) and isinstance(i, types.Integer) and v == i32x16):
        return None

    def codegen(context, builder, signature, args):
        index = context.cast(builder, args[1], signature.args[1], types.intp)
        builder.store(args[2], _address(context, builder, signature.args[0], args[0], index),
                      align=4)
        return context.get_dummy_value()
    return types.none(a, i, v), codegen


@intrinsic
def _ibroadcast(typingctx, s):
    if not isinstance(s, types.Integer):
        return None

    def codegen(context, builder, signature, args):
        value = context.cast(builder, args[0], signature.args[0], types.int32)
        one = builder.insert_element(ir.Constant(_VECTOR, ir.Undefined), value,
                                     ir.Constant(ir.IntType(32), 0))
        lanes = ir.Constant(ir.VectorType(ir.IntType(32), LANES), [0] * LANES)
        return builder.shuffle_vector(one, ir.Constant(_VECTOR, ir.Undefined), lanes)
    return i32x16(s), codegen


@intrinsic
def _izero(typingctx):
    def codegen(context, builder, signature, args):
        return ir.Constant(_VECTOR, [0] * LANES)
    return i32x16(), codegen


@intrinsic
def _dpbusd(typingctx, acc, a, b):
    if not acc == a == b == i32x16:
        return None

    def codegen(context, builder, signature, args):
        function = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(_VECTOR, [_VECTOR] * 3),
            "llvm.x86.avx512.vpdpbusd.512")
        return builder.call(function, args)
    return i32x16(acc, a, b), codegen


overload(iload)(lambda a, i: lambda a, i: _iload(a, i))
overload(istore)(lambda a, i, v: lambda a, i, v: _istore(a, i, v))
overload(ibroadcast)(lambda s: lambda s: _ibroadcast(s))
overload(izero)(lambda: lambda: _izero())
overload(dpbusd)(lambda acc, a, b: lambda acc, a, b: _dpbusd(acc, a, b))
