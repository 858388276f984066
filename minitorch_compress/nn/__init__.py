"""Neural-network building blocks: `Module` and the layers ResNet-20 needs."""

from minitorch_compress.nn.layers import (
    BatchNorm2d,
    Conv2d,
    Flatten,
    GlobalAvgPool2d,
    Linear,
    ReLU,
    Sequential,
)
from minitorch_compress.nn.module import Module, Parameter, StateDictError

__all__ = [
    "Module", "Parameter", "StateDictError", "Conv2d", "Linear", "BatchNorm2d", "ReLU",
    "GlobalAvgPool2d", "Flatten", "Sequential",
]
