"""Lab 1: sparse optimisation of the 3-point linear model, parts (b)-(f), both schedules.

Usage (from the repository root)::

    python labs/lab1_sparse_linear.py            # writes results/local/lab1.md, lab1.json
                                                 # and the figures in results/local/lab1/
    python labs/lab1_sparse_linear.py --out-dir results   # publish into the committed results/

Every part is run with the assignment's full-batch schedule (the one to report) and, for
comparison, with the per-sample schedule a published solution used by mistake. The whole run
takes about a second plus the plotting. The maths lives in ``minitorch_compress.linear``, the
experiment (the runs and every number the report quotes, as the JSON payload) in
``minitorch_compress.experiments.lab1``, the page and the figures in
``minitorch_compress.reports.lab1``; ``python -m minitorch_compress report --all`` re-renders
``lab1.md`` from ``lab1.json`` alone.

Options shared with the other labs are accepted so one orchestrator can call every lab the same
way: ``--epochs`` is an alias for ``--steps``; ``--subset`` and ``--resume`` are accepted and
ignored (there is no data set to subsample and nothing worth resuming).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from minitorch_compress.cli import run_cli
from minitorch_compress.experiments import lab1
from minitorch_compress.options import OneLineParser, positive_int
from minitorch_compress.paths import LOCAL_RESULTS_DIR
from minitorch_compress.reports import lab1 as report


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Command-line options (the shared lab options are accepted for uniformity)."""
    parser = OneLineParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--steps",
        "--epochs",
        dest="steps",
        type=positive_int,
        default=lab1.DEFAULT_STEPS,
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
    return run_cli(lambda: run(lab1.Lab1Options.from_args(args)))  # its checks are one line


def run(options: lab1.Lab1Options) -> int:
    """Run every case (`lab1.run_lab` writes lab1.json), then write lab1.md and the figures."""
    results, document = lab1.run_lab(options)
    md_path = options.out_dir / "lab1.md"
    md_path.write_text(report.render_lab1(document), encoding="utf-8")
    figures = report.write_figures(results, options.out_dir / report.FIGURE_DIR)
    print(report.summary(document))
    print(f"wrote {md_path}, {options.out_dir / 'lab1.json'} and {len(figures)} figures")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
