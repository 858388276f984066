"""`Tensor`: an ndarray plus what autograd needs (requires_grad, grad, the op that made it)."""

from __future__ import annotations

from typing import Any

import numpy as np

DEFAULT_DTYPE = np.float32


class Tensor:
    """A float32 (float64 for gradient checks) array that can record the ops applied to it.

    Attributes:
        data: the values, a numpy array of any shape.
        grad: d(loss)/d(data) after `backward()`, same shape as `data`, or None.
        requires_grad: whether ops on this tensor are recorded for backprop.
    """

    __array_priority__ = 100  # make `ndarray + Tensor` defer to Tensor.__radd__

    def __init__(self, data: Any, requires_grad: bool = False, dtype: Any = None) -> None:
        if isinstance(data, Tensor):
            data = data.data
        array = np.asarray(data, dtype=dtype)
        if dtype is None and array.dtype not in (np.float32, np.float64):
            array = array.astype(DEFAULT_DTYPE)
        self.data: np.ndarray = array
        self.grad: np.ndarray | None = None
        self.requires_grad = bool(requires_grad)
        self._ctx = None
        self._op = None
        self._parents: tuple[Tensor, ...] = ()

    # ----------------------------------------------------------------- basic properties
    @property
    def shape(self) -> tuple[int, ...]:
        return self.data.shape

    @property
    def ndim(self) -> int:
        return self.data.ndim

    @property
    def dtype(self) -> np.dtype:
        return self.data.dtype

    @property
    def size(self) -> int:
        return self.data.size

    def __len__(self) -> int:
        return len(self.data)

    def __repr__(self) -> str:
        flag = ", requires_grad=True" if self.requires_grad else ""
        return f"Tensor({self.data!r}{flag})"

    def numpy(self) -> np.ndarray:
        """The underlying array (shared, not copied)."""
        return self.data

    def item(self) -> float:
        """The value of a one-element tensor as a Python float."""
        return float(self.data.reshape(-1)[0]) if self.data.size == 1 else _not_scalar(self)

    def detach(self) -> Tensor:
        """A tensor sharing the same data but cut from the graph."""
        return Tensor(self.data, requires_grad=False)

    def zero_grad(self) -> None:
        """Forget the accumulated gradient."""
        self.grad = None

    def backward(self, grad: np.ndarray | None = None) -> None:
        """Backpropagate from this tensor; see `engine.backward`."""
        from minitorch_compress.autograd.engine import backward

        backward(self, grad)

    # ----------------------------------------------------------------- operators
    def __add__(self, other: Any) -> Tensor:
        return _ops().add(self, other)

    def __radd__(self, other: Any) -> Tensor:
        return _ops().add(other, self)

    def __sub__(self, other: Any) -> Tensor:
        return _ops().sub(self, other)

    def __rsub__(self, other: Any) -> Tensor:
        return _ops().sub(other, self)

    def __mul__(self, other: Any) -> Tensor:
        return _ops().mul(self, other)

    def __rmul__(self, other: Any) -> Tensor:
        return _ops().mul(other, self)

    def __truediv__(self, other: Any) -> Tensor:
        return _ops().div(self, other)

    def __rtruediv__(self, other: Any) -> Tensor:
        return _ops().div(other, self)

    def __neg__(self) -> Tensor:
        return _ops().neg(self)

    def __pow__(self, exponent: float) -> Tensor:
        return _ops().pow(self, exponent)

    def __matmul__(self, other: Any) -> Tensor:
        return _ops().matmul(self, other)

    # ----------------------------------------------------------------- methods
    def sum(self, axis: int | tuple[int, ...] | None = None, keepdims: bool = False) -> Tensor:
        return _ops().sum(self, axis=axis, keepdims=keepdims)

    def mean(self, axis: int | tuple[int, ...] | None = None, keepdims: bool = False) -> Tensor:
        return _ops().mean(self, axis=axis, keepdims=keepdims)

    def reshape(self, *shape: Any) -> Tensor:
        if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
            shape = tuple(shape[0])
        return _ops().reshape(self, shape)

    def permute(self, *axes: int) -> Tensor:
        return _ops().permute(self, axes)

    def transpose(self, axis0: int = 0, axis1: int = 1) -> Tensor:
        return _ops().transpose(self, axis0, axis1)

    @property
    def T(self) -> Tensor:  # noqa: N802 - numpy's name
        return _ops().permute(self, tuple(reversed(range(self.ndim))))

    def flatten(self, start_dim: int = 1) -> Tensor:
        return _ops().flatten(self, start_dim)

    def relu(self) -> Tensor:
        return _ops().relu(self)

    def exp(self) -> Tensor:
        return _ops().exp(self)

    def log(self) -> Tensor:
        return _ops().log(self)


def _not_scalar(t: Tensor) -> float:
    raise ValueError(f"item() needs a one-element tensor, got shape {t.shape}")


def _ops():
    # imported lazily: ops import Tensor, and Tensor's operators need the ops
    from minitorch_compress import ops

    return ops


def as_tensor(x: Any, dtype: Any = None) -> Tensor:
    """`x` itself if it is a Tensor, else a constant (requires_grad=False) Tensor of it."""
    return x if isinstance(x, Tensor) else Tensor(x, dtype=dtype)


def tensor(data: Any, requires_grad: bool = False, dtype: Any = None) -> Tensor:
    """Create a Tensor (float32 unless `data` is float64 or `dtype` says otherwise)."""
    return Tensor(data, requires_grad=requires_grad, dtype=dtype)
