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
    ibroadcast_at(a, i)  [a.flat[i]] * 16            (one load, no index check)
    izero()              [0] * 16
    dpbusd(acc, a, b)    acc + per lane sum_j u8(a)[j] * s8(b)[j], j = 0..3, wrapping int32
    dpbusd_portable(acc, a, b)
                         the same sums from plain vector IR (bytes widened to int32,
                         multiplied, added in fours), which LLVM lowers to any x86-64 CPU
    iadd(a, b)           a + b, wrapping int32
    ishl(a, b)           a << b lane by lane (b in [0, 31]), wrapping int32
    requantize(acc, multiplier, left, right)
                         `int8_reference.requantize` lane by lane (shift = right - left,
                         left = max(-shift, 0), right = max(shift, 0); multiplier never
                         INT32_MIN, its one saturating case)
    requantize_below_one(acc, multiplier, right)
                         the same for multipliers below 1 (left = 0: no saturating shift)
    clamp_sum(a, b, c, base, low, high)
                         clip(base + a + b + c, low, high) summed in 64 bits (no overflow;
                         base, low, high: int scalars)
    clamp_sum_bounded(a, b, c, base, low, high)
                         the same in int32, a clipped to +-2^29 first: equal to clamp_sum
                         wherever |b| + |c| < 2^28 and base, low, high are in [0, 255]
    iload_u8(a, i)       the 16 bytes a[i : i + 16] (a C-contiguous uint8 array), as int32
    istore_u8(a, i, v)   a[i : i + 16] = v, each lane's low byte (v's lanes in [0, 255])

Call `dpbusd` only on a CPU with AVX-512 VNNI (`has_avx512_vnni`): elsewhere LLVM cannot
select the instruction. The other operations are plain LLVM vector IR (AVX-512F lowers
`requantize`'s 32 x 32 -> 64-bit products to ``vpmuldq``). Compiled code does no bounds
checks.
"""

from __future__ import annotations

import functools

import numpy as np
from llvmlite import binding, ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic, models, overload, register_model

from minitorch_compress.kernels import int8_reference
from minitorch_compress.kernels.simd import (
    broadcast_value,
    is_c_array,
    make_load,
    make_store,
    vector_pointer,
)

LANES = 16
_I32 = ir.IntType(32)
_I64 = ir.IntType(64)
_VECTOR = ir.VectorType(_I32, LANES)
_WIDE = ir.VectorType(_I64, LANES)
_PAIRS = ir.VectorType(_I64, LANES // 2)  # the 16 lanes as 8 pairs
_BYTES = ir.VectorType(ir.IntType(8), LANES)


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


def ibroadcast_at(a: np.ndarray, i: int) -> np.ndarray:
    """The vector whose 16 lanes are a.flat[i] (a C-contiguous int32 array)."""
    if not 0 <= i < a.size:
        raise IndexError(f"ibroadcast_at: a.flat[{i}] is outside an array of {a.size}")
    return np.full(LANES, a.reshape(-1)[i], np.int32)


def izero() -> np.ndarray:
    """The vector of 16 zeros."""
    return np.zeros(LANES, np.int32)


def dpbusd(acc: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """vpdpbusd: acc + the dot product of each lane's 4 bytes, a unsigned, b signed."""
    ua = np.asarray(a, np.int32).view(np.uint8).reshape(LANES, 4).astype(np.int64)
    sb = np.asarray(b, np.int32).view(np.int8).reshape(LANES, 4).astype(np.int64)
    total = np.asarray(acc, np.int64) + (ua * sb).sum(axis=1)
    return total.astype(np.int32)  # wraps like the instruction (never reached by the convs)


def iadd(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """a + b lane by lane, wrapping like int32."""
    return (np.asarray(a, np.int64) + np.asarray(b, np.int64)).astype(np.int32)


def ishl(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """a << b lane by lane, wrapping like int32."""
    shifted = np.asarray(a, np.int64) << np.asarray(b, np.int64)
    return ((shifted + 2**31) % 2**32 - 2**31).astype(np.int32)


def requantize(acc: np.ndarray, multiplier: np.ndarray, left: np.ndarray,
               right: np.ndarray) -> np.ndarray:
    """`int8_reference.requantize` of 16 lanes: acc * multiplier * 2^-(31 + right - left)."""
    shift = np.asarray(right, np.int64) - np.asarray(left, np.int64)
    return int8_reference.requantize(acc, multiplier, shift).astype(np.int32)


def requantize_below_one(acc: np.ndarray, multiplier: np.ndarray,
                         right: np.ndarray) -> np.ndarray:
    """`requantize` with left = 0 (every multiplier below 1): no saturating left shift."""
    return requantize(acc, multiplier, np.zeros(LANES, np.int32), right)


def clamp_sum_bounded(a: np.ndarray, b: np.ndarray, c: np.ndarray, base, low,
                      high) -> np.ndarray:
    """clip(base + clip(a, -2^29, 2^29) + b + c, low, high) in int32: `clamp_sum`'s result
    wherever |b| + |c| < 2^28 and 0 <= base, low, high <= 255 (then the int32 sum cannot
    overflow, and an a beyond 2^29 in size puts both sums on the same side of the clip)."""
    total = (base + np.clip(np.asarray(a, np.int64), -(2**29), 2**29)
             + np.asarray(b, np.int64) + np.asarray(c, np.int64))
    return np.clip(total, low, high).astype(np.int32)


def clamp_sum(a: np.ndarray, b: np.ndarray, c: np.ndarray, base, low, high) -> np.ndarray:
    """clip(base + a + b + c, low, high) lane by lane, the sum exact (64 bits)."""
    total = base + np.asarray(a, np.int64) + np.asarray(b, np.int64) + np.asarray(c, np.int64)
    return np.clip(total, low, high).astype(np.int32)


def dpbusd_portable(acc: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """`dpbusd`'s arithmetic (compiled, it runs on any CPU)."""
    return dpbusd(acc, a, b)


def iload_u8(a: np.ndarray, i: int) -> np.ndarray:
    """The 16 bytes a.flat[i : i + 16] of a uint8 array, one per int32 lane."""
    v = a.reshape(-1)[i:i + LANES]
    if v.size != LANES or i < 0:
        raise IndexError(f"iload_u8: a.flat[{i}:{i + LANES}] is outside an array of {a.size}")
    return v.astype(np.int32)


def istore_u8(a: np.ndarray, i: int, v: np.ndarray) -> None:
    """a.flat[i : i + 16] = v for a uint8 array; every lane of v must be in [0, 255]."""
    v = np.asarray(v)
    if i < 0 or i + LANES > a.size:
        raise IndexError(f"istore_u8: a.flat[{i}:{i + LANES}] is outside an array of {a.size}")
    if v.min() < 0 or v.max() > 255:
        raise ValueError("istore_u8: a lane is outside [0, 255]")
    a.reshape(-1)[i:i + LANES] = v


# ----------------------------------------------------------------------------- compiled
def _is_int32_array(a) -> bool:
    return is_c_array(a, types.int32)


def _is_uint8_array(a) -> bool:
    return is_c_array(a, types.uint8)


def _splat(value: int, vector_type: ir.VectorType) -> ir.Constant:
    return ir.Constant(vector_type, [value] * vector_type.count)


def _select_min(builder, a, b):
    return builder.select(builder.icmp_signed("<", a, b), a, b)


def _select_max(builder, a, b):
    return builder.select(builder.icmp_signed(">", a, b), a, b)


_iload = make_load(i32x16, types.int32)
_istore = make_store(types.int32, (i32x16,))


@intrinsic
def _ibroadcast(typingctx, s):
    if not isinstance(s, types.Integer):
        return None

    def codegen(context, builder, signature, args):
        value = context.cast(builder, args[0], signature.args[0], types.int32)
        return broadcast_value(builder, value, _VECTOR)
    return i32x16(s), codegen


@intrinsic
def _ibroadcast_at(typingctx, a, i):
    if not (_is_int32_array(a) and isinstance(i, types.Integer)):
        return None

    def codegen(context, builder, signature, args):
        index = context.cast(builder, args[1], signature.args[1], types.intp)
        data = context.make_array(signature.args[0])(context, builder, args[0]).data
        return broadcast_value(builder, builder.load(builder.gep(data, [index]), align=4),
                               _VECTOR)
    return i32x16(a, i), codegen


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


@intrinsic
def _iadd(typingctx, a, b):
    if not a == b == i32x16:
        return None

    def codegen(context, builder, signature, args):
        return builder.add(*args)
    return i32x16(a, b), codegen


def _requantize_ir(builder, acc, multiplier, left, right):
    """The IR of `requantize`; left None: no left shift (a multiplier below 1)."""
    if left is not None:
        # the saturating left shift (|M| >= 1) in int32: where shifting back does not give
        # acc, bits were lost and the result saturates to acc's side
        shifted = builder.shl(acc, left)
        lost = builder.icmp_signed("!=", builder.ashr(shifted, left), acc)
        saturated = builder.select(builder.icmp_signed("<", acc, _splat(0, _VECTOR)),
                                   _splat(-(2**31), _VECTOR), _splat(2**31 - 1, _VECTOR))
        acc = builder.select(lost, saturated, shifted)
    # SRDHM: the 64-bit product of two int32, nudged by 2^30 (1 - 2^30 below 0) and
    # divided by 2^31 toward zero, which for every product equals
    # floor((product + 2^30) / 2^31): one add and one shift. The 16 products are made in
    # place, as vpmuldq does them: the even lanes from the low halves of 8 64-bit lanes,
    # the odd ones from the high halves; bits 31..62 of each sum are the result, moved
    # into the even lane's low half (>> 31) or the odd lane's high half (<< 1)
    thirty_two = _splat(32, _PAIRS)
    acc_pairs, multiplier_pairs = (builder.bitcast(v, _PAIRS) for v in (acc, multiplier))
    even = builder.mul(*(builder.ashr(builder.shl(v, thirty_two), thirty_two)
                         for v in (acc_pairs, multiplier_pairs)))
    odd = builder.mul(*(builder.ashr(v, thirty_two) for v in (acc_pairs, multiplier_pairs)))
    nudge = _splat(2**30, _PAIRS)
    even = builder.bitcast(builder.lshr(builder.add(even, nudge), _splat(31, _PAIRS)), _VECTOR)
    odd = builder.bitcast(builder.shl(builder.add(odd, nudge), _splat(1, _PAIRS)), _VECTOR)
    high = builder.select(ir.Constant(ir.VectorType(ir.IntType(1), LANES),
                                      [lane % 2 == 1 for lane in range(LANES)]), odd, even)
    # RoundingDivideByPOT(high, right): ties away from zero
    mask = builder.sub(builder.shl(_splat(1, _VECTOR), right), _splat(1, _VECTOR))
    remainder = builder.and_(high, mask)
    threshold = builder.add(builder.lshr(mask, _splat(1, _VECTOR)), builder.zext(
        builder.icmp_signed("<", high, _splat(0, _VECTOR)), _VECTOR))
    up = builder.zext(builder.icmp_signed(">", remainder, threshold), _VECTOR)
    return builder.add(builder.ashr(high, right), up)


@intrinsic
def _ishl(typingctx, a, b):
    if not a == b == i32x16:
        return None

    def codegen(context, builder, signature, args):
        return builder.shl(*args)
    return i32x16(a, b), codegen


@intrinsic
def _requantize(typingctx, acc, multiplier, left, right):
    if not acc == multiplier == left == right == i32x16:
        return None

    def codegen(context, builder, signature, args):
        return _requantize_ir(builder, *args)
    return i32x16(acc, multiplier, left, right), codegen


@intrinsic
def _requantize_below_one(typingctx, acc, multiplier, right):
    if not acc == multiplier == right == i32x16:
        return None

    def codegen(context, builder, signature, args):
        acc, multiplier, right = args
        return _requantize_ir(builder, acc, multiplier, None, right)
    return i32x16(acc, multiplier, right), codegen


@intrinsic
def _clamp_sum_bounded(typingctx, a, b, c, base, low, high):
    if not (a == b == c == i32x16 and all(isinstance(s, types.Integer)
                                          for s in (base, low, high))):
        return None

    def codegen(context, builder, signature, args):
        base, low, high = (
            broadcast_value(builder, context.cast(builder, value, kind, types.int32), _VECTOR)
            for value, kind in zip(args[3:], signature.args[3:], strict=True))
        a = _select_min(builder, _select_max(builder, args[0], _splat(-(2**29), _VECTOR)),
                        _splat(2**29, _VECTOR))
        total = builder.add(builder.add(builder.add(base, a), args[1]), args[2])
        return _select_min(builder, _select_max(builder, total, low), high)
    return i32x16(a, b, c, base, low, high), codegen


@intrinsic
def _clamp_sum(typingctx, a, b, c, base, low, high):
    if not (a == b == c == i32x16 and all(isinstance(s, types.Integer)
                                          for s in (base, low, high))):
        return None

    def codegen(context, builder, signature, args):
        base, low, high = (
            builder.sext(broadcast_value(builder, context.cast(builder, value, kind, types.int32),
                                         _VECTOR), _WIDE)
            for value, kind in zip(args[3:], signature.args[3:], strict=True))
        total = base
        for term in args[:3]:
            total = builder.add(total, builder.sext(term, _WIDE))
        clipped = _select_min(builder, _select_max(builder, total, low), high)
        return builder.trunc(clipped, _VECTOR)
    return i32x16(a, b, c, base, low, high), codegen


_BYTES64 = ir.VectorType(ir.IntType(8), 4 * LANES)
_I32X64 = ir.VectorType(_I32, 4 * LANES)


@intrinsic
def _dpbusd_portable(typingctx, acc, a, b):
    if not acc == a == b == i32x16:
        return None

    def codegen(context, builder, signature, args):
        acc, a, b = args
        products = builder.mul(builder.zext(builder.bitcast(a, _BYTES64), _I32X64),
                               builder.sext(builder.bitcast(b, _BYTES64), _I32X64))
        total = acc
        for j in range(4):  # byte j of every lane
            lanes = ir.Constant(_VECTOR, [4 * lane + j for lane in range(LANES)])
            total = builder.add(total, builder.shuffle_vector(
                products, ir.Constant(_I32X64, ir.Undefined), lanes))
        return total
    return i32x16(acc, a, b), codegen


def _byte_address(context, builder, array_type, array, index):
    """Pointer to element `index` of a uint8 array's data, as a pointer to 16 bytes."""
    return vector_pointer(context, builder, array_type, array, index, _BYTES)


@intrinsic
def _iload_u8(typingctx, a, i):
    if not (_is_uint8_array(a) and isinstance(i, types.Integer)):
        return None

    def codegen(context, builder, signature, args):
        index = context.cast(builder, args[1], signature.args[1], types.intp)
        raw = builder.load(_byte_address(context, builder, signature.args[0], args[0], index),
                           align=1)
        return builder.zext(raw, _VECTOR)
    return i32x16(a, i), codegen


@intrinsic
def _istore_u8(typingctx, a, i, v):
    if not (_is_uint8_array(a) and isinstance(i, types.Integer) and v == i32x16):
        return None

    def codegen(context, builder, signature, args):
        index = context.cast(builder, args[1], signature.args[1], types.intp)
        builder.store(builder.trunc(args[2], _BYTES),
                      _byte_address(context, builder, signature.args[0], args[0], index),
                      align=1)
        return context.get_dummy_value()
    return types.none(a, i, v), codegen


# inline="always": each operation becomes part of the kernel's own IR (LLVM's inliner
# alone left the larger ones, requantize, as calls in a kernel with many of them)
_INLINE = {"inline": "always"}
overload(iload, **_INLINE)(lambda a, i: lambda a, i: _iload(a, i))
overload(istore, **_INLINE)(lambda a, i, v: lambda a, i, v: _istore(a, i, v))
overload(ibroadcast, **_INLINE)(lambda s: lambda s: _ibroadcast(s))
overload(izero, **_INLINE)(lambda: lambda: _izero())
overload(ibroadcast_at, **_INLINE)(lambda a, i: lambda a, i: _ibroadcast_at(a, i))
overload(dpbusd, **_INLINE)(lambda acc, a, b: lambda acc, a, b: _dpbusd(acc, a, b))
overload(dpbusd_portable, **_INLINE)(
    lambda acc, a, b: lambda acc, a, b: _dpbusd_portable(acc, a, b))
overload(iadd, **_INLINE)(lambda a, b: lambda a, b: _iadd(a, b))
overload(ishl, **_INLINE)(lambda a, b: lambda a, b: _ishl(a, b))
overload(requantize, **_INLINE)(
    lambda acc, multiplier, left, right:
    lambda acc, multiplier, left, right: _requantize(acc, multiplier, left, right))
overload(requantize_below_one, **_INLINE)(
    lambda acc, multiplier, right:
    lambda acc, multiplier, right: _requantize_below_one(acc, multiplier, right))
overload(clamp_sum_bounded, **_INLINE)(
    lambda a, b, c, base, low, high:
    lambda a, b, c, base, low, high: _clamp_sum_bounded(a, b, c, base, low, high))
overload(clamp_sum, **_INLINE)(
    lambda a, b, c, base, low, high:
    lambda a, b, c, base, low, high: _clamp_sum(a, b, c, base, low, high))
overload(iload_u8, **_INLINE)(lambda a, i: lambda a, i: _iload_u8(a, i))
overload(istore_u8, **_INLINE)(lambda a, i, v: lambda a, i, v: _istore_u8(a, i, v))
