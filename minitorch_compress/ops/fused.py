"""Inference-only fusion: conv -> eval-mode batch norm (-> residual add) (-> ReLU), one op.

At inference a ResNet block spends as long sweeping its activations through batch norm and
the residual add as some of its convolutions take; on the fast kernels those steps run on
each output row of the convolution while it is still in cache
(`kernels/conv.conv2d_affine_forward`), and the differentiable path -- `ops.conv2d`, then
`ops.batch_norm2d` in eval mode, then `ops.add_relu` -- computes bit for bit the same
numbers, which the tests check. Under ``use_kernels("reference")`` the function of the same
name in `kernels/reference.py` runs the steps one after the other (`kernels/sets.py`).
There is no backward, so this is only for code that records no gradients (inside
`no_grad`).
"""

from __future__ import annotations

from minitorch_compress.autograd.engine import is_grad_enabled
from minitorch_compress.autograd.tensor import Tensor
from minitorch_compress.kernels.batchnorm import eval_coefficients
from minitorch_compress.kernels.rules import result_float_dtype
from minitorch_compress.kernels.sets import active_kernels


def conv2d_batch_norm_eval(
    x: Tensor,
    weight: Tensor,
    stride: int,
    padding: int,
    gamma: Tensor,
    beta: Tensor,
    running_mean,
    running_var,
    eps: float,
    relu: bool = False,
    residual: Tensor | None = None,
) -> Tensor:
    """``relu?(batch_norm_eval(conv2d(x, weight)) (+ residual))`` without a backward.

    Args:
        x: input, shape (N, C, H, W).
        weight: conv weights (K, C, kh, kw) (no bias: ResNet-20's convs have none).
        stride, padding: the conv's.
        gamma, beta: batch-norm scale and shift, shape (K,).
        running_mean, running_var: the batch norm's running statistics, shape (K,).
        eps: the batch norm's eps.
        relu: apply ``max(., 0)`` last (after the residual add, if any).
        residual: optional shortcut (N, K, Ho, Wo) added before the ReLU.

    Returns:
        A Tensor (N, K, Ho, Wo) that records no graph.

    Raises:
        RuntimeError: when called while gradients are recorded.
        ValueError: on inconsistent shapes.
    """
    if is_grad_enabled():
        raise RuntimeError("conv2d_batch_norm_eval has no backward: call it inside no_grad()")
    k = weight.shape[0]
    dtype = result_float_dtype(x.data, weight.data)
    coef = eval_coefficients(gamma.data, beta.data, running_mean, running_var, eps,
                             k, dtype, "conv2d_batch_norm_eval")
    y = active_kernels().conv2d_affine_forward(
        x.data, weight.data, stride, padding, coef, relu=relu,
        residual=None if residual is None else residual.data,
    )
    return Tensor(y)


def sparse_conv2d_batch_norm_eval(x: Tensor, sparse_weights, stride: int, padding: int,
                                  gamma: Tensor, beta: Tensor, running_mean, running_var,
                                  eps: float, relu: bool = False,
                                  residual: Tensor | None = None) -> Tensor:
    """`conv2d_batch_norm_eval` with the weights given by their non-zeros
    (`kernels.sparse_conv.SparseWeights`): the direct sparse kernel (under the reference
    kernels, the dense reference on the decoded weights), same epilogue."""
    if is_grad_enabled():
        raise RuntimeError("sparse_conv2d_batch_norm_eval has no backward: call it inside "
                           "no_grad()")
    k = sparse_weights.shape[0]
    dtype = result_float_dtype(x.data, sparse_weights.values)
    coef = eval_coefficients(gamma.data, beta.data, running_mean, running_var, eps,
                             k, dtype, "sparse_conv2d_batch_norm_eval")
    y = active_kernels().sparse_conv2d_forward(
        x.data.astype(dtype, copy=False), sparse_weights, stride, padding, coef, relu,
        None if residual is None else residual.data,
    )
    return Tensor(y)
