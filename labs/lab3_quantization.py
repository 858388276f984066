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
experiments live in ``minitorch_compress.experiments.lab3``.
"""

from __future__ import annotations

from collections.abc import Sequence

from minitorch_compress.cli import run_cli
from minitorch_compress.experiments import lab3
from minitorch_compress.experiments.common import lab_parser
from minitorch_compress.reports import lab3 as report


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; user errors (missing data, weights or Lab 2 run) print one line, exit 2."""
    parser = lab_parser(__doc__.split("\n\n")[0], lab3.PARTS)
    lab3.add_arguments(parser)
    args = parser.parse_args(argv)
    lab3.check_arguments(args, parser)
    return run_cli(lambda: run(args))


def run(args) -> int:
    """Run the chosen parts, re-rendering lab3.md and its figures after each one."""
    lab3.run(args, after_part=lambda: report.write_report(args.out_dir))
    print(f"wrote {args.out_dir / 'lab3.md'} and the figures in {args.out_dir / 'lab3'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
