"""Lab 1: sparse optimisation of the 3-point linear model, parts (b)-(f), both schedules.

Usage (from the repository root)::

    python labs/lab1_sparse_linear.py            # writes results/lab1.md, results/lab1.json,
                                                 # and the figures in results/lab1/

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

from minitorch_compress.experiments import lab1, lab1_report


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Command-line options (the shared lab options are accepted for uniformity)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--steps",
        "--epochs",
        dest="steps",
        type=int,
        default=200,
        help="optimisation steps per case (default 200, the assignment); --epochs is an alias",
    )
    parser.add_argument(
        "--subset", type=int, default=None, help="ignored: Lab 1 has three data points"
    )
    parser.add_argument(
        "--resume", action="store_true", help="ignored: the whole lab runs in about a second"
    )
    parser.add_argument(
        "--out-dir",
        type=Path,
        default=Path("results"),
        help="where lab1.md, lab1.json and lab1/ are written (default: results)",
    )
    args = parser.parse_args(argv)
    if args.steps < 1:
        parser.error("--steps must be >= 1")
    return args


def main(argv: list[str] | None = None) -> int:
    """Run Lab 1 and write the report, JSON and figures under ``--out-dir``."""
    args = parse_args(argv)
    results = lab1.run_all(args.steps)
    written = lab1_report.write_outputs(results, args.out_dir, args.steps)
    print(lab1_report.summary(results))
    print(f"wrote {written['markdown']}, {written['json']} and {len(written['figures'])} figures")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
