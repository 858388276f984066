"""How a 3x3 conv's time falls with its output channels: the part that does not shrink.

    python benchmarks/bench_conv_width.py [--batch 100] [--rounds 7] [--json PATH]

Channel pruning narrows a conv's output channels K (and the next conv's input channels C);
its MACs fall in proportion, its time less so. For each 3x3 input shape of ResNet-20 (stride
1 and 2) this times the forward (`kernels.conv.conv2d_forward`, the kernel
`kernels/dispatch.py` picks, on the kernel threads) at K = 4, 8, 16, 32, 64 in alternating
rounds (median), and fits time = fixed + per_channel * K by least squares. The fixed part
is what a narrower K does not shrink: copying each image's C input planes into the kernel's
padded layout (`direct_conv_tiled._pack_*`), the scratch and the call. Its share at K = C/2
against K = C is why a channel-pruned model's convs take more time per MAC than the full
model's (results/lab4.md, (d)). PyTorch's conv2d is timed and fitted beside ours when torch
is importable, in a child process (not in alternating rounds: its OpenMP threads spin after
each call and would take the cores from ours).

Speed is a benchmark's business, never a test's: nothing here asserts a time.

Like the command line, the script first applies the allocator setting of `kernels/memory.py`.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

# (name, input channels C, input size, stride): the 3x3 convs of ResNet-20 (the stride-2
# ones open stages 2 and 3 from the previous stage's width)
SHAPES = [("16 ch 32x32 s1", 16, 32, 1), ("16 ch 32x32 s2", 16, 32, 2),
          ("32 ch 16x16 s1", 32, 16, 1), ("32 ch 16x16 s2", 32, 16, 2),
          ("64 ch 8x8 s1", 64, 8, 1)]
WIDTHS = (4, 8, 16, 32, 64)


def ours():
    """fn(x, w, stride): our forward, on the kernel threads."""
    from minitorch_compress.kernels.conv import conv2d_forward

    return lambda x, w, stride: conv2d_forward(x, w, stride, 1)


def pytorch(threads: int):
    """fn(x, w, stride): PyTorch's conv2d on `threads` threads (import torch first)."""
    import torch

    torch.set_num_threads(threads)

    def conv(x, w, stride):
        with torch.no_grad():
            return torch.nn.functional.conv2d(torch.from_numpy(x), torch.from_numpy(w),
                                              stride=stride, padding=1)

    return conv


def fit(widths: list[int], ms: list[float]) -> tuple[float, float]:
    """(fixed ms, ms per output channel) of the least-squares line through (K, ms)."""
    per_channel, fixed = np.polyfit(np.asarray(widths, float), np.asarray(ms, float), 1)
    return float(fixed), float(per_channel)


def measure(fn, batch: int, rounds: int) -> dict:
    """{shape name: {"ms": {K: median ms}, "fixed_ms", "per_channel_ms", "fixed_share_half"
    (fixed / time at K = C/2), "fixed_share_full" (at K = C)}} of conv `fn`, the widths
    alternating in each round."""
    rng = np.random.default_rng(0)
    out = {}
    for name, c, size, stride in SHAPES:
        x = rng.standard_normal((batch, c, size, size)).astype(np.float32)
        weights = {k: rng.standard_normal((k, c, 3, 3)).astype(np.float32) for k in WIDTHS}
        times = {k: [] for k in WIDTHS}
        for w in weights.values():  # compile and warm every shape
            fn(x, w, stride)
            fn(x, w, stride)
        for _ in range(rounds):
            for k, w in weights.items():
                start = time.perf_counter()
                fn(x, w, stride)
                times[k].append(time.perf_counter() - start)
        ms = {k: 1e3 * statistics.median(t) for k, t in times.items()}
        fixed, per_channel = fit(list(ms), list(ms.values()))
        out[name] = {"ms": ms, "fixed_ms": fixed, "per_channel_ms": per_channel,
                     "fixed_share_half": fixed / (fixed + per_channel * c / 2),
                     "fixed_share_full": fixed / (fixed + per_channel * c)}
    return out


def pytorch_in_child(batch: int, rounds: int, threads: int) -> dict | None:
    """`measure` of PyTorch's conv in a fresh interpreter (its OpenMP threads spin after each
    call and would take the cores from ours if both ran in one process); None without torch."""
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    out = subprocess.run([sys.executable, os.path.abspath(__file__), "--torch-child",
                          "--batch", str(batch), "--rounds", str(rounds), "--threads",
                          str(threads)], env=env, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        sys.stderr.write(out.stderr)
        raise SystemExit(f"the PyTorch child failed (exit {out.returncode})")
    figures = json.loads(out.stdout.strip().splitlines()[-1])
    # JSON keys are strings: the widths back to numbers
    return None if figures is None else {
        name: {**f, "ms": {int(k): v for k, v in f["ms"].items()}} for name, f in figures.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--json", type=Path, help="write the figures here")
    parser.add_argument("--torch-child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--threads", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.batch < 1 or args.rounds < 1:
        parser.error("--batch and --rounds take a whole number >= 1")
    if args.torch_child:  # no minitorch_compress imported here
        try:
            fn = pytorch(args.threads)
        except ImportError:
            print("null")
            return 0
        print(json.dumps(measure(fn, args.batch, args.rounds)))
        return 0
    from minitorch_compress.kernels.common import cpu_name
    from minitorch_compress.kernels.memory import keep_freed_memory
    from minitorch_compress.kernels.parallel import get_num_threads

    keep_freed_memory()  # the allocator setting the command line applies (kernels/memory.py)
    figures = {"ours": measure(ours(), args.batch, args.rounds)}
    if (theirs := pytorch_in_child(args.batch, args.rounds, get_num_threads())) is not None:
        figures["pytorch"] = theirs
    print(f"batch {args.batch}, median of {args.rounds} rounds (the widths alternating), "
          f"{get_num_threads()} threads, CPU {cpu_name()}; PyTorch in a child process")
    print(f"{'input':<16}{'impl':<9}" + "".join(f"{'K=' + str(k):>8}" for k in WIDTHS)
          + f"{'fixed ms':>10}{'ms per K':>10}{'fixed @C/2':>12}{'fixed @C':>10}")
    for name, *_ in SHAPES:
        for impl, shapes in figures.items():
            f = shapes[name]
            print(f"{name:<16}{impl:<9}" + "".join(f"{f['ms'][k]:8.2f}" for k in WIDTHS)
                  + f"{f['fixed_ms']:10.2f}{f['per_channel_ms']:10.3f}"
                  f"{f['fixed_share_half']:12.0%}{f['fixed_share_full']:10.0%}")
    if args.json:
        args.json.write_text(json.dumps({"batch": args.batch, "rounds": args.rounds,
                                         "threads": get_num_threads(), "cpu": cpu_name(),
                                         "figures": figures}, indent=1) + "\n")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
