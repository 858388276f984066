"""Elementwise ops: arithmetic, exp/log, ReLU and the constant-mask multiply.

Broadcasting is allowed in binary ops; their backward returns gradients of the broadcast
shape and the engine sums them back to each input's shape.
"""

from __future__ import annotations

import numpy as np

from minitorch_compress.autograd.function import Context, Function


class Add(Function):
    @staticmethod
    def forward(ctx: Context, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return a + b

    @staticmethod
    def backward(ctx: Context, grad: np.ndarray):
        return grad, grad


class Sub(Function):
    @staticmethod
    def forward(ctx: Context, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return a - b

    @staticmethod
    def backward(ctx: Context, grad: np.ndarray):
        return grad, -grad


class Mul(Function):
    @staticmethod
    def forward(ctx: Context, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        ctx.save_for_backward(a, b)
        return a * b

    @staticmethod
    def backward(ctx: Context, grad: np.ndarray):
        a, b = ctx.saved_tensors
        return grad * b, grad * a


class Div(Function):
    @staticmethod
    def forward(ctx: Context, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        ctx.save_for_backward(a, b)
        return a / b

    @staticmethod
    def backward(ctx: Context, grad: np.ndarray):
        a, b = ctx.saved_tensors
        return grad / b, -grad * a / (b * b)


class Neg(Function):
    @staticmethod
    def forward(ctx: Context, a: np.ndarray) -> np.ndarray:
        return -a

    @staticmethod
    def backward(ctx: Context, grad: np.ndarray):
        return -grad


class Pow(Function):
    """a ** exponent for a constant scalar exponent (a hyper-parameter, not an input)."""

    @staticmethod
    def forward(ctx: Context, a: np.ndarray, exponent: float = 2.0) -> np.ndarray:
        ctx.save_for_backward(a)
        ctx.exponent = exponent
        return a**exponent

    @staticmethod
    def backward(ctx: Context, grad: np.ndarray):
        (a,) = ctx.saved_tensors
        p = ctx.exponent
        return grad * p * a ** (p - 1)


class Exp(Function):
    @staticmethod
    def forward(ctx: Context, a: np.ndarray) -> np.ndarray:
        out = np.exp(a)
        ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx: Context, grad: np.ndarray):
        (out,) = ctx.saved_tensors
        return grad * out


class Log(Function):
    @staticmethod
    def forward(ctx: Context, a: np.ndarray) -> np.ndarray:
        ctx.save_for_backward(a)
        return np.log(a)

    @staticmethod
    def backward(ctx: Context, grad: np.ndarray):
        (a,) = ctx.saved_tensors
        return grad / a


class ReLU(Function):
    @staticmethod
    def forward(ctx: Context, a: np.ndarray) -> np.ndarray:
        out = np.maximum(a, 0)
        ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx: Context, grad: np.ndarray):
        (out,) = ctx.saved_tensors
        # the kink at 0 gets gradient 0, as in PyTorch
        return grad * (out > 0)


class MulMask(Function):
    """x * mask for a constant mask (pruning): the mask is a hyper-parameter, never trained."""

    @staticmethod
    def forward(ctx: Context, a: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
        if mask is None or np.shape(mask) != a.shape:
            raise ValueError(
                f"mul_mask: mask shape {np.shape(mask)} must equal the tensor's shape {a.shape}"
            )
        ctx.mask = mask
        return a * mask

    @staticmethod
    def backward(ctx: Context, grad: np.ndarray):
        return grad * ctx.mask
