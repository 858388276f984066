"""Lab 3: fixed-point quantization of ResNet-20's weights with a straight-through estimator.

Usage (from the repository root)::

    python labs/lab3_quantization.py --part b               # 6..2-bit body, evaluation only
    python labs/lab3_quantization.py --part b --symmetric   # the same, symmetric quantizer
    python labs/lab3_quantization.py --part c               # QAT at 4/3/2 bits, 20 epochs each
    python labs/lab3_quantization.py --part d               # needs Lab 2 (c): runs/lab2_c/best.npz
    python labs/lab3_quantization.py --part d --sparse-from results/models/lab2_c.mtc
                                                            # or its committed model file
    python labs/lab3_quantization.py --part d --bits 4 2    # only these widths (--resume adds
                                                            # the rest later)
    python labs/lab3_quantization.py --part d --naive-quantizer   # (d), plain quantizer
    python labs/lab3_quantization.py --part e --naive-quantizer   # (e), plain quantizer
    python labs/lab3_quantization.py --part all --resume    # everything; continues interrupted runs

Each part writes ``<out-dir>/lab3_<part>.json`` (``_symmetric`` / ``_naive`` variants beside
it); ``<out-dir>/lab3.md`` and the figures in ``<out-dir>/lab3/`` are regenerated after every
part from the JSON files present. The default ``--out-dir`` is ``results/local/``
(git-ignored); ``--out-dir results`` publishes into the committed ``results/``, where a smoke
run never replaces a full-size result. ``--epochs N --subset M --test-subset K`` make a quick
smoke run (labelled as such in the report). ``--sparse-from FILE`` starts (d) from a model
file of Lab 2 (c) instead of its checkpoint (the committed ``results/models/lab2_c.mtc`` holds
its best weights bit for bit, so (d) needs no two-hour Lab 2 rerun in a fresh clone);
``--sparse-from-pretrained`` from the pretrained model pruned to 80 % without finetuning. The
experiments live in ``minitorch_compress.experiments.lab3`` (from Python:
``lab3.part_b(lab3.Lab3Options(test_subset=500))``).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from minitorch_compress.cli import run_cli
from minitorch_compress.errors import MinitorchError
from minitorch_compress.experiments import lab3
from minitorch_compress.options import lab_parser
from minitorch_compress.reports import lab3 as report


def build_parser() -> argparse.ArgumentParser:
    """The shared lab options and Lab 3's own (the fields of `lab3.Lab3Options`)."""
    parser = lab_parser(__doc__.split("\n\n")[0], lab3.PARTS)
    parser.add_argument("--symmetric", action="store_true",
                        help="symmetric quantizer (levels k*s around an exact 0) instead of "
                             "the course's asymmetric one (b, c) / the masked one (d, e); "
                             "results go to lab3_<part>_symmetric.json")
    parser.add_argument("--naive-quantizer", action="store_true",
                        help="parts d and e: the plain asymmetric quantizer (zeros scaled "
                             "like any weight, so they leave 0) instead of the mask-aware one; "
                             "writes lab3_<part>_naive.json")
    parser.add_argument("--sparse-from-pretrained", action="store_true",
                        help="part d: start from the pretrained model pruned to 80 %% per "
                             "layer without finetuning, instead of Lab 2 (c)'s best model "
                             "(quick runs and tests; recorded in the result)")
    parser.add_argument("--sparse-from", type=Path, default=None, metavar="FILE",
                        help="part d: start from this 80 %%-sparse model (a .mtc model file "
                             "such as the committed results/models/lab2_c.mtc, or a run's "
                             "best.npz) instead of <run-root>/lab2_c/best.npz; its zeros in "
                             "the prunable layers are the mask")
    parser.add_argument("--bits", nargs="+", choices=lab3.BITS_QAT, default=None, metavar="B",
                        help="parts c and d: finetune only these bit widths (of 4 3 2; "
                             "default all three). The result stays marked partial until every "
                             "width is done; --resume keeps the finished ones and adds the rest")
    return parser


def parse_options(argv: Sequence[str] | None) -> lab3.Lab3Options:
    """`lab3.Lab3Options` from the command line; options that contradict each other or do not
    fit --part are a usage error (one line, exit status 2)."""
    parser = build_parser()
    try:
        options = lab3.Lab3Options.from_args(parser.parse_args(argv))
        lab3.check_parts(options)
    except MinitorchError as error:
        parser.error(str(error))
    return options


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; user errors (missing data, weights or Lab 2 run) print one line, exit 2."""
    options = parse_options(argv)
    return run_cli(lambda: run(options))


def run(options: lab3.Lab3Options) -> int:
    """Run the chosen parts, re-rendering lab3.md and its figures after each one."""
    lab3.run(options, after_part=lambda: report.write_report(options.out_dir))
    print(f"wrote {options.out_dir / 'lab3.md'} and the figures in {options.out_dir / 'lab3'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
