"""Lab 1: sparse optimisation of the 3-point linear model, parts (b)-(f), both schedules.

Usage (from the repository root)::

    python labs/lab1_sparse_linear.py            # writes results/local/lab1.md, lab1.json
                                                 # and the figures in results/local/lab1/
    python labs/lab1_sparse_linear.py --out-dir results   # publish into the committed results/

Every part is run with the assignment's full-batch schedule (the one to report) and, for
comparison, with the per-sample schedule a published solution used by mistake. The whole run
takes about a second plus the plotting. The maths lives in ``minitorch_compress.linear``, the
experiment in ``minitorch_compress.experiments.lab1``, its table, figures and JSON in
``minitorch_compress.experiments.lab1_report``.

Options shared with the other labs are accepted so one orchestrator can call every lab the same
way: ``--epochs`` is an alias for ``--steps``; ``--subset`` and ``--resume`` are accepted and
ignored (there is no data set to subsample and nothing worth resuming).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from minitorch_compress.cli import OneLineParser, ensure_writable_dir, positive_int, run_cli
from minitorch_compress.experiments import lab1, lab1_report
from minitorch_compress.paths import LOCAL_RESULTS_DIR


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Command-line options (the shared lab options are accepted for uniformity)."""
    parser = OneLineParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--steps",
        "--epochs",
        dest="steps",
        type=positive_int,
        default=200,
        help="optimisation steps per case (default 200, the assignment); --epochs is an alias",
    )
    parser.add_argument(
        "--subset", type=positive_int, default=None,
        help="ignored: Lab 1 has three data points"
    )
    parser.add_argument(
        "--resume", action="store_true", help="ignored: the whole lab runs in about a second"
    )
    parser.add_argument(
        "--out-dir",
        type=Path,
        default=LOCAL_RESULTS_DIR,
        help="where lab1.md, lab1.json and lab1/ are written (default: results/local/, "
             "git-ignored; --out-dir results publishes into the committed results/)",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run Lab 1 and write the report, JSON and figures under ``--out-dir``."""
    args = parse_args(argv)
    return run_cli(lambda: run(args))


def run(args: argparse.Namespace) -> int:
    """Run every case and write the outputs (the folder is checked before any work)."""
    ensure_writable_dir(args.out_dir, "--out-dir")
    results = lab1.run_all(args.steps)
    written = lab1_report.write_outputs(results, args.out_dir, args.steps)
    print(lab1_report.summary(results))
    print(f"wrote {written['markdown']}, {written['json']} and {len(written['figures'])} figures")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
