"""Matrix product (2-D, or batched with numpy's matmul broadcasting)."""

from __future__ import annotations

import numpy as np

from minitorch_compress.autograd.function import Context, Function


class MatMul(Function):
    """a @ b for a (..., n, k) and b (..., k, m) -> (..., n, m)."""

    @staticmethod
    def forward(ctx: Context, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        if a.ndim < 2 or b.ndim < 2:
            raise ValueError(f"matmul needs at least 2-D operands, got {a.shape} @ {b.shape}")
        if a.shape[-1] != b.shape[-2]:
            raise ValueError(
                f"matmul: inner dimensions differ: {a.shape} @ {b.shape} "
                f"({a.shape[-1]} != {b.shape[-2]})"
            )
        ctx.save_for_backward(a, b)
        return a @ b

    @staticmethod
    def backward(ctx: Context, grad: np.ndarray):
        a, b = ctx.saved_tensors
        grad_a = grad @ np.swapaxes(b, -1, -2) if ctx.needs_input_grad[0] else None
        grad_b = np.swapaxes(a, -1, -2) @ grad if ctx.needs_input_grad[1] else None
        return grad_a, grad_b
