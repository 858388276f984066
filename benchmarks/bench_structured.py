"""What channel pruning buys: inference speed of a channel-pruned ResNet-20 against the full one.

    python benchmarks/bench_structured.py --weights results/models/lab4_<name>.mtc --json PATH
    python benchmarks/bench_structured.py --keep-fraction 0.5 --json PATH

Measures, in one run, on the kernel threads this machine gives (``MINITORCH_NUM_THREADS``),
inference images/s at batch 100 (eval mode, no gradients: the fused dense path) of the
unpruned ResNet-20 and of a channel-pruned one, timed in alternating rounds (median), and
writes ``{"dense_img_s", "pruned_img_s", "speedup", "flops_ratio", "time_per_flop",
"mid_channels", ...}``; ``time_per_flop`` is the pruned model's time per multiply-accumulate
relative to the full model's (1.0: time falls exactly with the FLOPs; Lab 4's goal is at most
1.05).

The pruned model is ``--weights FILE`` (a model file or checkpoint whose architecture has
fewer block-internal channels), or, with ``--keep-fraction F``, the pretrained model with
each block keeping the fraction F of its internal channels by conv1 filter L1 norm (Li et
al.'s rule, no finetuning: a speed measurement, not an accuracy one). FLOPs are the
multiply-accumulates of the convs and the FC (`compression.structured.resnet20_macs`).

Speed is a benchmark's business, never a test's: nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np

BATCH = 100


def pruned_model(args: argparse.Namespace):
    """The channel-pruned model the options name (see the module docstring)."""
    from minitorch_compress.compression.structured import l1_filter_keep, shrink
    from minitorch_compress.models.pretrained import load_pretrained

    if args.weights is not None:
        return load_pretrained(args.weights)
    full = load_pretrained()
    counts = [max(1, round(args.keep_fraction * m)) for m in full.mid_channels]
    return shrink(full, l1_filter_keep(full, counts)).eval()


def measure(full, pruned, rounds: int) -> dict:
    """Median seconds per batch of each model, timed in alternating rounds."""
    from minitorch_compress import Tensor, no_grad

    x = Tensor(np.random.default_rng(0).standard_normal((BATCH, 3, 32, 32)).astype(np.float32))
    times: dict[str, list[float]] = {"dense": [], "pruned": []}
    with no_grad():
        full(x), pruned(x)  # compile and warm both
        for _ in range(rounds):
            for name, model in (("dense", full), ("pruned", pruned)):
                start = time.perf_counter()
                model(x)
                times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def main(argv: list[str] | None = None) -> int:
    from minitorch_compress.cli import OneLineParser, run_cli
    from minitorch_compress.options import positive_int

    parser = OneLineParser(description=__doc__.splitlines()[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--weights", type=Path, help="a channel-pruned model (.mtc or .npz)")
    source.add_argument("--keep-fraction", type=float,
                        help="prune the pretrained model to this fraction of each block's "
                             "internal channels (L1 filter norm), in (0, 1]")
    parser.add_argument("--json", type=Path, default=None, help="write the figures here")
    parser.add_argument("--rounds", type=positive_int, default=7,
                        help="alternating timed rounds (the median is reported)")
    args = parser.parse_args(argv)
    if args.keep_fraction is not None and not 0 < args.keep_fraction <= 1:
        parser.error(f"--keep-fraction must be in (0, 1], got {args.keep_fraction}")
    return run_cli(lambda: run(args))


def run(args: argparse.Namespace) -> int:
    from minitorch_compress.compression.structured import resnet20_macs
    from minitorch_compress.experiments.common import git_commit
    from minitorch_compress.kernels.parallel import get_num_threads
    from minitorch_compress.models.pretrained import load_pretrained
    from minitorch_compress.paths import shown

    full, pruned = load_pretrained(), pruned_model(args)
    seconds = measure(full, pruned, args.rounds)
    source = (shown(args.weights) if args.weights is not None
              else f"pretrained, keep {args.keep_fraction:g} of each block's channels by L1")
    result = {"source": source, "mid_channels": list(pruned.mid_channels),
              "dense_img_s": BATCH / seconds["dense"], "pruned_img_s": BATCH / seconds["pruned"],
              "speedup": seconds["dense"] / seconds["pruned"],
              "flops_ratio": resnet20_macs(pruned.mid_channels) / resnet20_macs(),
              "batch": BATCH, "rounds": args.rounds, "threads": get_num_threads(),
              "commit": git_commit()}
    result["time_per_flop"] = seconds["pruned"] / seconds["dense"] / result["flops_ratio"]
    print(f"{source}: channels {result['mid_channels']}; dense {result['dense_img_s']:.0f} "
          f"img/s, pruned {result['pruned_img_s']:.0f} img/s ({result['speedup']:.2f}x; "
          f"FLOPs {result['flops_ratio']:.1%} of the full model; "
          f"{result['time_per_flop']:.2f}x its time per FLOP)")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
