"""Lab 5: the course's last claims measured, and every claim in one table.

Usage (from the repository root)::

    python labs/lab5_claims.py --part b     # early exit (claim 1.8): internal classifiers
    python labs/lab5_claims.py --part c     # claims.json / claims.md from the result files
    python labs/lab5_claims.py --part all   # b, then c

``--part a`` (mixed precision, claim 1.10) is not implemented yet (issue #38). (b) writes
``<out-dir>/lab5_b.json``, ``<out-dir>/lab5.md`` with its figure, and the trained classifiers
``<out-dir>/models/lab5_b_exits.npz``; ``--speed-rounds N`` also times the early-exit model
against the full one (0, the default: not timed). (c) only reads the result files already in
``<out-dir>`` and writes ``claims.json`` and ``claims.md``. The default ``--out-dir`` is
``results/local/`` (git-ignored); ``--out-dir results`` publishes. The experiment lives in
``minitorch_compress.experiments.lab5``, the pages in ``minitorch_compress.reports.lab5``
and ``minitorch_compress.reports.claims``.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from minitorch_compress.cli import OneLineParser, ensure_writable_dir, positive_int, run_cli
from minitorch_compress.errors import MinitorchError
from minitorch_compress.experiments import lab5
from minitorch_compress.paths import LOCAL_RESULTS_DIR, RUNS_DIR
from minitorch_compress.reports import claims
from minitorch_compress.reports import lab5 as report


def non_negative_int(text: str) -> int:
    """argparse type: a whole number >= 0."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def parser() -> argparse.ArgumentParser:
    """The script's options (those of the other labs that mean something here)."""
    p = OneLineParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--part", choices=[*lab5.PARTS, "all"], default="all")
    p.add_argument("--epochs", type=positive_int, default=lab5.FULL_EPOCHS,
                   help=f"epochs of the internal classifiers (default {lab5.FULL_EPOCHS})")
    p.add_argument("--subset", type=positive_int, default=None,
                   help="use only the first N training images")
    p.add_argument("--test-subset", type=positive_int, default=None,
                   help="use only the first N test images")
    p.add_argument("--seed", type=int, default=0,
                   help="seed of the classifiers' initialisation and batch order (default 0)")
    p.add_argument("--speed-rounds", type=non_negative_int, default=0,
                   help="alternating timing rounds, full vs early-exit model, at batch 1 and "
                        "100 (default 0: speed not measured)")
    reuse = p.add_mutually_exclusive_group()
    reuse.add_argument("--resume", action="store_true",
                       help="reuse the pooled block features cached under --run-root")
    reuse.add_argument("--overwrite", action="store_true",
                       help="recompute and replace the cached features (what a run without "
                            "--resume does; accepted as in the other labs)")
    p.add_argument("--out-dir", type=Path, default=LOCAL_RESULTS_DIR,
                   help="where JSON, pages, figures and models go (default: results/local/)")
    p.add_argument("--run-root", type=Path, default=RUNS_DIR,
                   help="where the pooled features are cached (default: runs/)")
    p.add_argument("--data-dir", default=None, help="CIFAR-10 folder or .tar.gz")
    p.add_argument("--download", action="store_true",
                   help="download CIFAR-10 (official URL, md5-checked) if not found")
    p.add_argument("--weights", default=None, help="pretrained checkpoint (default: found)")
    p.add_argument("--no-progress", action="store_true", help="print less")
    return p


def options(args: argparse.Namespace, argv: Sequence[str]) -> lab5.Lab5Options:
    """The frozen options of a parsed command line."""
    return lab5.Lab5Options(
        epochs=args.epochs, subset=args.subset, test_subset=args.test_subset, seed=args.seed,
        out_dir=args.out_dir, run_root=args.run_root, resume=args.resume,
        speed_rounds=args.speed_rounds, data_dir=args.data_dir, weights=args.weights,
        download=args.download, progress=not args.no_progress, argv=tuple(argv))


def run(part: str, opts: lab5.Lab5Options) -> int:
    """Run the chosen part(s); (b) re-renders lab5.md, (c) claims.json and claims.md."""
    if part == "a":
        raise MinitorchError(lab5.PART_A_REFUSAL)
    ensure_writable_dir(opts.out_dir, "--out-dir")
    if part in ("b", "all"):
        lab5.part_b(opts)
        print(f"wrote {report.write_report(opts.out_dir)}")
    if part in ("c", "all"):
        claims.write_claims(opts.out_dir)
        print(f"wrote {opts.out_dir / 'claims.json'} and {opts.out_dir / 'claims.md'}")
    if part == "all":
        print(f"note: {lab5.PART_A_REFUSAL}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; user errors print one line and exit with status 2."""
    import sys

    words = list(sys.argv[1:] if argv is None else argv)
    args = parser().parse_args(words)
    return run_cli(lambda: run(args.part, options(args, words)))


if __name__ == "__main__":
    raise SystemExit(main())
