"""How much of a model's inference time its conv kernels take, measured.

A channel-pruned ResNet-20 does fewer multiply-accumulates (MACs), but not all that it runs
shrinks with them: each block's output keeps its full width (the residual path adds it), so
the batch norm, residual add and ReLU applied to it do not shrink, nor do the head conv, the
1x1 shortcuts, pooling, the FC and each call's fixed costs. Whether the conv kernels
themselves keep up with the narrower layers is a question about them alone, so they are
timed alone:

* `record_convs` runs one inference forward and records every conv it computes (input,
  weights, stride, padding, and the fused epilogue's arguments), by wrapping the active
  kernel set's conv functions (`kernels/sets.py`) for the length of that forward;
* `time_each` then runs each recorded conv again, once: with ``fused=False`` the kernel
  set's plain `conv2d_forward` -- the kernel `kernels/dispatch.py` picks, as in the model,
  without the batch-norm/residual/ReLU epilogue -- or with ``fused=True`` the same call as
  the model made (conv and epilogue), and returns the seconds each took;
* `narrowed` says which of a pruned model's convs channel pruning made smaller (their weights'
  shapes differ from the full model's convs at the same place), and `conv_macs` counts
  MACs, so that the time per MAC of those convs can be set beside the same convs' in the
  full model: that is how well the kernels keep up with narrower layers. Everything else a
  pruned model runs -- the convs left whole (the head, the 1x1 shortcuts, a block kept at
  full width) and all that is not a conv -- takes as long as in the full model.

`benchmarks/bench_structured.py --split` prints the split per layer.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np

from minitorch_compress.autograd.engine import no_grad
from minitorch_compress.autograd.tensor import Tensor
from minitorch_compress.kernels.sets import active_kernels


class ConvCall(NamedTuple):
    """One conv of a forward: its arguments, as the kernel set received them."""

    x: np.ndarray  # (N, C, H, W)
    w: np.ndarray  # (K, C, kh, kw)
    stride: int
    padding: int
    #: the fused epilogue's (coef (K, 2), relu, residual (N, K, Ho, Wo) or None); None for a
    #: plain conv (a model whose convs do not run fused)
    epilogue: tuple[np.ndarray, bool, np.ndarray | None] | None

    @property
    def macs(self) -> int:
        """Multiply-accumulates of this conv over its whole batch."""
        n, _, h, wd = self.x.shape
        k, c, kh, kw = self.w.shape
        ho = (h + 2 * self.padding - kh) // self.stride + 1
        wo = (wd + 2 * self.padding - kw) // self.stride + 1
        return n * k * c * kh * kw * ho * wo

    def describe(self) -> str:
        """E.g. '3x3 16->8 s1 @32x32' (kernel, channels in -> out, stride, input size)."""
        k, c, kh, kw = self.w.shape
        return (f"{kh}x{kw} {c}->{k} s{self.stride} "
                f"@{self.x.shape[2]}x{self.x.shape[3]}")


def record_convs(model: Any, x: Tensor) -> list[ConvCall] | None:
    """Every conv one inference forward of `model` on `x` computes, in order; None when a
    conv ran on the sparse kernel (`models.resnet.to_sparse`), which this split does not
    time.

    The forward runs under `no_grad` (so eval-mode ConvBNs take their fused path) with the
    active kernel set's `conv2d_affine_forward` and `conv2d_forward` wrapped to record their
    arguments; the set is restored afterwards, whatever happens. It also compiles and warms
    every kernel the model uses.
    """
    kernels = active_kernels()
    fused, plain, sparse = (kernels.conv2d_affine_forward, kernels.conv2d_forward,
                            kernels.sparse_conv2d_forward)
    calls: list[ConvCall] = []
    ran_sparse = []

    def record_fused(x, w, stride, padding, coef, relu=False, residual=None):
        calls.append(ConvCall(x, w, int(stride), int(padding), (coef, bool(relu), residual)))
        return fused(x, w, stride, padding, coef, relu=relu, residual=residual)

    def record_plain(x, w, stride=1, padding=0):
        calls.append(ConvCall(x, w, int(stride), int(padding), None))
        return plain(x, w, stride, padding)

    def record_sparse(*args, **kwargs):
        ran_sparse.append(True)
        return sparse(*args, **kwargs)

    kernels.conv2d_affine_forward = record_fused
    kernels.conv2d_forward = record_plain
    kernels.sparse_conv2d_forward = record_sparse
    try:
        with no_grad():
            model(x)
    finally:
        kernels.conv2d_affine_forward = fused
        kernels.conv2d_forward = plain
        kernels.sparse_conv2d_forward = sparse
    return None if ran_sparse else calls


def time_each(convs: list[ConvCall], fused: bool = False,
              clock: Callable[[], float] = time.perf_counter) -> list[float]:
    """Seconds each recorded conv takes, run once more on its own inputs.

    Args:
        convs: from `record_convs`.
        fused: run the call the model made (conv with its epilogue, where it had one);
            False: the plain conv alone (`conv2d_forward`, the same kernel, no epilogue).
        clock: what to read before and after; `time.thread_time` counts only the CPU time
            of the calling thread (right with one kernel thread, on a busy machine).
    """
    kernels = active_kernels()
    seconds = []
    for call in convs:
        start = clock()
        if fused and call.epilogue is not None:
            coef, relu, residual = call.epilogue
            kernels.conv2d_affine_forward(call.x, call.w, call.stride, call.padding, coef,
                                          relu=relu, residual=residual)
        else:
            kernels.conv2d_forward(call.x, call.w, call.stride, call.padding)
        seconds.append(clock() - start)
    return seconds


def conv_macs(convs: list[ConvCall]) -> int:
    """Multiply-accumulates of all the recorded convs."""
    return sum(call.macs for call in convs)


def narrowed(convs: list[ConvCall], full_convs: list[ConvCall]) -> list[int] | None:
    """Indexes of the convs whose weights are smaller than those of the full model's conv
    at the same place (what channel pruning narrowed); None when the two models do not run
    the same number of convs (then they are not one network pruned)."""
    if len(convs) != len(full_convs):
        return None
    return [i for i, (call, full) in enumerate(zip(convs, full_convs, strict=True))
            if call.w.shape != full.w.shape]
