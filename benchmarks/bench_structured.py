"""What channel pruning buys: inference speed of a channel-pruned ResNet-20 against the full one.

    python benchmarks/bench_structured.py --weights results/models/lab4_<name>.mtc --json PATH
    python benchmarks/bench_structured.py --keep-fraction 0.5 --json PATH
    MINITORCH_NUM_THREADS=1 python benchmarks/bench_structured.py --weights FILE --split \
        --clock thread

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

With ``--split``, each round also times every conv of both models alone, twice: as the
model runs it (conv with its fused batch norm / residual add / ReLU epilogue) and the plain
conv kernel without the epilogue (`experiments/conv_time.py`); the script then prints, per
conv, the time of each and the conv's time per MAC relative to the same conv of the full
model, and splits each model's time into the conv kernels, their epilogues and calls (fused
minus plain) and the rest of the forward (pooling, FC, glue: the whole minus the fused
convs). ``--clock thread`` reads the calling thread's CPU time instead of the wall clock
(only with one kernel thread, ``MINITORCH_NUM_THREADS=1``): on a busy machine, the time the
scheduler gives to other processes then does not count.

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


def measure(full, pruned, rounds: int, split: bool = False, clock=time.perf_counter) -> dict:
    """Median seconds per batch of each model, timed in alternating rounds; with `split`,
    also the median seconds of each of its convs, fused and plain ({"dense": s, "pruned": s,
    "dense_convs": {"fused": [s...], "plain": [s...], "calls": [...]}, ...})."""
    from minitorch_compress import Tensor, no_grad
    from minitorch_compress.errors import MinitorchError
    from minitorch_compress.experiments.conv_time import record_convs, time_each

    x = Tensor(np.random.default_rng(0).standard_normal((BATCH, 3, 32, 32)).astype(np.float32))
    models = {"dense": full, "pruned": pruned}
    # recording runs one forward of each model: it compiles and warms both
    calls = {name: record_convs(model, x) for name, model in models.items()}
    if split and any(c is None for c in calls.values()):
        raise MinitorchError("--split: a model runs sparse convs; this split times dense ones")
    times: dict[str, list[float]] = {name: [] for name in models}
    fused = {name: [] for name in models}
    plain = {name: [] for name in models}
    with no_grad():
        for name in models:
            if split:  # warm both ways of running the convs
                time_each(calls[name])
                time_each(calls[name], fused=True)
        for _ in range(rounds):
            for name, model in models.items():
                start = clock()
                model(x)
                times[name].append(clock() - start)
                if split:
                    fused[name].append(time_each(calls[name], fused=True, clock=clock))
                    plain[name].append(time_each(calls[name], clock=clock))
    out: dict = {name: statistics.median(t) for name, t in times.items()}
    if split:
        for name in models:
            out[f"{name}_convs"] = {
                "fused": [statistics.median(t) for t in zip(*fused[name], strict=True)],
                "plain": [statistics.median(t) for t in zip(*plain[name], strict=True)],
                "calls": calls[name]}
    return out


def print_split(seconds: dict) -> dict:
    """The per-conv table and each model's split (see the module notes); returns them for
    the JSON (times in ms)."""
    from minitorch_compress.errors import MinitorchError

    dense, pruned = seconds["dense_convs"], seconds["pruned_convs"]
    if len(dense["calls"]) != len(pruned["calls"]):
        raise MinitorchError("--split: the two models do not run the same sequence of convs")
    print(f"{'conv (full -> pruned)':40s} {'MACs':>6s} {'fused ms':>17s} {'plain ms':>17s} "
          f"{'plain time/MAC':>14s}")
    layers = []
    for i, (cd, cp) in enumerate(zip(dense["calls"], pruned["calls"], strict=True)):
        macs = cp.macs / cd.macs
        per_mac = (pruned["plain"][i] / cp.macs) / (dense["plain"][i] / cd.macs)
        print(f"{cd.describe() + ' -> ' + cp.describe().split()[1]:40s} {macs:6.1%} "
              f"{dense['fused'][i] * 1e3:8.2f}{pruned['fused'][i] * 1e3:9.2f} "
              f"{dense['plain'][i] * 1e3:8.2f}{pruned['plain'][i] * 1e3:9.2f} "
              f"{per_mac:13.2f}x")
        layers.append({"full": cd.describe(), "pruned": cp.describe(), "macs_ratio": macs,
                       "full_ms": [1e3 * dense["fused"][i], 1e3 * dense["plain"][i]],
                       "pruned_ms": [1e3 * pruned["fused"][i], 1e3 * pruned["plain"][i]],
                       "plain_time_per_mac": per_mac})
    shares = {}
    for name, convs in (("dense", dense), ("pruned", pruned)):
        whole, fused, plain = seconds[name], sum(convs["fused"]), sum(convs["plain"])
        shares[name] = {"conv_kernels": plain / whole,
                        "epilogues_and_calls": (fused - plain) / whole,
                        "rest_of_forward": (whole - fused) / whole}
        print(f"{name}: {whole * 1e3:.1f} ms a batch = conv kernels {plain / whole:.0%}, "
              f"their epilogues and calls {(fused - plain) / whole:.0%}, the rest of the "
              f"forward {(whole - fused) / whole:.0%}")
    macs = (sum(c.macs for c in pruned["calls"]) / sum(c.macs for c in dense["calls"]))
    conv_per_mac = sum(pruned["plain"]) / sum(dense["plain"]) / macs
    print(f"conv kernels' time per MAC, pruned against full: {conv_per_mac:.2f}x")
    return {"layers": layers, "shares": shares, "conv_time_per_mac": conv_per_mac}


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
    parser.add_argument("--split", action="store_true",
                        help="also time every conv alone, fused and plain, and split each "
                             "model's time per layer and per op")
    parser.add_argument("--clock", choices=("wall", "thread"), default="wall",
                        help="wall clock (default), or the calling thread's CPU time (one "
                             "kernel thread only)")
    args = parser.parse_args(argv)
    if args.keep_fraction is not None and not 0 < args.keep_fraction <= 1:
        parser.error(f"--keep-fraction must be in (0, 1], got {args.keep_fraction}")
    return run_cli(lambda: run(args))


def run(args: argparse.Namespace) -> int:
    from minitorch_compress.compression.structured import resnet20_macs
    from minitorch_compress.errors import MinitorchError
    from minitorch_compress.experiments.common import git_commit
    from minitorch_compress.kernels.parallel import get_num_threads
    from minitorch_compress.models.pretrained import load_pretrained
    from minitorch_compress.paths import shown

    if args.clock == "thread" and get_num_threads() != 1:
        raise MinitorchError(f"--clock thread counts the calling thread alone: run it with "
                             f"MINITORCH_NUM_THREADS=1 (now {get_num_threads()} threads)")
    full, pruned = load_pretrained(), pruned_model(args)
    clock = time.thread_time if args.clock == "thread" else time.perf_counter
    seconds = measure(full, pruned, args.rounds, args.split, clock)
    source = (shown(args.weights) if args.weights is not None
              else f"pretrained, keep {args.keep_fraction:g} of each block's channels by L1")
    result = {"source": source, "mid_channels": list(pruned.mid_channels),
              "dense_img_s": BATCH / seconds["dense"], "pruned_img_s": BATCH / seconds["pruned"],
              "speedup": seconds["dense"] / seconds["pruned"],
              "flops_ratio": resnet20_macs(pruned.mid_channels) / resnet20_macs(),
              "batch": BATCH, "rounds": args.rounds, "threads": get_num_threads(),
              "clock": args.clock, "commit": git_commit()}
    result["time_per_flop"] = seconds["pruned"] / seconds["dense"] / result["flops_ratio"]
    print(f"{source}: channels {result['mid_channels']}; dense {result['dense_img_s']:.0f} "
          f"img/s, pruned {result['pruned_img_s']:.0f} img/s ({result['speedup']:.2f}x; "
          f"FLOPs {result['flops_ratio']:.1%} of the full model; "
          f"{result['time_per_flop']:.2f}x its time per FLOP)")
    if args.split:
        result["split"] = print_split(seconds)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
