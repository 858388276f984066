"""Lab 4: structured (channel) sparsity that makes ResNet-20 smaller, and the course's
true/false claims 1.2, 1.3, 1.4 and 1.6 measured.

Usage (from the repository root)::

    python labs/lab4_structured.py --part a     # group-Lasso finetunes, zero channels removed
    python labs/lab4_structured.py --part b     # the smaller networks finetuned; L1 baseline
    python labs/lab4_structured.py --part c     # Lasso + one small threshold vs iterative
    python labs/lab4_structured.py --part d     # measured inference speed of every model
    python labs/lab4_structured.py --part e     # four methods at equal MAC budgets
    python labs/lab4_structured.py --part all --resume

``--strengths`` / ``--l1-strengths`` choose the penalty strengths (the defaults come from
the first full runs: `minitorch_compress.experiments.lab4` says how); ``--budgets`` and
``--methods`` what (e) runs, e.g. one budget and method at a time::

    python labs/lab4_structured.py --part e --budgets 0.6 --methods l1_kd --resume Each part writes
``<out-dir>/lab4_<part>.json`` and its models ``<out-dir>/models/lab4_*.mtc``;
``<out-dir>/lab4.md`` is regenerated after every part. The default ``--out-dir`` is
``results/local/`` (git-ignored); ``--out-dir results`` publishes. The other lab options
(``--epochs``, ``--subset``, ``--test-subset``, ``--resume``, ``--run-root``, ...) work as
in Labs 2 and 3. The experiment lives in ``minitorch_compress.experiments.lab4``, the page
in ``minitorch_compress.reports.lab4``.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from minitorch_compress.cli import run_cli
from minitorch_compress.errors import MinitorchError
from minitorch_compress.experiments import lab4
from minitorch_compress.options import lab_parser, positive_float, positive_int
from minitorch_compress.reports import lab4 as report


def build_parser() -> argparse.ArgumentParser:
    """The shared lab options and Lab 4's own (the fields of `lab4.Lab4Options`)."""
    parser = lab_parser(__doc__.split("\n\n")[0], lab4.PARTS)
    parser.add_argument("--strengths", nargs="+", default=list(lab4.STRENGTHS),
                        metavar="LAMBDA", help="group-Lasso strengths of (a)/(b) (default "
                                               f"{' '.join(lab4.STRENGTHS)})")
    parser.add_argument("--l1-strengths", nargs="+", default=list(lab4.L1_STRENGTHS),
                        metavar="LAMBDA",
                        help=f"Lasso strengths of (c) (default {' '.join(lab4.L1_STRENGTHS)})")
    parser.add_argument("--no-l1-baseline", action="store_true",
                        help="(b): finetune only the group-Lasso models, not the L1-filter "
                             "baseline (its 20 epochs double the part's time; a later run "
                             "without this option adds it, --resume keeps the rest)")
    parser.add_argument("--round-widths", action="store_true",
                        help="(a): keep back zero channels up to a multiple of the conv tile "
                             "in every block (same outputs; whole tiles for the kernel)")
    parser.add_argument("--speed-rounds", type=positive_int, default=5,
                        help="(d): timed rounds per model (median)")
    parser.add_argument("--budgets", nargs="+", default=list(lab4.BUDGETS), metavar="FRACTION",
                        help="(e): MAC budgets, fractions of the full model's MACs in whole "
                             f"percents, run in this order (default {' '.join(lab4.BUDGETS)})")
    parser.add_argument("--methods", nargs="+", default=list(lab4.METHODS),
                        choices=lab4.METHODS, metavar="METHOD",
                        help="(e): methods run at each budget, in this order: "
                             f"{', '.join(lab4.METHODS)} (default: all four)")
    defaults = lab4.Lab4Options  # the dataclass's field defaults (DistillConfig's)
    parser.add_argument("--kd-temperature", type=positive_float, default=defaults.kd_temperature,
                        help="(e): distillation temperature of the *_kd methods (default "
                             f"{defaults.kd_temperature:g})")
    parser.add_argument("--kd-alpha", type=float, default=defaults.kd_alpha,
                        help="(e): weight of the distillation term, in [0, 1]; 1 - alpha "
                             f"weighs the labels (default {defaults.kd_alpha:g})")
    return parser


def parse_options(argv: Sequence[str] | None) -> lab4.Lab4Options:
    """`lab4.Lab4Options` from the command line; a strength that is not a number >= 0 is a
    usage error (one line, exit status 2)."""
    parser = build_parser()
    try:
        return lab4.Lab4Options.from_args(parser.parse_args(argv))
    except MinitorchError as error:
        parser.error(str(error))


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; user errors print one line and exit with status 2."""
    options = parse_options(argv)
    return run_cli(lambda: run(options))


def run(options: lab4.Lab4Options) -> int:
    """Run the chosen parts, re-rendering lab4.md after each one."""
    lab4.run(options, after_part=lambda: report.write_report(options.out_dir))
    print(f"wrote {options.out_dir / 'lab4.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
