"""Time the conv and batch-norm kernels on ResNet-20's real layer shapes.

Usage::

    python benchmarks/bench_kernels.py [--batch 256] [--repeats 5] [--min-seconds 0]
                                       [--single-thread]

Prints, per distinct layer shape, the best time in ms and the GFLOP/s (2 flops per
multiply-add) of the conv forward, grad-input, grad-weight and the fused backward, then the
batch-norm / add+ReLU kernels per activation shape, and finally the totals for one ResNet-20
forward and one backward over all 19 3x3 convs + 2 shortcut convs (+ 21 BNs and 9 residual
add+ReLUs). The first call of each kernel (numba compilation or cache load) is not timed.

Timings are noisy on a shared 2-core machine: each kernel runs `repeats` times and, with
``--min-seconds S``, keeps running for at least S seconds; the minimum is reported, and the
load average before and after is printed so you can tell a quiet run from a busy one.

``--single-thread`` pins OpenBLAS and numba to one thread and reports CPU time of the
process instead of wall time: a per-core efficiency measure that other processes on the
machine disturb much less (they still share the caches and memory bandwidth).

Like the command line, the script first applies the allocator setting of `kernels/memory.py`
(``MINITORCH_KEEP_FREED_MEMORY=0`` leaves malloc alone).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import dataclass

# thread counts must be fixed before numpy and numba start their thread pools
SINGLE_THREAD = "--single-thread" in sys.argv
if SINGLE_THREAD:
    for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "NUMBA_NUM_THREADS"):
        os.environ[_var] = "1"

import numpy as np  # noqa: E402

from minitorch_compress.kernels import batchnorm as bn  # noqa: E402
from minitorch_compress.kernels import conv  # noqa: E402

# wall time normally; CPU time of the (single-threaded) process with --single-thread
CLOCK = time.process_time if SINGLE_THREAD else time.perf_counter


@dataclass(frozen=True)
class ConvLayer:
    name: str
    c: int
    k: int
    size: int  # input H = W
    ksize: int
    stride: int
    padding: int
    count: int  # how many ResNet-20 layers have this shape
    first: bool = False  # the network's first layer: no input gradient needed

    def out_size(self) -> int:
        return (self.size + 2 * self.padding - self.ksize) // self.stride + 1

    def macs_per_image(self) -> int:
        return self.k * self.c * self.ksize**2 * self.out_size() ** 2


# ResNet-20 on CIFAR-10: head, 3 stages x 3 basic blocks, 1x1 stride-2 shortcuts
LAYERS = [
    ConvLayer("head 3->16 3x3 32x32", 3, 16, 32, 3, 1, 1, 1, first=True),
    ConvLayer("s1 16->16 3x3 32x32", 16, 16, 32, 3, 1, 1, 6),
    ConvLayer("s2 16->32 3x3 s2 32->16", 16, 32, 32, 3, 2, 1, 1),
    ConvLayer("s2 32->32 3x3 16x16", 32, 32, 16, 3, 1, 1, 5),
    ConvLayer("s3 32->64 3x3 s2 16->8", 32, 64, 16, 3, 2, 1, 1),
    ConvLayer("s3 64->64 3x3 8x8", 64, 64, 8, 3, 1, 1, 5),
    ConvLayer("sc 16->32 1x1 s2 32->16", 16, 32, 32, 1, 2, 0, 1),
    ConvLayer("sc 32->64 1x1 s2 16->8", 32, 64, 16, 1, 2, 0, 1),
]

# (channels, size, BNs with ReLU, BNs without ReLU, residual add+ReLUs) per activation shape
BN_SHAPES = [(16, 32, 4, 3, 3), (32, 16, 3, 4, 3), (64, 8, 3, 4, 3)]


MIN_SECONDS = 0.0  # set from --min-seconds


def best_ms(fn, repeats: int) -> float:
    """Best wall time of `fn()` in ms over at least `repeats` runs (and MIN_SECONDS of
    running), after one untimed warm-up."""
    fn()
    best = float("inf")
    runs = 0
    start = time.perf_counter()
    while runs < repeats or time.perf_counter() - start < MIN_SECONDS:
        t0 = CLOCK()
        fn()
        best = min(best, CLOCK() - t0)
        runs += 1
    return best * 1e3


def gflops(macs: float, ms: float) -> float:
    return 2.0 * macs / (ms * 1e-3) / 1e9


def bench_convs(batch: int, repeats: int, rng: np.random.Generator) -> tuple[float, float, float]:
    """Print the conv table; return (forward ms, backward ms, forward MACs) of the network."""
    print(f"conv kernels, batch {batch} (ms, GFLOP/s; best of {repeats})")
    header = f"{'layer':26s} {'n':>2s} {'forward':>15s} {'grad_input':>15s} "
    header += f"{'grad_weight':>15s} {'backward':>15s}"
    print(header)
    fwd_total = bwd_total = macs_total = 0.0
    for layer in LAYERS:
        x = rng.standard_normal((batch, layer.c, layer.size, layer.size)).astype(np.float32)
        w = rng.standard_normal((layer.k, layer.c, layer.ksize, layer.ksize)).astype(np.float32)
        ho = layer.out_size()
        gy = rng.standard_normal((batch, layer.k, ho, ho)).astype(np.float32)
        s, p = layer.stride, layer.padding
        macs = float(layer.macs_per_image() * batch)
        t_fwd = best_ms(lambda: conv.conv2d_forward(x, w, s, p), repeats)  # noqa: B023
        t_gx = best_ms(lambda: conv.conv2d_grad_input(gy, w, x.shape, s, p), repeats)  # noqa: B023
        t_gw = best_ms(lambda: conv.conv2d_grad_weight(gy, x, w.shape, s, p), repeats)  # noqa: B023
        need_x = not layer.first
        t_bwd = best_ms(
            lambda: conv.conv2d_backward(gy, x, w, s, p, need_input_grad=need_x),  # noqa: B023
            repeats,
        )
        bwd_macs = macs * (2 if need_x else 1)
        print(
            f"{layer.name:26s} {layer.count:2d} "
            f"{t_fwd:7.2f} {gflops(macs, t_fwd):6.1f}  {t_gx:7.2f} {gflops(macs, t_gx):6.1f}  "
            f"{t_gw:7.2f} {gflops(macs, t_gw):6.1f}  {t_bwd:7.2f} {gflops(bwd_macs, t_bwd):6.1f}"
        )
        fwd_total += layer.count * t_fwd
        bwd_total += layer.count * t_bwd
        macs_total += layer.count * macs
    return fwd_total, bwd_total, macs_total


def bench_bn(batch: int, repeats: int, rng: np.random.Generator) -> tuple[float, float]:
    """Print the batch-norm table; return the network's (forward ms, backward ms) in BN and
    residual add+ReLU."""
    print(f"\nbatch-norm / add+ReLU kernels, batch {batch} (ms; best of {repeats})")
    print(
        f"{'shape':18s} {'bn_fwd':>7s} {'bn_fwd+relu':>11s} {'bn_bwd':>7s} {'bn_bwd+relu':>11s} "
        f"{'eval_fwd':>8s} {'add_relu':>8s} {'relu_bwd':>8s}  GB/s(bn_fwd)"
    )
    fwd_total = bwd_total = 0.0
    for c, size, n_relu, n_plain, n_add in BN_SHAPES:
        shape = (batch, c, size, size)
        x = rng.standard_normal(shape).astype(np.float32)
        gy = rng.standard_normal(shape).astype(np.float32)
        gamma = rng.standard_normal(c).astype(np.float32)
        beta = rng.standard_normal(c).astype(np.float32)
        times = {}
        for relu in (False, True):
            y, mean, _, invstd = bn.batchnorm_train_forward(x, gamma, beta, 1e-5, relu)
            times["fwd", relu] = best_ms(
                lambda: bn.batchnorm_train_forward(x, gamma, beta, 1e-5, relu),  # noqa: B023
                repeats,
            )
            times["bwd", relu] = best_ms(
                lambda: bn.batchnorm_train_backward(gy, x, y, gamma, mean, invstd, relu),  # noqa: B023
                repeats,
            )
        t_eval = best_ms(
            lambda: bn.batchnorm_eval_forward(x, gamma, beta, beta, gamma**2, 1e-5, True),  # noqa: B023
            repeats,
        )
        t_add = best_ms(lambda: bn.add_relu_forward(x, gy), repeats)  # noqa: B023
        t_rb = best_ms(lambda: bn.relu_backward(gy, x), repeats)  # noqa: B023
        # bytes of the train forward: read x twice, write y once
        gbs = 3 * x.nbytes / (times["fwd", False] * 1e-3) / 1e9
        print(
            f"{str(shape):18s} {times['fwd', False]:7.2f} {times['fwd', True]:11.2f} "
            f"{times['bwd', False]:7.2f} {times['bwd', True]:11.2f} {t_eval:8.2f} "
            f"{t_add:8.2f} {t_rb:8.2f}  {gbs:6.1f}"
        )
        fwd_total += n_relu * times["fwd", True] + n_plain * times["fwd", False] + n_add * t_add
        bwd_total += n_relu * times["bwd", True] + n_plain * times["bwd", False] + n_add * t_rb
    return fwd_total, bwd_total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--min-seconds", type=float, default=0.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--single-thread", action="store_true", help="one thread, CPU time (see module doc)"
    )
    args = parser.parse_args()
    from minitorch_compress.kernels.memory import keep_freed_memory
    keep_freed_memory()  # the allocator setting the command line applies (kernels/memory.py)
    global MIN_SECONDS
    MIN_SECONDS = args.min_seconds
    rng = np.random.default_rng(args.seed)
    print("load average before: {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))
    if SINGLE_THREAD:
        print("single thread, CPU time of the process (core-ms)")
    conv_fwd, conv_bwd, macs = bench_convs(args.batch, args.repeats, rng)
    bn_fwd, bn_bwd = bench_bn(args.batch, args.repeats, rng)
    print(f"\nResNet-20 at batch {args.batch}: {macs / args.batch / 1e6:.1f} M MACs per image")
    print(f"  conv forward : {conv_fwd:8.1f} ms  {gflops(macs, conv_fwd):6.1f} GFLOP/s")
    bwd_macs = 2 * macs - LAYERS[0].macs_per_image() * args.batch  # head: no grad_x
    print(f"  conv backward: {conv_bwd:8.1f} ms  {gflops(bwd_macs, conv_bwd):6.1f} GFLOP/s")
    print(f"  BN + add/ReLU: {bn_fwd:8.1f} ms forward, {bn_bwd:8.1f} ms backward")
    fwd, bwd = conv_fwd + bn_fwd, conv_bwd + bn_bwd
    per = " per core" if SINGLE_THREAD else ""
    print(
        f"  total        : {fwd:8.1f} ms forward ({args.batch / fwd * 1e3:6.0f} img/s{per}), "
        f"{bwd:8.1f} ms backward; forward+backward {args.batch / (fwd + bwd) * 1e3:5.0f} "
        f"img/s{per}"
    )
    print("load average after: {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))


if __name__ == "__main__":
    main()
