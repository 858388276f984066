"""`grad_check`: compare an op's backward with central finite differences, every element."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from minitorch_compress.autograd.tensor import Tensor


class GradCheckError(AssertionError):
    """Raised by `grad_check` when analytic and numerical gradients disagree."""


def grad_check(
    fn: Callable[..., Tensor],
    *inputs: Any,
    eps: float = 1e-6,
    atol: float = 1e-5,
    rtol: float = 1e-4,
    seed: int = 0,
) -> bool:
    """Check the backward of `fn` against central finite differences, in float64.

    The output is reduced to a scalar with a random weighting r (so every output element
    matters and errors cannot cancel): s = sum(fn(*inputs) * r). For every element of every
    input, ds/dx from backprop is compared with (s(x + eps) - s(x - eps)) / (2 eps).

    Args:
        fn: function of Tensors returning a Tensor of any shape.
        *inputs: arrays (or Tensors) of any shape; they are copied to float64 Tensors that
            require a gradient.
        eps: finite-difference step.
        atol, rtol: an element passes if |analytic - numeric| <= atol + rtol * |numeric|.
        seed: seed of the random output weighting.

    Returns:
        True when every element passes.

    Raises:
        GradCheckError: naming the input, the worst element's index, both values and how many
            elements failed.

    Example:
        >>> import numpy as np
        >>> from minitorch_compress import grad_check
        >>> grad_check(lambda a, b: (a * b).exp(), np.random.rand(3, 4), np.random.rand(4))
        True
    """
    arrays = [np.array(x.data if isinstance(x, Tensor) else x, dtype=np.float64) for x in inputs]
    tensors = [Tensor(a, requires_grad=True) for a in arrays]
    out = fn(*tensors)
    if not isinstance(out, Tensor):
        raise TypeError(f"grad_check: fn must return a Tensor, got {type(out).__name__}")
    weights = np.random.default_rng(seed).standard_normal(out.shape)
    out.backward(weights)

    def weighted_output(*xs: np.ndarray) -> float:
        return float(np.sum(fn(*[Tensor(x) for x in xs]).data * weights))

    for index, (array, t) in enumerate(zip(arrays, tensors, strict=True)):
        analytic = np.zeros_like(array) if t.grad is None else t.grad
        numeric = np.zeros_like(array)
        flat = array.reshape(-1)  # a view: perturbing it perturbs `array`
        for i in range(flat.size):
            original = flat[i]
            flat[i] = original + eps
            plus = weighted_output(*arrays)
            flat[i] = original - eps
            minus = weighted_output(*arrays)
            flat[i] = original
            numeric.reshape(-1)[i] = (plus - minus) / (2 * eps)
        error = np.abs(analytic - numeric)
        bad = error > atol + rtol * np.abs(numeric)
        if bad.any():
            worst = np.unravel_index(np.argmax(error - rtol * np.abs(numeric)), array.shape)
            raise GradCheckError(
                f"grad_check: input {index} (shape {array.shape}): {int(bad.sum())} of "
                f"{array.size} elements disagree; worst at index {tuple(int(i) for i in worst)}: "
                f"analytic {analytic[worst]:.6g} vs numeric {numeric[worst]:.6g} "
                f"(atol={atol}, rtol={rtol})"
            )
    return True
