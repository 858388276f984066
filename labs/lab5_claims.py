"""Lab 5: the course's last claims measured, and every claim in one table.

Usage (from the repository root)::

    python labs/lab5_claims.py --part a     # mixed precision (claim 1.10) vs uniform bits
    python labs/lab5_claims.py --part b     # early exit (claim 1.8): internal classifiers
    python labs/lab5_claims.py --part c     # claims.json / claims.md from the result files
    python labs/lab5_claims.py --part all   # a, b, then c

(a) finetunes one mixed-precision model per ``--targets`` entry (c2, c3: no larger than
``results/models/lab3_c_2bit.mtc`` / ``lab3_c_3bit.mtc``; d2: the 80 %-sparse start, no
larger than ``lab3_d_2bit.mtc``), each in its own run folder ``<run-root>/lab5_a_<target>``,
rewriting ``<out-dir>/lab5_a.json`` and ``lab5.md`` after each; ``--resume`` continues an
interrupted finetune and keeps the targets already finished; its models go to
``<out-dir>/models/lab5_a_<target>.mtc``. (b) writes
``<out-dir>/lab5_b.json``, ``<out-dir>/lab5.md`` with its figure, and the trained classifiers
``<out-dir>/models/lab5_b_exits.npz``; ``--epochs`` counts the classifiers' epochs,
``--resume`` reuses the pooled block features cached under ``--run-root``, and
``--speed-rounds N`` also times the early-exit model against the full one (0, the default:
not timed). (c) only reads the result files already in ``<out-dir>`` and writes
``claims.json`` and ``claims.md``. The default ``--out-dir`` is ``results/local/``
(git-ignored); ``--out-dir results`` publishes. The experiment lives in
``minitorch_compress.experiments.lab5``, the pages in ``minitorch_compress.reports.lab5``
and ``minitorch_compress.reports.claims``.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from minitorch_compress.cli import run_cli
from minitorch_compress.experiments import lab5
from minitorch_compress.experiments.lab5_layout import TARGETS
from minitorch_compress.options import ensure_writable_dir, lab_parser, positive_int
from minitorch_compress.reports import claims
from minitorch_compress.reports import lab5 as report


def non_negative_int(text: str) -> int:
    """argparse type: a whole number >= 0."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The shared lab options and Lab 5's own (the fields of `lab5.Lab5Options`)."""
    parser = lab_parser(__doc__.split("\n\n")[0], lab5.PARTS)
    parser.add_argument("--targets", nargs="+", choices=list(TARGETS), default=list(TARGETS),
                        help="(a): the uniform Lab 3 models to match in file size (default: "
                             "all: c2 c3 d2)")
    parser.add_argument("--sensitivity-images", type=positive_int,
                        default=lab5.SENSITIVITY_IMAGES,
                        help="(a): training images the per-layer sensitivity is measured on "
                             f"(default {lab5.SENSITIVITY_IMAGES:,})")
    parser.add_argument("--speed-rounds", type=non_negative_int, default=0,
                        help="(b): alternating timing rounds, full vs early-exit model, at "
                             "batch 1 and 100 (default 0: speed not measured)")
    return parser


def run(options: lab5.Lab5Options) -> int:
    """Run the chosen part(s); (a) and (b) re-render lab5.md, (c) claims.json and claims.md."""
    ensure_writable_dir(options.out_dir, "--out-dir")
    if options.part in ("a", "all"):
        lab5.part_a(options, after_target=lambda: report.write_report(options.out_dir))
        print(f"wrote {report.write_report(options.out_dir)}")
    if options.part in ("b", "all"):
        lab5.part_b(options)
        print(f"wrote {report.write_report(options.out_dir)}")
    if options.part in ("c", "all"):
        claims.write_claims(options.out_dir)
        print(f"wrote {options.out_dir / 'claims.json'} and {options.out_dir / 'claims.md'}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; user errors print one line and exit with status 2."""
    args = build_parser().parse_args(argv)
    return run_cli(lambda: run(lab5.Lab5Options.from_args(args)))


if __name__ == "__main__":
    raise SystemExit(main())
