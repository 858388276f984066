"""2-D convolution (NCHW), forward and backward on the active kernel set (`kernels/sets.py`:
`kernels/conv.py` by default, `kernels/reference.py` under ``use_kernels("reference")``)."""

from __future__ import annotations

import numpy as np

from minitorch_compress.autograd.function import Context, Function
from minitorch_compress.kernels.sets import active_kernels


class Conv2d(Function):
    """y = conv(x, w) (+ bias): x (N, C, H, W), w (K, C, kh, kw), bias (K,) -> (N, K, Ho, Wo).

    Ho = (H + 2*padding - kh) // stride + 1 (and likewise Wo); zero padding.
    """

    @staticmethod
    def forward(
        ctx: Context,
        x: np.ndarray,
        weight: np.ndarray,
        bias: np.ndarray | None = None,
        stride: int = 1,
        padding: int = 0,
    ) -> np.ndarray:
        ctx.stride, ctx.padding = stride, padding
        ctx.kernels = active_kernels()  # the backward runs on the same set
        ctx.save_for_backward(x, weight)
        y = ctx.kernels.conv2d_forward(x, weight, stride=stride, padding=padding)
        if bias is not None:
            y += bias.reshape(1, -1, 1, 1)
        return y

    @staticmethod
    def backward(ctx: Context, grad: np.ndarray):
        x, weight = ctx.saved_tensors
        need_x, need_w = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        grad_x, grad_w = ctx.kernels.conv2d_backward(
            grad, x, weight, ctx.stride, ctx.padding,
            need_input_grad=need_x, need_weight_grad=need_w,
        )
        if len(ctx.needs_input_grad) > 2:  # a bias was given
            return grad_x, grad_w, grad.sum(axis=(0, 2, 3))
        return grad_x, grad_w
