"""log-softmax and softmax cross-entropy (mean over the batch, integer labels)."""

from __future__ import annotations

import numpy as np

from minitorch_compress.autograd.function import Context, Function


def log_softmax_array(logits: np.ndarray, axis: int) -> np.ndarray:
    """log(softmax(logits)) along `axis` on a plain array (the ops below and distillation
    share it)."""
    # subtract the max first: exp of large logits would overflow
    shifted = logits - logits.max(axis=axis, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=axis, keepdims=True))


class LogSoftmax(Function):
    @staticmethod
    def forward(ctx: Context, logits: np.ndarray, axis: int = -1) -> np.ndarray:
        out = log_softmax_array(logits, axis)
        ctx.save_for_backward(out)
        ctx.axis = axis
        return out

    @staticmethod
    def backward(ctx: Context, grad: np.ndarray):
        (out,) = ctx.saved_tensors
        return grad - np.exp(out) * grad.sum(axis=ctx.axis, keepdims=True)


class CrossEntropy(Function):
    """Mean over the batch of -log softmax(logits)[label]. logits (N, K), labels (N,) ints."""

    @staticmethod
    def forward(ctx: Context, logits: np.ndarray, labels: np.ndarray | None = None) -> np.ndarray:
        labels = np.asarray(labels)
        if logits.ndim != 2 or labels.shape != (logits.shape[0],):
            raise ValueError(
                f"cross_entropy expects logits (N, K) and labels (N,), got {logits.shape} "
                f"and {labels.shape}"
            )
        if labels.size and (labels.min() < 0 or labels.max() >= logits.shape[1]):
            raise ValueError(f"cross_entropy: labels must lie in [0, {logits.shape[1]})")
        log_probs = log_softmax_array(logits, axis=1)
        rows = np.arange(logits.shape[0])
        ctx.save_for_backward(log_probs)
        ctx.labels = labels
        return np.asarray(-log_probs[rows, labels].mean(), dtype=logits.dtype)

    @staticmethod
    def backward(ctx: Context, grad: np.ndarray):
        (log_probs,) = ctx.saved_tensors
        n = log_probs.shape[0]
        # d/dlogits of mean(-log p[label]) = (softmax - onehot) / N
        g = np.exp(log_probs)
        g[np.arange(n), ctx.labels] -= 1.0
        return g * (grad / n)
