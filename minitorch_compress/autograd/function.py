"""`Function` (one differentiable op: forward and backward side by side) and its `Context`."""

from __future__ import annotations

from typing import Any

import numpy as np


class Context:
    """Scratch space shared by one op's forward and backward.

    `forward` stores arrays with `save_for_backward` and hyper-parameters (stride, bits, ...)
    as plain attributes; `backward` reads them back. `needs_input_grad[i]` tells backward
    whether the i-th tensor input wants a gradient, so it can skip work.
    """

    def __init__(self, needs_input_grad: tuple[bool, ...] = ()) -> None:
        self.saved_tensors: tuple[np.ndarray, ...] = ()
        self.needs_input_grad = needs_input_grad

    def save_for_backward(self, *arrays: np.ndarray) -> None:
        """Keep raw arrays needed by `backward` (not Tensors: the graph is not retained)."""
        self.saved_tensors = arrays


class Function:
    """Base class of every differentiable op.

    Subclasses implement two static methods over raw numpy arrays:

    * ``forward(ctx, *arrays, **hyper) -> np.ndarray``
    * ``backward(ctx, grad_output) -> array | tuple[array | None, ...]``, one gradient per
      positional tensor input, each of the *broadcast* shape the op saw; the engine reduces it
      back to the input's own shape in one place (`engine._unbroadcast`).

    Call an op with ``MyOp.apply(*tensors, **hyper)``; keyword arguments are hyper-parameters,
    never differentiated.
    """

    @staticmethod
    def forward(ctx: Context, *args: Any, **kwargs: Any) -> np.ndarray:  # pragma: no cover
        raise NotImplementedError

    @staticmethod
    def backward(ctx: Context, grad_output: np.ndarray) -> Any:  # pragma: no cover
        raise NotImplementedError

    @classmethod
    def apply(cls, *inputs: Any, **hyper: Any):
        """Run forward on the inputs' data and, if any input needs a gradient, record the op."""
        from minitorch_compress.autograd.engine import is_grad_enabled
        from minitorch_compress.autograd.tensor import Tensor, as_tensor

        # constants (Python numbers, arrays) take the dtype of the tensor inputs, so that
        # `x * 2.0` stays float32 instead of being promoted to float64
        dtype = next((x.dtype for x in inputs if isinstance(x, Tensor)), None)
        tensors = [x if isinstance(x, Tensor) else as_tensor(x, dtype=dtype) for x in inputs]
        needs = tuple(t.requires_grad for t in tensors)
        ctx = Context(needs)
        out_data = cls.forward(ctx, *[t.data for t in tensors], **hyper)
        requires_grad = is_grad_enabled() and any(needs)
        out = Tensor(out_data, requires_grad=requires_grad)
        if requires_grad:
            out._ctx = ctx
            out._op = cls
            out._parents = tuple(tensors)
        return out
