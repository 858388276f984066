"""Sweep: ResNet-20 inference speed under alternative kernel settings, in alternating rounds.

Usage::

    python benchmarks/sweep_inference.py [--threads 2] [--batch 100] [--rounds 5]
                                         [--repeats 7] [--json PATH]
    python benchmarks/sweep_inference.py --from-json PATH   # the table of a saved sweep

The conv kernels' choices (`kernels/dispatch.py`: the register-tiled forward and its tile)
and the GEMM path's chunk size were set by measurement on one host
(``results/benchmark.md``). This script re-measures those choices on the machine it runs on:
each *setting* overrides some constants for the duration of a timing, the settings take
turns within every round (the order rotated from round to round, so the machine's drift
falls on all of them alike), and the median images/s of each setting over the rounds is
printed beside the default's. Nothing is asserted; the host's CPU name (llvmlite) is
printed with the figures, because the answer depends on it.

Speed is measured here, never in tests.

Like the command line, the script first applies the allocator setting of `kernels/memory.py`
(``MINITORCH_KEEP_FREED_MEMORY=0`` leaves malloc alone).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections.abc import Callable

# first: bench_resnet20 fixes the thread counts from --threads when imported, before numpy
# starts its pools; its `median_time` times the calls here too
from bench_resnet20 import median_time

# isort: split
import numpy as np

KB = 1024

# name -> {(module, attribute): value}; "conv" is kernels.conv, "dispatch" kernels.dispatch.
# A dict-valued attribute is updated key by key (the others keep their values).
SETTINGS: dict[str, dict[tuple[str, str], object]] = {
    "default": {},
    "cols chunk 1 MB": {("conv", "_CHUNK_BYTES"): 1024 * KB},
    "cols chunk 512 KB": {("conv", "_CHUNK_BYTES"): 512 * KB},
    "cols chunk 256 KB": {("conv", "_CHUNK_BYTES"): 256 * KB},
    "tiles of 4x4": {("dispatch", "TILE_VECTORS"): 4},
    "tiles of 4x3": {("dispatch", "TILE_VECTORS"): 3},
    "im2col + GEMM forward everywhere": {
        ("dispatch", "forward_kernel"): lambda *_: "im2col_gemm"},
}


def _modules() -> dict[str, object]:
    from minitorch_compress.kernels import conv, dispatch

    return {"conv": conv, "dispatch": dispatch}


def apply(setting: dict[tuple[str, str], object]) -> Callable[[], None]:
    """Override the constants of `setting`; returns the function that restores them."""
    modules, saved = _modules(), []
    for (module, attr), value in setting.items():
        old = getattr(modules[module], attr)
        saved.append((modules[module], attr, old))
        new = {**old, **value} if isinstance(old, dict) else value
        setattr(modules[module], attr, new)

    def restore() -> None:
        for module, attr, old in reversed(saved):
            setattr(module, attr, old)
    return restore


def images_per_second(infer: Callable[[], None], batch: int, repeats: int) -> float:
    """batch / median wall time of `infer()` over `repeats` calls after one warm-up."""
    return batch / median_time(infer, repeats, warmup=1)


def random_inference(batch: int) -> Callable[[], None]:
    """One eval-mode forward of a random ResNet-20 (seed 0) on `batch` random images, as a
    call with no arguments: what the sweep and the profile time."""
    from minitorch_compress import Tensor, no_grad
    from minitorch_compress.models import resnet20

    rng = np.random.default_rng(0)
    model = resnet20(rng=rng)
    model.eval()
    x = Tensor(rng.standard_normal((batch, 3, 32, 32)).astype(np.float32))

    def infer() -> None:
        with no_grad():
            model(x)

    return infer


def sweep(batch: int, rounds: int, repeats: int) -> dict[str, list[float]]:
    """{setting: [images/s per round]} for eval-mode inference of a random ResNet-20."""
    infer = random_inference(batch)
    names = list(SETTINGS)
    for name in names:  # untimed: every path compiled (or loaded from numba's cache) first
        restore = apply(SETTINGS[name])
        try:
            infer()
        finally:
            restore()
    figures: dict[str, list[float]] = {name: [] for name in names}
    for r in range(rounds):
        order = names[r % len(names):] + names[:r % len(names)]
        for name in order:
            restore = apply(SETTINGS[name])
            try:
                figures[name].append(images_per_second(infer, batch, repeats))
            finally:
                restore()
        print(f"round {r + 1}/{rounds}: " + ", ".join(
            f"{name} {figures[name][-1]:.0f}" for name in names), flush=True)
    return figures


def render(result: dict) -> str:
    """The table of a sweep's figures, and which settings fall outside the default's spread."""
    figures = result["img_per_s"]
    base_values = figures["default"]
    base = statistics.median(base_values)
    lines = [f"inference, batch {result['batch']}, {result['threads']} threads, host "
             f"{result['cpu']}, median of {result['rounds']} alternating rounds:", "",
             "| setting | img/s (range) | / default |", "|---|---:|---:|"]
    beyond = []
    for name, values in figures.items():
        med = statistics.median(values)
        lines.append(f"| {name} | {med:,.0f} ({min(values):,.0f}-{max(values):,.0f}) | "
                     f"{med / base:.2f}x |")
        if name != "default" and not min(base_values) <= med <= max(base_values):
            beyond.append(f"{name} ({med / base:.2f}x)")
    lines += ["", "Medians outside the default's range over the rounds: "
              + (", ".join(beyond) if beyond else "none") + "; every other setting is "
              "within the machine's round-to-round spread of the default."]
    return "\n".join(lines)


def timing_parser(description: str, saved: str) -> argparse.ArgumentParser:
    """The options this script and `profile_inference.py` share: --threads, --batch,
    --rounds, --repeats, --json, and --from-json (print the tables of a saved `saved`)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--json", default=None, help="write the figures here")
    parser.add_argument("--from-json", default=None, metavar="PATH",
                        help=f"print the table of a {saved} saved with --json (measures nothing)")
    return parser


def check_counts(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Exit with one usage line (status 2) unless every count is at least 1."""
    if min(args.threads, args.batch, args.rounds, args.repeats) < 1:
        parser.error("--threads, --batch, --rounds and --repeats must be at least 1")


def print_saved(path: str, render: Callable[[dict], str], saved: str) -> int:
    """Print render(the JSON at path); 0, or 2 with one line when it cannot be read."""
    try:
        with open(path) as f:
            print(render(json.load(f)))
    except (OSError, ValueError, KeyError) as error:
        print(f"error: cannot read the {saved} {path}: {error}", file=sys.stderr)
        return 2
    return 0


def print_and_save(result: dict, render: Callable[[dict], str], path: str | None) -> int:
    """Print render(result) and, with a path (--json), write result there as JSON; 0."""
    print("\n" + render(result))
    if path:
        with open(path, "w") as f:
            json.dump(result, f, indent=2)
            f.write("\n")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = timing_parser(__doc__.split("\n\n")[0], "sweep")
    args = parser.parse_args(argv)
    check_counts(parser, args)
    from minitorch_compress.kernels.memory import keep_freed_memory
    keep_freed_memory()  # the allocator setting the command line applies (kernels/memory.py)
    if args.from_json:
        return print_saved(args.from_json, render, "sweep")

    import llvmlite.binding as llvm

    result = {"cpu": llvm.get_host_cpu_name(), "threads": args.threads, "batch": args.batch,
              "rounds": args.rounds, "repeats": args.repeats,
              "img_per_s": sweep(args.batch, args.rounds, args.repeats)}
    return print_and_save(result, render, args.json)


if __name__ == "__main__":
    raise SystemExit(main())
