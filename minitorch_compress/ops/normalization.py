"""Batch normalisation over (N, H, W) per channel, optionally fused with the ReLU after it.

Training mode normalises with the batch statistics and updates the running statistics in
place, PyTorch convention: running = (1 - momentum) * running + momentum * batch_stat, with
the *unbiased* batch variance for running_var. Eval mode uses the running statistics.
The kernels are the active set's (`kernels/sets.py`): `kernels/batchnorm.py` by default,
`kernels/reference.py` under ``use_kernels("reference")``.
"""

from __future__ import annotations

import numpy as np

from minitorch_compress.autograd.function import Context, Function
from minitorch_compress.kernels.sets import active_kernels


class BatchNorm2d(Function):
    """x (N, C, H, W), gamma (C,), beta (C,) -> y (N, C, H, W); `relu=True` fuses max(y, 0)."""

    @staticmethod
    def forward(
        ctx: Context,
        x: np.ndarray,
        gamma: np.ndarray,
        beta: np.ndarray,
        running_mean: np.ndarray | None = None,
        running_var: np.ndarray | None = None,
        training: bool = True,
        momentum: float = 0.1,
        eps: float = 1e-5,
        relu: bool = False,
    ) -> np.ndarray:
        if x.ndim != 4 or x.shape[1] != gamma.shape[0]:
            raise ValueError(
                f"batch_norm2d: input {x.shape} must be (N, C, H, W) with C = {gamma.shape[0]}"
            )
        ctx.training, ctx.eps, ctx.relu = training, eps, relu
        ctx.kernels = kernels = active_kernels()  # the backward runs on the same set
        if training:
            y, mean, var, invstd = kernels.batchnorm_train_forward(
                x, gamma, beta, eps, relu=relu
            )
            count = x.shape[0] * x.shape[2] * x.shape[3]
            if running_mean is not None:
                unbiased = var * (count / max(count - 1, 1))
                running_mean *= 1.0 - momentum
                running_mean += momentum * mean
                running_var *= 1.0 - momentum
                running_var += momentum * unbiased
            ctx.save_for_backward(x, y, gamma, mean, invstd)
        else:
            y = kernels.batchnorm_eval_forward(
                x, gamma, beta, running_mean, running_var, eps, relu=relu
            )
            ctx.save_for_backward(x, y, gamma, beta, running_mean.copy(), running_var.copy())
        return y

    @staticmethod
    def backward(ctx: Context, grad: np.ndarray):
        if ctx.training:
            x, y, gamma, mean, invstd = ctx.saved_tensors
            return ctx.kernels.batchnorm_train_backward(
                grad, x, y, gamma, mean, invstd, relu=ctx.relu
            )
        x, y, gamma, beta, running_mean, running_var = ctx.saved_tensors
        return ctx.kernels.batchnorm_eval_backward(
            grad, x, y, gamma, beta, running_mean, running_var, ctx.eps, relu=ctx.relu
        )


class AddReLU(Function):
    """max(a + b, 0): the residual add and the ReLU that follows it, in one pass."""

    @staticmethod
    def forward(ctx: Context, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        ctx.kernels = active_kernels()  # the backward runs on the same set
        y = ctx.kernels.add_relu_forward(a, b)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx: Context, grad: np.ndarray):
        (y,) = ctx.saved_tensors
        g = ctx.kernels.relu_backward(grad, y)
        return g, g
