"""Differentiable ops as plain functions over Tensors.

Each function here is a thin wrapper around one `Function` subclass (in the module named in
its docstring), where forward and backward sit side by side.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from minitorch_compress.autograd.tensor import Tensor
from minitorch_compress.ops.conv import Conv2d
from minitorch_compress.ops.elementwise import (
    Add,
    Div,
    Exp,
    Log,
    Mul,
    MulMask,
    Neg,
    Pow,
    ReLU,
    Sub,
)
from minitorch_compress.ops.losses import CrossEntropy, LogSoftmax
from minitorch_compress.ops.matmul import MatMul
from minitorch_compress.ops.normalization import AddReLU, BatchNorm2d
from minitorch_compress.ops.pooling import GlobalAvgPool2d
from minitorch_compress.ops.reductions import Mean, Sum
from minitorch_compress.ops.shape import Permute, Reshape


def add(a: Any, b: Any) -> Tensor:
    """a + b with broadcasting (elementwise.Add)."""
    return Add.apply(a, b)


def sub(a: Any, b: Any) -> Tensor:
    """a - b with broadcasting (elementwise.Sub)."""
    return Sub.apply(a, b)


def mul(a: Any, b: Any) -> Tensor:
    """a * b with broadcasting (elementwise.Mul)."""
    return Mul.apply(a, b)


def div(a: Any, b: Any) -> Tensor:
    """a / b with broadcasting (elementwise.Div)."""
    return Div.apply(a, b)


def neg(a: Any) -> Tensor:
    """-a (elementwise.Neg)."""
    return Neg.apply(a)


def pow(a: Any, exponent: float) -> Tensor:  # noqa: A001 - mirrors Tensor.__pow__
    """a ** exponent for a constant scalar exponent (elementwise.Pow)."""
    return Pow.apply(a, exponent=float(exponent))


def exp(a: Any) -> Tensor:
    """e ** a (elementwise.Exp)."""
    return Exp.apply(a)


def log(a: Any) -> Tensor:
    """Natural log (elementwise.Log)."""
    return Log.apply(a)


def relu(a: Any) -> Tensor:
    """max(a, 0) (elementwise.ReLU)."""
    return ReLU.apply(a)


def mul_mask(a: Tensor, mask: np.ndarray) -> Tensor:
    """a * mask for a constant 0/1 mask of a's shape; gradient is masked too (MulMask)."""
    return MulMask.apply(a, mask=np.asarray(mask, dtype=a.dtype))


def matmul(a: Any, b: Any) -> Tensor:
    """a (..., n, k) @ b (..., k, m) -> (..., n, m) (matmul.MatMul)."""
    return MatMul.apply(a, b)


def sum(a: Tensor, axis=None, keepdims: bool = False) -> Tensor:  # noqa: A001
    """Sum over `axis` (all axes if None) (reductions.Sum)."""
    return Sum.apply(a, axis=axis, keepdims=keepdims)


def mean(a: Tensor, axis=None, keepdims: bool = False) -> Tensor:
    """Mean over `axis` (all axes if None) (reductions.Mean)."""
    return Mean.apply(a, axis=axis, keepdims=keepdims)


def reshape(a: Tensor, shape: tuple[int, ...]) -> Tensor:
    """View with a new shape (shape.Reshape)."""
    return Reshape.apply(a, shape=tuple(shape))


def permute(a: Tensor, axes: tuple[int, ...]) -> Tensor:
    """Reorder axes like numpy.transpose (shape.Permute)."""
    return Permute.apply(a, axes=tuple(axes))


def transpose(a: Tensor, axis0: int = 0, axis1: int = 1) -> Tensor:
    """Swap two axes (shape.Permute)."""
    axes = list(range(a.ndim))
    axes[axis0], axes[axis1] = axes[axis1], axes[axis0]
    return permute(a, tuple(axes))


def flatten(a: Tensor, start_dim: int = 1) -> Tensor:
    """Merge axes start_dim.. into one: (N, C, H, W) -> (N, C*H*W) by default."""
    return reshape(a, a.shape[:start_dim] + (-1,))


def log_softmax(logits: Tensor, axis: int = -1) -> Tensor:
    """log(softmax(logits)) along `axis`, computed stably (losses.LogSoftmax)."""
    return LogSoftmax.apply(logits, axis=axis)


def cross_entropy(logits: Tensor, labels: np.ndarray) -> Tensor:
    """Mean softmax cross-entropy: logits (N, K), integer labels (N,) -> scalar."""
    return CrossEntropy.apply(logits, labels=np.asarray(labels))


def conv2d(x: Tensor, weight: Tensor, bias: Tensor | None = None, stride: int = 1,
           padding: int = 0) -> Tensor:
    """x (N, C, H, W) conv weight (K, C, kh, kw) [+ bias (K,)] -> (N, K, Ho, Wo) (conv.Conv2d)."""
    if bias is None:
        return Conv2d.apply(x, weight, stride=stride, padding=padding)
    return Conv2d.apply(x, weight, bias, stride=stride, padding=padding)


def batch_norm2d(x: Tensor, gamma: Tensor, beta: Tensor, running_mean: np.ndarray,
                 running_var: np.ndarray, training: bool, momentum: float = 0.1,
                 eps: float = 1e-5, relu: bool = False) -> Tensor:
    """Batch norm of x (N, C, H, W) with per-channel gamma/beta (C,); see normalization.py.

    In training mode `running_mean` / `running_var` (C,) are updated in place.
    """
    return BatchNorm2d.apply(
        x, gamma, beta, running_mean=running_mean, running_var=running_var,
        training=training, momentum=momentum, eps=eps, relu=relu,
    )


def add_relu(a: Tensor, b: Tensor) -> Tensor:
    """max(a + b, 0) in one pass, same-shape inputs (normalization.AddReLU)."""
    return AddReLU.apply(a, b)


def global_avg_pool2d(x: Tensor) -> Tensor:
    """Mean over H and W: (N, C, H, W) -> (N, C) (pooling.GlobalAvgPool2d)."""
    return GlobalAvgPool2d.apply(x)
