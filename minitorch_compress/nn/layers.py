"""Layers: Conv2d, Linear, BatchNorm2d, ReLU, GlobalAvgPool2d, Flatten, Sequential."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from minitorch_compress import ops
from minitorch_compress.autograd.tensor import Tensor
from minitorch_compress.nn.init import kaiming_normal, uniform_fan_in
from minitorch_compress.nn.module import Module, Parameter

# A weight transform maps the float weight to the weight the layer computes with; the
# quantizer (compression/quant.py) installs one. It must be differentiable (an STE op).
WeightTransform = Callable[[Tensor], Tensor]


def _default_rng(rng: np.random.Generator | None) -> np.random.Generator:
    return rng if rng is not None else np.random.default_rng(0)


class _WeightedLayer(Module):
    """A layer with a `weight` Parameter and an optional `weight_transform` applied to it."""

    weight: Parameter
    weight_transform: WeightTransform | None

    def effective_weight(self) -> Tensor:
        """The weight used in forward: the parameter, or its transform (e.g. quantized)."""
        if self.weight_transform is None:
            return self.weight
        return self.weight_transform(self.weight)


class Conv2d(_WeightedLayer):
    """2-D convolution over NCHW input; weight (out_channels, in_channels, k, k).

    `weight_transform`, when set, is applied to the weight on every forward (e.g. fixed-point
    quantization with a straight-through estimator); the float weight stays the parameter.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1,
                 padding: int = 0, bias: bool = False,
                 rng: np.random.Generator | None = None) -> None:
        super().__init__()
        rng = _default_rng(rng)
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size, self.stride, self.padding = kernel_size, stride, padding
        shape = (out_channels, in_channels, kernel_size, kernel_size)
        self.weight = Parameter(kaiming_normal(shape, rng))
        self.bias = Parameter(np.zeros(out_channels, np.float32)) if bias else None
        self.weight_transform: WeightTransform | None = None

    def forward(self, x: Tensor) -> Tensor:
        """x (N, in_channels, H, W) -> (N, out_channels, Ho, Wo)."""
        self.check_input(x)
        return ops.conv2d(x, self.effective_weight(), self.bias, self.stride, self.padding)

    def check_input(self, x: Tensor) -> None:
        """Raise a ValueError naming the expected shape unless x is (N, in_channels, H, W)."""
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"Conv2d expects input (N, {self.in_channels}, H, W), got {tuple(x.shape)}"
            )

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"stride={self.stride}, padding={self.padding}")


class Linear(_WeightedLayer):
    """y = x @ W.T + b: x (N, in_features) -> (N, out_features); weight (out, in)."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True,
                 rng: np.random.Generator | None = None) -> None:
        super().__init__()
        rng = _default_rng(rng)
        self.in_features, self.out_features = in_features, out_features
        self.weight = Parameter(uniform_fan_in((out_features, in_features), in_features, rng))
        self.bias = Parameter(uniform_fan_in((out_features,), in_features, rng)) if bias else None
        self.weight_transform: WeightTransform | None = None

    def forward(self, x: Tensor) -> Tensor:
        if x.ndim != 2 or x.shape[1] != self.in_features:
            raise ValueError(
                f"Linear expects input (N, {self.in_features}), got {tuple(x.shape)}"
            )
        y = x @ self.effective_weight().T
        return y + self.bias if self.bias is not None else y

    def extra_repr(self) -> str:
        return f"{self.in_features}, {self.out_features}"


class BatchNorm2d(Module):
    """Per-channel batch norm of NCHW input with PyTorch's momentum convention (see ops)."""

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float = 0.1) -> None:
        super().__init__()
        self.num_features, self.eps, self.momentum = num_features, eps, momentum
        self.weight = Parameter(np.ones(num_features, np.float32))
        self.bias = Parameter(np.zeros(num_features, np.float32))
        self.register_buffer("running_mean", np.zeros(num_features, np.float32))
        self.register_buffer("running_var", np.ones(num_features, np.float32))
        self.register_buffer("num_batches_tracked", np.zeros((), np.int64))

    def forward(self, x: Tensor, relu: bool = False) -> Tensor:
        """x (N, C, H, W) -> same shape; `relu=True` fuses the following ReLU."""
        if self.training:
            self.num_batches_tracked += 1
        return ops.batch_norm2d(
            x, self.weight, self.bias, self.running_mean, self.running_var,
            training=self.training, momentum=self.momentum, eps=self.eps, relu=relu,
        )

    def extra_repr(self) -> str:
        return f"{self.num_features}, eps={self.eps}, momentum={self.momentum}"


class ReLU(Module):
    """max(x, 0)."""

    def forward(self, x: Tensor) -> Tensor:
        return ops.relu(x)


class GlobalAvgPool2d(Module):
    """(N, C, H, W) -> (N, C), mean over H and W."""

    def forward(self, x: Tensor) -> Tensor:
        return ops.global_avg_pool2d(x)


class Flatten(Module):
    """(N, ...) -> (N, prod(...))."""

    def forward(self, x: Tensor) -> Tensor:
        return ops.flatten(x)


class Sequential(Module):
    """Submodules named "0", "1", ... applied in order."""

    def __init__(self, *modules: Module) -> None:
        super().__init__()
        for i, module in enumerate(modules):
            setattr(self, str(i), module)

    def __getitem__(self, index: int) -> Module:
        return self._modules[str(index)]

    def __len__(self) -> int:
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules.values())

    def forward(self, x: Any) -> Any:
        for module in self._modules.values():
            x = module(x)
        return x
