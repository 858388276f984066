"""Reductions: sum and mean over axes."""

from __future__ import annotations

import numpy as np

from minitorch_compress.autograd.function import Context, Function


def _normalize_axes(axis: int | tuple[int, ...] | None, ndim: int) -> tuple[int, ...]:
    if axis is None:
        return tuple(range(ndim))
    axes = (axis,) if isinstance(axis, int) else tuple(axis)
    return tuple(a % ndim for a in axes)


def _expand_like(grad: np.ndarray, shape: tuple[int, ...], axes: tuple[int, ...], keepdims: bool):
    """Put back the reduced axes (as size 1) so `grad` broadcasts against the input."""
    if not keepdims:
        grad = np.expand_dims(grad, axes) if axes else grad
    return np.broadcast_to(grad, shape)


class Sum(Function):
    @staticmethod
    def forward(ctx: Context, a: np.ndarray, axis=None, keepdims: bool = False) -> np.ndarray:
        ctx.axes = _normalize_axes(axis, a.ndim)
        ctx.keepdims = keepdims
        ctx.shape = a.shape
        return np.asarray(a.sum(axis=ctx.axes, keepdims=keepdims))

    @staticmethod
    def backward(ctx: Context, grad: np.ndarray):
        return _expand_like(grad, ctx.shape, ctx.axes, ctx.keepdims).copy()


class Mean(Function):
    @staticmethod
    def forward(ctx: Context, a: np.ndarray, axis=None, keepdims: bool = False) -> np.ndarray:
        ctx.axes = _normalize_axes(axis, a.ndim)
        ctx.keepdims = keepdims
        ctx.shape = a.shape
        ctx.count = int(np.prod([a.shape[i] for i in ctx.axes])) if ctx.axes else 1
        return np.asarray(a.mean(axis=ctx.axes, keepdims=keepdims))

    @staticmethod
    def backward(ctx: Context, grad: np.ndarray):
        return _expand_like(grad / ctx.count, ctx.shape, ctx.axes, ctx.keepdims).copy()
