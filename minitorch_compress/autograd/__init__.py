"""Reverse-mode automatic differentiation: tensors, functions and the backprop engine."""

from minitorch_compress.autograd.engine import backward, is_grad_enabled, no_grad
from minitorch_compress.autograd.function import Context, Function
from minitorch_compress.autograd.gradcheck import grad_check
from minitorch_compress.autograd.tensor import Tensor, tensor

__all__ = [
    "Tensor", "tensor", "Function", "Context", "backward", "no_grad", "is_grad_enabled",
    "grad_check",
]
