"""Lab 2: magnitude pruning of the pretrained ResNet-20 on CIFAR-10, parts (a)-(e).

Usage (from the repository root)::

    python labs/lab2_pruning.py --part a        # pretrained accuracy (evaluation only)
    python labs/lab2_pruning.py --part b        # one-shot pruning at 40/60/80 % (evaluation only)
    python labs/lab2_pruning.py --part c        # prune 80 % + 20 epochs of masked finetuning
    python labs/lab2_pruning.py --part all --resume   # everything; continues interrupted runs

Each part writes ``<out-dir>/lab2_<part>.json``; ``<out-dir>/lab2.md`` and the figures in
``<out-dir>/lab2/`` are regenerated after every part from the JSON files present. The default
``--out-dir`` is ``results/local/`` (git-ignored); ``--out-dir results`` publishes into the
committed ``results/``, where a smoke run never replaces a full-size result. The best
checkpoints of (c)-(e) go to ``runs/lab2_<part>/best.npz`` (Lab 3 starts from them).
``--epochs N --subset M --test-subset K`` make a quick smoke run (labelled as such in the
report; the iterative schedule of (d)/(e) is then compressed to max(1, N // 2) pruning
epochs).
The experiments live in ``minitorch_compress.experiments.lab2``; from Python,
``lab2.run(lab2.Lab2Options(part="c", epochs=1, subset=1000))`` does what this script does
(without the page), and ``lab2.part_c(...)`` runs one part and returns its payload.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from minitorch_compress.cli import run_cli
from minitorch_compress.experiments import lab2
from minitorch_compress.options import lab_parser
from minitorch_compress.reports import lab2 as report


def build_parser() -> argparse.ArgumentParser:
    """The shared lab options (--part, --epochs, --subset, --resume, --out-dir, ...)."""
    return lab_parser(__doc__.split("\n\n")[0], lab2.PARTS)


def run(options: lab2.Lab2Options) -> int:
    """Run the chosen parts, re-rendering lab2.md and its figures after each one."""
    lab2.run(options, after_part=lambda: report.write_report(options.out_dir))
    print(f"wrote {options.out_dir / 'lab2.md'} and the figures in {options.out_dir / 'lab2'}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; user errors (missing data or weights, ...) print one line, exit status 2."""
    args = build_parser().parse_args(argv)
    return run_cli(lambda: run(lab2.Lab2Options.from_args(args)))  # its checks are one line


if __name__ == "__main__":
    raise SystemExit(main())
