"""Shape ops: reshape, permute (transpose). Flatten is a reshape."""

from __future__ import annotations

import numpy as np

from minitorch_compress.autograd.function import Context, Function


class Reshape(Function):
    @staticmethod
    def forward(ctx: Context, a: np.ndarray, shape: tuple[int, ...] = ()) -> np.ndarray:
        ctx.shape = a.shape
        try:
            return a.reshape(shape)
        except ValueError:
            raise ValueError(f"reshape: cannot reshape {a.shape} into {tuple(shape)}") from None

    @staticmethod
    def backward(ctx: Context, grad: np.ndarray):
        return grad.reshape(ctx.shape)


class Permute(Function):
    @staticmethod
    def forward(ctx: Context, a: np.ndarray, axes: tuple[int, ...] = ()) -> np.ndarray:
        if sorted(a_ % a.ndim for a_ in axes) != list(range(a.ndim)):
            raise ValueError(f"permute: {axes} is not a permutation of the {a.ndim} axes")
        ctx.axes = tuple(axes)
        return np.transpose(a, axes)

    @staticmethod
    def backward(ctx: Context, grad: np.ndarray):
        return np.transpose(grad, np.argsort(ctx.axes))
