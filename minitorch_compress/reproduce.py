"""`python -m minitorch_compress reproduce`: run every lab and write the report.

Quick mode (the default, minutes on 2 cores) runs what is cheap at full size for real - Lab 1,
Lab 2 (a)/(b) and Lab 3 (b), which are evaluations - and the finetuning parts as smoke runs
(1 epoch on a small training subset) into `results/quick/`, so the committed full-size results
in `results/` are never overwritten. `--full` runs everything at full size into `results/`,
resumably (rerun the same command after an interruption).

Each lab runs as its own process with exactly the command a student would type, so the report
can show that command beside every number.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time

from minitorch_compress.errors import MinitorchError
from minitorch_compress.models.pretrained import REPO_ROOT
from minitorch_compress.report import write_report

LABS = REPO_ROOT / "labs"
QUICK_SUBSET = 1000
QUICK_EPOCHS = 1
QUICK_TEST_SUBSET = 2000  # smoke finetunes test on part of the test set; evaluations use all


def _forwarded(args: argparse.Namespace) -> list[str]:
    """Data/weights options passed through to every lab."""
    out = []
    if args.data_dir:
        out += ["--data-dir", str(args.data_dir)]
    if args.download:
        out.append("--download")
    if args.weights:
        out += ["--weights", str(args.weights)]
    if args.no_progress:
        out.append("--no-progress")
    return out


def lab_commands(args: argparse.Namespace) -> list[list[str]]:
    """The lab invocations of this mode, in dependency order (Lab 3 (d) needs Lab 2 (c))."""
    common = _forwarded(args)
    if args.full:
        out = ["--out-dir", str(REPO_ROOT / "results"), "--resume"]
        return [
            ["lab1_sparse_linear.py", "--out-dir", str(REPO_ROOT / "results")],
            ["lab2_pruning.py", "--part", "all", *out, *common],
            ["lab3_quantization.py", "--part", "all", *out, *common],
            ["lab3_quantization.py", "--part", "b", "--symmetric", *out, *common],
            # the published solution's mistake, measured on our Lab 2 (c) model
            ["lab3_quantization.py", "--part", "d", "--naive-quantizer", *out, *common],
        ]
    quick_dir = str(REPO_ROOT / "results" / "quick")
    subset = args.subset if args.subset is not None else QUICK_SUBSET
    smoke = ["--out-dir", quick_dir, "--run-root", str(REPO_ROOT / "runs" / "quick"),
             "--epochs", str(QUICK_EPOCHS), "--subset", str(subset)]
    smoke += ["--test-subset", str(args.test_subset or QUICK_TEST_SUBSET)]
    evaluation = ["--out-dir", quick_dir]
    if args.test_subset is not None:
        evaluation += ["--test-subset", str(args.test_subset)]
    return [
        ["lab1_sparse_linear.py", "--out-dir", quick_dir],
        ["lab2_pruning.py", "--part", "a", *evaluation, *common],
        ["lab2_pruning.py", "--part", "b", *evaluation, *common],
        ["lab3_quantization.py", "--part", "b", *evaluation, *common],
        *[["lab2_pruning.py", "--part", part, *smoke, *common] for part in "cde"],
        *[["lab3_quantization.py", "--part", part, *smoke, *common] for part in "cde"],
        ["lab3_quantization.py", "--part", "d", "--naive-quantizer", *smoke, *common],
    ]


def reproduce(args: argparse.Namespace) -> int:
    """Run the labs of the chosen mode one after the other, then write the report."""
    out_dir = REPO_ROOT / "results" if args.full else REPO_ROOT / "results" / "quick"
    mode = "full-size" if args.full else "quick (smoke finetuning)"
    commands = lab_commands(args)
    print(f"reproduce: {mode} mode, {len(commands)} lab runs, results in {out_dir}", flush=True)
    start = time.perf_counter()
    for i, command in enumerate(commands, 1):
        shown = "python labs/" + " ".join(command)
        print(f"\n[{i}/{len(commands)}] {shown}", flush=True)
        result = subprocess.run([sys.executable, str(LABS / command[0]), *command[1:]],
                                cwd=REPO_ROOT)
        if result.returncode != 0:
            raise MinitorchError(
                f"`{shown}` failed (exit {result.returncode}); fix what it printed above and "
                "rerun (finished finetuning epochs are kept; --full resumes them)"
            )
    report = write_report(out_dir, smoke=not args.full)
    print(f"\nreproduce: done in {time.perf_counter() - start:.0f} s; report: {report}")
    return 0
