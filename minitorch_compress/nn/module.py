"""`Module`: a container that registers parameters, buffers and submodules by name."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from minitorch_compress.autograd.tensor import Tensor
from minitorch_compress.errors import MinitorchError


class StateDictError(MinitorchError, ValueError):
    """A state_dict does not fit the model: missing or unexpected keys, or wrong shapes."""


class Parameter(Tensor):
    """A trainable Tensor: always requires a gradient, registered by `Module.__setattr__`."""

    def __init__(self, data: Any, dtype: Any = np.float32) -> None:
        super().__init__(np.array(data, dtype=dtype), requires_grad=True)


class Module:
    """Base class of layers and models.

    Assigning a `Parameter` or a `Module` to an attribute registers it under that name, so
    `named_parameters()` yields the dotted names students see in tables, e.g.
    `body_op.3.conv1.0.conv.weight`. Buffers (running statistics) are numpy arrays registered
    with `register_buffer`; they are saved in `state_dict()` but not trained.
    """

    def __init__(self) -> None:
        object.__setattr__(self, "_parameters", {})
        object.__setattr__(self, "_buffers", {})
        object.__setattr__(self, "_modules", {})
        object.__setattr__(self, "training", True)

    def __setattr__(self, name: str, value: Any) -> None:
        if "_parameters" not in self.__dict__:
            raise RuntimeError(f"call Module.__init__() before assigning {name!r}")
        if name in self._buffers and isinstance(value, np.ndarray):
            self._buffers[name] = value  # e.g. `self.num_batches_tracked += 1`
            object.__setattr__(self, name, value)
            return
        for registry in (self._parameters, self._modules, self._buffers):
            registry.pop(name, None)
        if isinstance(value, Parameter):
            self._parameters[name] = value
        elif isinstance(value, Module):
            self._modules[name] = value
        object.__setattr__(self, name, value)

    def register_buffer(self, name: str, array: np.ndarray) -> None:
        """Register a non-trainable array (e.g. running_mean) saved in the state_dict."""
        self._buffers[name] = array
        object.__setattr__(self, name, array)

    # ------------------------------------------------------------------ traversal
    def named_modules(self, prefix: str = "") -> Iterator[tuple[str, Module]]:
        """Yield (dotted name, module) for this module ("" for itself) and all descendants."""
        yield prefix, self
        for name, child in self._modules.items():
            yield from child.named_modules(f"{prefix}.{name}" if prefix else name)

    def named_parameters(self) -> Iterator[tuple[str, Parameter]]:
        """Yield (dotted name, Parameter), e.g. ("head_conv.0.conv.weight", ...)."""
        for module_name, module in self.named_modules():
            for name, p in module._parameters.items():
                yield (f"{module_name}.{name}" if module_name else name), p

    def parameters(self) -> list[Parameter]:
        """All trainable parameters, in registration order."""
        return [p for _, p in self.named_parameters()]

    def named_buffers(self) -> Iterator[tuple[str, np.ndarray]]:
        """Yield (dotted name, array) of every buffer."""
        for module_name, module in self.named_modules():
            for name, b in module._buffers.items():
                yield (f"{module_name}.{name}" if module_name else name), b

    def children(self) -> list[Module]:
        """Direct submodules."""
        return list(self._modules.values())

    # ------------------------------------------------------------------ modes
    def train(self, mode: bool = True) -> Module:
        """Set training mode (batch statistics in BatchNorm) on this module and descendants."""
        for _, module in self.named_modules():
            object.__setattr__(module, "training", mode)
        return self

    def eval(self) -> Module:
        """Set evaluation mode (running statistics in BatchNorm)."""
        return self.train(False)

    def zero_grad(self) -> None:
        """Forget the gradients of all parameters."""
        for p in self.parameters():
            p.grad = None

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, np.ndarray]:
        """Copies of all parameters and buffers, keyed by dotted name."""
        state = {name: p.data.copy() for name, p in self.named_parameters()}
        state.update({name: np.array(b, copy=True) for name, b in self.named_buffers()})
        return state

    def load_state_dict(self, state: dict[str, np.ndarray], strict: bool = True) -> None:
        """Copy values from `state` into the parameters and buffers, in place.

        Raises:
            StateDictError: listing every missing key, unexpected key (when strict) and shape
                mismatch at once, so one run shows everything that is wrong.
        """
        targets: dict[str, np.ndarray] = {n: p.data for n, p in self.named_parameters()}
        targets.update(dict(self.named_buffers()))
        missing = [k for k in targets if k not in state]
        unexpected = [k for k in state if k not in targets]
        mismatched = [
            f"{k}: checkpoint {tuple(np.shape(state[k]))} vs model {targets[k].shape}"
            for k in targets
            if k in state and tuple(np.shape(state[k])) != targets[k].shape
        ]
        problems = []
        if strict and missing:
            problems.append(f"missing keys: {', '.join(missing)}")
        if strict and unexpected:
            problems.append(f"unexpected keys: {', '.join(unexpected)}")
        if mismatched:
            problems.append(f"shape mismatch: {'; '.join(mismatched)}")
        if problems:
            raise StateDictError("state_dict does not fit the model: " + " | ".join(problems))
        for k, target in targets.items():
            if k in state:
                np.copyto(target, np.asarray(state[k]), casting="unsafe")

    # ------------------------------------------------------------------ call
    def forward(self, *args: Any, **kwargs: Any) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError(f"{type(self).__name__} does not implement forward()")

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.forward(*args, **kwargs)

    def extra_repr(self) -> str:
        return ""

    def __repr__(self) -> str:
        lines = [f"{type(self).__name__}({self.extra_repr()}"]
        for name, child in self._modules.items():
            child_repr = repr(child).replace("\n", "\n  ")
            lines.append(f"  ({name}): {child_repr}")
        return lines[0] + ")" if len(lines) == 1 else "\n".join(lines) + "\n)"
