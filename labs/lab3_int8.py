"""Lab 3 in integers: every quantized model run with integer arithmetic (issue #35).

Usage (from the repository root)::

    python labs/lab3_int8.py --out-dir results     # the pretrained model and every Lab 3
                                                   # model file in results/models/
    python labs/lab3_int8.py --only pretrained lab3_d_4bit --test-subset 500

For each model: its float (fake-quant) accuracy, the figure its lab reports, and the
accuracy of the integer model (u8 activations, int8 or grid weights, int32 sums, fixed-point
requantization) on the same test images; the activation ranges come from the file
(``compress --int8``) or are calibrated on the first ``--calibration-images`` training
images. Writes ``<out-dir>/int8.json`` and ``<out-dir>/int8.md``; the page's speed tables
come from ``<out-dir>/bench_int8.json`` (``python benchmarks/bench_int8.py --json
results/bench_int8.json``, measured on a quiet machine). The default ``--out-dir`` is
``results/local/`` (git-ignored); the model files are read from ``<out-dir>/models`` unless
``--models-dir`` says otherwise. The experiment lives in
``minitorch_compress.experiments.int8``, the page in ``minitorch_compress.reports.int8``.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from minitorch_compress.cli import run_cli
from minitorch_compress.compression.calibration import CALIBRATION_IMAGES, DEFAULT_METHOD, METHODS
from minitorch_compress.experiments import int8
from minitorch_compress.options import (
    LabParser,
    add_data_arguments,
    ensure_writable_dir,
    positive_int,
)
from minitorch_compress.paths import LOCAL_RESULTS_DIR
from minitorch_compress.reports import int8 as report


def build_parser() -> argparse.ArgumentParser:
    """The data options and the experiment's own (the fields of `int8.Int8Options`)."""
    parser = LabParser(description=__doc__.split("\n\n")[0])
    add_data_arguments(parser)
    parser.add_argument("--out-dir", type=Path, default=LOCAL_RESULTS_DIR,
                        help="where int8.json and int8.md go and the Lab 3 result files are "
                             "read (default: results/local/; --out-dir results publishes)")
    parser.add_argument("--models-dir", type=Path, default=None,
                        help="the Lab 3 model files (default: <out-dir>/models)")
    parser.add_argument("--calibration-images", type=positive_int, default=CALIBRATION_IMAGES,
                        help="calibrate on the first N training images (default "
                             f"{CALIBRATION_IMAGES:,})")
    parser.add_argument("--method", choices=METHODS, default=DEFAULT_METHOD,
                        help=f"activation range method (default {DEFAULT_METHOD})")
    parser.add_argument("--only", nargs="+", default=None, metavar="NAME",
                        help="only these models (pretrained, lab3_d_4bit, ...)")
    parser.add_argument("--resume", action="store_true",
                        help="reuse <out-dir>/int8.json when it already measured these "
                             "models on the same images, weights and calibration")
    return parser


def run(options: int8.Int8Options) -> int:
    """Measure, write int8.json, render int8.md."""
    ensure_writable_dir(options.out_dir, "--out-dir")
    int8.run(options)
    print(f"wrote {options.out_dir / 'int8.json'} and {report.write_report(options.out_dir)}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; user errors print one line and exit with status 2."""
    args = build_parser().parse_args(argv)
    return run_cli(lambda: run(int8.Int8Options.from_args(args)))


if __name__ == "__main__":
    raise SystemExit(main())
