"""Stochastic gradient descent with momentum and weight decay, PyTorch semantics."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from minitorch_compress.nn.module import Parameter


class SGD:
    """p <- p - lr * v, with v the momentum buffer of g = grad + weight_decay * p.

    PyTorch's convention (no dampening): on the first step buf = g, afterwards
    buf = momentum * buf + g; the step uses buf (or g + momentum * buf with nesterov).
    Weight decay is added to the gradient, so it also passes through the momentum.
    """

    def __init__(self, params: Iterable[Parameter], lr: float, momentum: float = 0.0,
                 weight_decay: float = 0.0, nesterov: bool = False) -> None:
        self.params = list(params)
        if lr <= 0:
            raise ValueError(f"SGD: lr must be positive, got {lr}")
        if nesterov and momentum <= 0:
            raise ValueError("SGD: nesterov needs momentum > 0")
        self.lr, self.momentum = lr, momentum
        self.weight_decay, self.nesterov = weight_decay, nesterov
        self.momentum_buffers: list[np.ndarray | None] = [None] * len(self.params)

    def zero_grad(self) -> None:
        """Forget the gradients of all parameters."""
        for p in self.params:
            p.grad = None

    def step(self) -> None:
        """Update every parameter that has a gradient, in place."""
        for i, p in enumerate(self.params):
            if p.grad is None:
                continue
            g = p.grad
            if self.weight_decay:
                g = g + self.weight_decay * p.data
            if self.momentum:
                buf = self.momentum_buffers[i]
                if buf is None:
                    buf = self.momentum_buffers[i] = g.astype(p.data.dtype, copy=True)
                else:
                    buf *= self.momentum
                    buf += g
                g = g + self.momentum * buf if self.nesterov else buf
            p.data -= self.lr * g

    def state_dict(self) -> dict[str, np.ndarray]:
        """Momentum buffers keyed by parameter index (absent until the first step)."""
        return {f"momentum.{i}": b.copy() for i, b in enumerate(self.momentum_buffers)
                if b is not None}

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        """Restore the momentum buffers saved by `state_dict`."""
        self.momentum_buffers = [None] * len(self.params)
        for key, value in state.items():
            index = int(key.split(".")[1])
            if value.shape != self.params[index].shape:
                raise ValueError(f"SGD state {key} has shape {value.shape}, "
                                 f"parameter has {self.params[index].shape}")
            self.momentum_buffers[index] = np.array(value, dtype=self.params[index].dtype)
