"""Explicit SIMD for numba kernels: a vector of 8 (or 16) float32 values held in one register.

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

Sixteen lanes (`f32x16`): a 512-bit register of AVX-512 CPUs. Where the CPU executes
512-bit operations at full width (Intel cores with AVX-512) one 16-lane FMA does the work of
two 8-lane ones in one slot; where it splits them into two 256-bit halves (AMD Zen 4) it
still needs half the loads and broadcasts per multiply-add. A kernel takes this width only
where the CPU has AVX-512F (`kernels/dispatch.py`): without it LLVM would emulate each
operation with two 8-lane ones and the 32 registers the tiles count on are not there.

The operations (each a function usable from `@njit` code and, for ``NUMBA_DISABLE_JIT=1``
stepping, from plain Python, where a vector is an (8,) or (16,) float32 ndarray):

    vload(a, i)        a.flat[i : i + 8]        (a C-contiguous float32 array)
    vload16(a, i)      a.flat[i : i + 16]
    vstore(a, i, v)    a.flat[i : i + len(v)] = v      (either width)
    vbroadcast(s)      [s] * 8                  vbroadcast16(s): [s] * 16
    vzero()            [0] * 8                  vzero16():       [0] * 16
    vfma(a, b, c)      a * b + c, rounded once  (three vectors of one width)

Compiled code does **no bounds checks**: the caller keeps i + lanes within the array (the
Python versions raise when it does not, so a stepped run finds such a bug).
"""

from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic, models, overload, register_model

LANES = 8
LANES16 = 16


class _F32Vector(types.Type):
    """numba's type of a vector of `lanes` float32 values."""

    def __init__(self, lanes: int) -> None:
        self.lanes = lanes
        super().__init__(name=f"f32x{lanes}")


f32x8 = _F32Vector(LANES)
f32x16 = _F32Vector(LANES16)


@register_model(_F32Vector)
class _F32VectorModel(models.PrimitiveModel):
    """Represented as the LLVM vector itself, so it lives in a register, not in memory."""

    def __init__(self, dmm, fe_type) -> None:
        super().__init__(dmm, fe_type, _ir_vector(fe_type.lanes))


def _ir_vector(lanes: int) -> ir.VectorType:
    return ir.VectorType(ir.FloatType(), lanes)


# ----------------------------------------------------------------------------- plain Python
def _load(a: np.ndarray, i: int, lanes: int) -> np.ndarray:
    v = a.reshape(-1)[i:i + lanes] if i >= 0 else a.reshape(-1)[:0]
    if v.size != lanes:
        raise IndexError(f"vload: a.flat[{i}:{i + lanes}] is outside an array of {a.size}")
    return v.astype(np.float32)


def vload(a: np.ndarray, i: int) -> np.ndarray:
    """The 8 values a.flat[i : i + 8] as a vector."""
    return _load(a, i, LANES)


def vload16(a: np.ndarray, i: int) -> np.ndarray:
    """The 16 values a.flat[i : i + 16] as a vector."""
    return _load(a, i, LANES16)


def vstore(a: np.ndarray, i: int, v: np.ndarray) -> None:
    """a.flat[i : i + len(v)] = v (a must be C-contiguous, so that a.reshape(-1) is a view)."""
    lanes = v.size
    if i < 0 or i + lanes > a.size:
        raise IndexError(f"vstore: a.flat[{i}:{i + lanes}] is outside an array of {a.size}")
    a.reshape(-1)[i:i + lanes] = v


def vbroadcast(s) -> np.ndarray:
    """The vector whose 8 lanes are the scalar s."""
    return np.full(LANES, s, np.float32)


def vbroadcast16(s) -> np.ndarray:
    """The vector whose 16 lanes are the scalar s."""
    return np.full(LANES16, s, np.float32)


def vzero() -> np.ndarray:
    """The vector of 8 zeros."""
    return np.zeros(LANES, np.float32)


def vzero16() -> np.ndarray:
    """The vector of 16 zeros."""
    return np.zeros(LANES16, np.float32)


def vfma(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    """a * b + c lane by lane, rounded once (float64 products of float32 values are exact)."""
    if not a.size == b.size == c.size:
        raise ValueError(f"vfma: vectors of {a.size}, {b.size} and {c.size} lanes")
    return (a.astype(np.float64) * b + c).astype(np.float32)


# ----------------------------------------------------------------------------- compiled
# IR helpers for any element type (`kernels/simd_int8.py` builds its integer vectors with
# them too)
def vector_pointer(context, builder, array_type, array, index, vector_type: ir.VectorType):
    """Pointer to element `index` of the array's data, as a pointer to `vector_type`."""
    data = context.make_array(array_type)(context, builder, array).data
    return builder.bitcast(builder.gep(data, [index]), vector_type.as_pointer())


def broadcast_value(builder, value, vector_type: ir.VectorType) -> ir.Value:
    """The vector of `vector_type` whose lanes all hold the IR scalar `value` (of its
    element type): one insert and one shuffle, which LLVM emits as one broadcast."""
    one = builder.insert_element(ir.Constant(vector_type, ir.Undefined), value,
                                 ir.Constant(ir.IntType(32), 0))
    lanes = ir.Constant(ir.VectorType(ir.IntType(32), vector_type.count),
                        [0] * vector_type.count)
    return builder.shuffle_vector(one, ir.Constant(vector_type, ir.Undefined), lanes)


def is_c_array(a, dtype) -> bool:
    """Whether the numba type `a` is a C-contiguous array of `dtype`."""
    return isinstance(a, types.Array) and a.dtype == dtype and a.layout == "C"


def make_load(vector, dtype):
    """An intrinsic load(a, i): the numba vector type `vector` read from a.flat[i:] of a
    C-contiguous `dtype` array (no bounds check)."""
    @intrinsic
    def load(typingctx, a, i):
        if not (is_c_array(a, dtype) and isinstance(i, types.Integer)):
            return None

        def codegen(context, builder, signature, args):
            index = context.cast(builder, args[1], signature.args[1], types.intp)
            pointer = vector_pointer(context, builder, signature.args[0], args[0], index,
                                     context.get_value_type(vector))
            return builder.load(pointer, align=4)
        return vector(a, i), codegen
    return load


def make_store(dtype, vectors):
    """An intrinsic store(a, i, v): a.flat[i : i + lanes] = v for a C-contiguous `dtype`
    array and v of one of the numba vector types `vectors` (no bounds check)."""
    @intrinsic
    def store(typingctx, a, i, v):
        if not (is_c_array(a, dtype) and isinstance(i, types.Integer) and v in vectors):
            return None

        def codegen(context, builder, signature, args):
            index = context.cast(builder, args[1], signature.args[1], types.intp)
            pointer = vector_pointer(context, builder, signature.args[0], args[0], index,
                                     context.get_value_type(signature.args[2]))
            builder.store(args[2], pointer, align=4)
            return context.get_dummy_value()
        return types.none(a, i, v), codegen
    return store


# float32 shorthands of the helpers above
def _address(context, builder, array_type, array, index, lanes):
    """Pointer to element `index` of the array's data, as a pointer to a vector."""
    return vector_pointer(context, builder, array_type, array, index, _ir_vector(lanes))


def _is_float32_array(a) -> bool:
    return is_c_array(a, types.float32)


def _make_load(vector):
    return make_load(vector, types.float32)


def _make_broadcast(vector):
    @intrinsic
    def broadcast(typingctx, s):
        if not isinstance(s, types.Float | types.Integer):
            return None

        def codegen(context, builder, signature, args):
            value = context.cast(builder, args[0], signature.args[0], types.float32)
            return broadcast_value(builder, value, _ir_vector(vector.lanes))
        return vector(s), codegen
    return broadcast


def _make_zero(vector):
    @intrinsic
    def zero(typingctx):
        def codegen(context, builder, signature, args):
            return ir.Constant(_ir_vector(vector.lanes), [0.0] * vector.lanes)
        return vector(), codegen
    return zero


_vstore = make_store(types.float32, (f32x8, f32x16))


@intrinsic
def _vfma(typingctx, a, b, c):
    if not (isinstance(a, _F32Vector) and a == b == c):
        return None

    def codegen(context, builder, signature, args):
        ir_vector = _ir_vector(a.lanes)
        function = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(ir_vector, [ir_vector] * 3),
            f"llvm.fma.v{a.lanes}f32")
        return builder.call(function, args)
    return a(a, b, c), codegen


_vload, _vload16 = _make_load(f32x8), _make_load(f32x16)
_vbroadcast, _vbroadcast16 = _make_broadcast(f32x8), _make_broadcast(f32x16)
_vzero, _vzero16 = _make_zero(f32x8), _make_zero(f32x16)

# In compiled code each Python function above is replaced by its intrinsic.
overload(vload)(lambda a, i: lambda a, i: _vload(a, i))
overload(vload16)(lambda a, i: lambda a, i: _vload16(a, i))
overload(vstore)(lambda a, i, v: lambda a, i, v: _vstore(a, i, v))
overload(vbroadcast)(lambda s: lambda s: _vbroadcast(s))
overload(vbroadcast16)(lambda s: lambda s: _vbroadcast16(s))
overload(vzero)(lambda: lambda: _vzero())
overload(vzero16)(lambda: lambda: _vzero16())
overload(vfma)(lambda a, b, c: lambda a, b, c: _vfma(a, b, c))


# ----------------------------------------------------------------------------- any width
# A kernel written with these takes its width from a vector it is given (`vzero()` or
# `vzero16()`), so one function serves both widths: numba compiles it once per vector type.
def vload_like(v: np.ndarray, a: np.ndarray, i: int) -> np.ndarray:
    """The len(v) values a.flat[i : i + len(v)] as a vector of v's width."""
    return _load(a, i, v.size)


def vbroadcast_like(v: np.ndarray, s) -> np.ndarray:
    """The vector of v's width whose lanes are the scalar s."""
    return np.full(v.size, s, np.float32)


def _make_like(load, broadcast):
    """`vload_like` / `vbroadcast_like` in compiled code: the intrinsic of v's width."""
    def load_like(v, a, i):
        if isinstance(v, _F32Vector):
            chosen = load[v.lanes]
            return lambda v, a, i: chosen(a, i)
        return None

    def broadcast_like(v, s):
        if isinstance(v, _F32Vector):
            chosen = broadcast[v.lanes]
            return lambda v, s: chosen(s)
        return None
    return load_like, broadcast_like


_load_like, _broadcast_like = _make_like({LANES: _vload, LANES16: _vload16},
                                         {LANES: _vbroadcast, LANES16: _vbroadcast16})
overload(vload_like)(_load_like)
overload(vbroadcast_like)(_broadcast_like)


# ----------------------------------------------------------------------------- deinterleave
# Even and odd lanes of two vectors: the stride-2 sparse conv packs each input row as its
# even columns, then its odd ones (`sparse_conv._pack_phases`), where a strided copy took a
# fifth of a 65 %-sparse 16->32 conv's time. One `vpermps`/`vpermt2ps` per result on AVX-512.
def _pick(a: np.ndarray, b: np.ndarray, first: int) -> np.ndarray:
    if a.size != b.size:
        raise ValueError(f"veven/vodd: vectors of {a.size} and {b.size} lanes")
    return np.concatenate((a, b))[first::2].astype(np.float32)


def veven(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Lanes 0, 2, 4, ... of the 2L values a then b (a vector of L lanes, like a and b)."""
    return _pick(a, b, 0)


def vodd(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Lanes 1, 3, 5, ... of the 2L values a then b (a vector of L lanes, like a and b)."""
    return _pick(a, b, 1)


def _make_pick(first: int):
    @intrinsic
    def pick(typingctx, a, b):
        if not (isinstance(a, _F32Vector) and a == b):
            return None

        def codegen(context, builder, signature, args):
            lanes = ir.Constant(ir.VectorType(ir.IntType(32), a.lanes),
                                list(range(first, 2 * a.lanes, 2)))
            return builder.shuffle_vector(args[0], args[1], lanes)
        return a(a, b), codegen
    return pick


_veven, _vodd = _make_pick(0), _make_pick(1)
overload(veven)(lambda a, b: lambda a, b: _veven(a, b))
overload(vodd)(lambda a, b: lambda a, b: _vodd(a, b))
