"""The backprop engine: one topological sort, one place that un-broadcasts gradients."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from minitorch_compress.autograd.tensor import Tensor

_grad_enabled = True


def is_grad_enabled() -> bool:
    """Whether new ops are recorded for backprop (False inside `no_grad()`)."""
    return _grad_enabled


@contextlib.contextmanager
def no_grad() -> Iterator[None]:
    """Context manager: ops run inside it build no graph (evaluation, optimizer updates)."""
    global _grad_enabled
    previous = _grad_enabled
    _grad_enabled = False
    try:
        yield
    finally:
        _grad_enabled = previous


def _unbroadcast(grad: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Sum `grad` over the axes that broadcasting added or stretched, to get `shape` back.

    This is the only place in the library that deals with broadcast gradients.
    """
    if grad.shape == shape:
        return grad
    extra = grad.ndim - len(shape)
    if extra > 0:
        grad = grad.sum(axis=tuple(range(extra)))
    stretched = tuple(i for i, n in enumerate(shape) if n == 1 and grad.shape[i] != 1)
    if stretched:
        grad = grad.sum(axis=stretched, keepdims=True)
    return grad.reshape(shape)


def _topological_order(root: Tensor) -> list[Tensor]:
    """Tensors reachable from `root` through recorded ops, every node after all its users."""
    order: list[Tensor] = []
    visited: set[int] = set()
    stack: list[tuple[Tensor, bool]] = [(root, False)]
    while stack:  # iterative DFS: a deep graph must not hit Python's recursion limit
        node, children_done = stack.pop()
        if children_done:
            order.append(node)
            continue
        if id(node) in visited:
            continue
        visited.add(id(node))
        stack.append((node, True))
        for parent in node._parents:
            if parent.requires_grad and id(parent) not in visited:
                stack.append((parent, False))
    order.reverse()
    return order


def backward(root: Tensor, grad: np.ndarray | None = None) -> None:
    """Accumulate d(root)/d(leaf) into `.grad` of every leaf tensor that requires a gradient.

    Args:
        root: the output tensor, usually a scalar loss.
        grad: upstream gradient of `root`'s shape; may be omitted only for a scalar root.
    """
    if not root.requires_grad:
        raise RuntimeError(
            "backward() called on a tensor that does not require grad "
            "(was it computed inside no_grad(), or from inputs with requires_grad=False?)"
        )
    if grad is None:
        if root.data.size != 1:
            raise RuntimeError(
                f"backward() on a non-scalar tensor of shape {root.shape} needs an explicit "
                "gradient: call t.backward(grad) with grad of the same shape"
            )
        grad = np.ones_like(root.data)
    grad = np.asarray(grad, dtype=root.data.dtype)
    if grad.shape != root.shape:
        raise ValueError(f"gradient shape {grad.shape} does not match tensor shape {root.shape}")

    grads: dict[int, np.ndarray] = {id(root): grad}
    for node in _topological_order(root):
        g = grads.pop(id(node), None)
        if g is None:
            continue
        if node._op is None:  # a leaf: parameters and inputs collect their gradient here
            node.grad = g.copy() if node.grad is None else node.grad + g
            continue
        input_grads = node._op.backward(node._ctx, g)
        if not isinstance(input_grads, tuple):
            input_grads = (input_grads,)
        if len(input_grads) != len(node._parents):
            # a silent zip would drop the gradients of the inputs left over
            raise RuntimeError(
                f"{node._op.__name__}.backward returned {len(input_grads)} gradient(s) for "
                f"{len(node._parents)} input(s); return one per tensor input (None for an "
                "input that needs none)")
        for parent, pg in zip(node._parents, input_grads, strict=True):
            if pg is None or not parent.requires_grad:
                continue
            pg = _unbroadcast(pg, parent.shape)
            key = id(parent)
            grads[key] = pg if key not in grads else grads[key] + pg
        # free the graph as we go: activations are large and a step must not keep them alive
        node._ctx = None
        node._parents = ()
        node._op = None
