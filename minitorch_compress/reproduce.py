"""`python -m minitorch_compress reproduce`: run every lab and write the report.

Quick mode (the default, minutes on 2 cores) runs what is cheap at full size for real - Lab 1,
Lab 2 (a)/(b) and Lab 3 (b), which are evaluations - and the finetuning parts as smoke runs
(1 epoch on a small training subset) into `results/quick/` (its smoke runs in `runs/quick/` are
replaced each time). `--full` runs everything at full size into `results/local/`, resumably
(rerun the same command after an interruption); `--out-dir results` publishes into the
committed `results/`. Neither default folder is tracked by git, so running the command never
modifies a committed file.

Each lab run is exactly a command a student could type, ``python labs/<script> <arguments>``:
reproduce prints it, runs that script's ``main(<arguments>)`` and the script records the same
command beside every number it writes. The runs share this one process (`run_lab`), so Python,
NumPy and numba start once and every numba kernel is compiled (or read from numba's cache)
once, not once per lab run.
"""

from __future__ import annotations

import argparse
import importlib.util
import time
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

from minitorch_compress.data.cifar10 import load_cifar10
from minitorch_compress.errors import MinitorchError
from minitorch_compress.models.pretrained import load_pretrained
from minitorch_compress.options import ensure_writable_dir
from minitorch_compress.paths import (
    LOCAL_RESULTS_DIR,
    QUICK_RESULTS_DIR,
    REPO_ROOT,
    RUNS_DIR,
    is_in_working_tree,
    is_published_dir,
)
from minitorch_compress.reports.summary import write_report

LABS = REPO_ROOT / "labs"
# A smoke run shows that a part's pipeline runs end to end, not what it reaches: 1 epoch on
# the first 500 training images, tested on the first 500 test images (the evaluation-only
# parts use all 10,000).
QUICK_SUBSET = 500
QUICK_EPOCHS = 1
QUICK_TEST_SUBSET = 500
QUICK_INT8_CALIBRATION = 200


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


def output_folders(args: argparse.Namespace) -> tuple[Path, Path]:
    """(results folder, run-checkpoint folder) of this mode, unless given explicitly."""
    default_out = LOCAL_RESULTS_DIR if args.full else QUICK_RESULTS_DIR
    default_runs = RUNS_DIR if args.full else RUNS_DIR / "quick"
    return Path(args.out_dir or default_out), Path(args.run_root or default_runs)


def lab_commands(args: argparse.Namespace) -> list[list[str]]:
    """The lab invocations of this mode, in dependency order (Lab 3 (d) needs Lab 2 (c))."""
    common = _forwarded(args)
    out_dir, run_root = output_folders(args)
    folders = ["--out-dir", str(out_dir), "--run-root", str(run_root)]
    if args.full:
        full = [*folders, "--resume", *common]
        return [
            ["lab1_sparse_linear.py", "--out-dir", str(out_dir)],
            ["lab2_pruning.py", "--part", "all", *full],
            ["lab3_quantization.py", "--part", "all", *full],
            ["lab3_quantization.py", "--part", "b", "--symmetric", *full],
            # the published solution's quantizer, measured on our own runs
            ["lab3_quantization.py", "--part", "d", "--naive-quantizer", *full],
            ["lab3_quantization.py", "--part", "e", "--naive-quantizer", *full],
            ["lab4_structured.py", "--part", "all", *full],  # (d) times Lab 2 (c)'s model
            ["lab5_claims.py", "--part", "all", *full],  # (c) reads the labs above
            ["lab3_int8.py", "--out-dir", str(out_dir), "--resume", *common],  # in integers
        ]
    subset = args.subset if args.subset is not None else QUICK_SUBSET
    # quick mode's smoke runs are throwaway: each reproduce replaces them (--overwrite)
    test_subset = str(args.test_subset or QUICK_TEST_SUBSET)
    smoke = [*folders, "--epochs", str(QUICK_EPOCHS), "--subset", str(subset),
             "--test-subset", test_subset, "--overwrite", *common]
    evaluation = [*folders, *common]
    if args.test_subset is not None:
        evaluation += ["--test-subset", str(args.test_subset)]
    return [
        ["lab1_sparse_linear.py", "--out-dir", str(out_dir)],
        ["lab2_pruning.py", "--part", "a", *evaluation],
        ["lab2_pruning.py", "--part", "b", *evaluation],
        ["lab3_quantization.py", "--part", "b", *evaluation],
        *[["lab2_pruning.py", "--part", part, *smoke] for part in "cde"],
        *[["lab3_quantization.py", "--part", part, *smoke] for part in "cde"],
        # the plain quantizer at one width: its code path, not a second sweep of widths
        ["lab3_quantization.py", "--part", "d", "--naive-quantizer", "--bits", "4", *smoke],
        ["lab3_quantization.py", "--part", "e", "--naive-quantizer", *smoke],
        # one strength, budget and (e) method (group Lasso + KD, which runs the predicted-
        # strength phase, the trim and distillation), and (d) timed twice, keep quick mode
        # quick; --full runs the defaults
        ["lab4_structured.py", "--part", "all", "--strengths", "1", "--l1-strengths", "0.005",
         "--budgets", "0.6", "--methods", "lasso_kd", "--speed-rounds", "2", *smoke],
        # (a) on one target, few sensitivity images and a smaller subset: seconds, not minutes
        ["lab5_claims.py", "--part", "a", "--targets", "c2", "--sensitivity-images", "32",
         *folders, "--epochs", str(QUICK_EPOCHS), "--subset", str(min(subset, 256)),
         "--test-subset", test_subset, "--overwrite", *common],
        ["lab5_claims.py", "--part", "b", *smoke],
        ["lab5_claims.py", "--part", "c", *smoke],  # (c) reads the labs above
        # integers: the pretrained model and one Lab 3 smoke model, on a few images
        ["lab3_int8.py", "--out-dir", str(out_dir), "--only", "pretrained", "lab3_d_4bit",
         "--test-subset", test_subset, "--calibration-images", str(QUICK_INT8_CALIBRATION),
         *common],
    ]


# the one line after Ctrl-C (printed by `cli.run_cli`): reproduce itself takes no --resume
HOW_TO_CONTINUE = ("to continue, run the same reproduce command again (quick mode starts "
                   "over; --full resumes the finished epochs)")


_lab_scripts: dict[str, ModuleType] = {}


def lab_script(name: str) -> ModuleType:
    """The lab script ``labs/<name>`` loaded as a module (once per process), so that its
    ``main(argv)`` can run here. The scripts are not a package (a student runs them by path),
    hence the load by file name."""
    if name not in _lab_scripts:
        path = LABS / name
        if not path.is_file():
            raise MinitorchError(f"{path}: no such lab script in this checkout")
        spec = importlib.util.spec_from_file_location(f"labs.{path.stem}", path)
        assert spec is not None and spec.loader is not None  # a .py file always has both
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        _lab_scripts[name] = module
    return _lab_scripts[name]


def run_lab(command: Sequence[str]) -> int:
    """Run ``python labs/<command[0]> <command[1:]>`` in this process: the script's
    ``main(command[1:])``, which parses those arguments, runs the lab through `cli.run_cli`
    (one line and a status for a user error) and records those arguments as its command.

    Returns:
        The exit status the command would have had: 0, or 2 for a user error (argparse's
        usage errors included). Ctrl-C is passed on as ``KeyboardInterrupt``, so that
        reproduce's own `cli.run_cli` prints the one line on how to continue.
    """
    try:
        return lab_script(command[0]).main(list(command[1:]))
    except SystemExit as stop:  # argparse: --help or a usage error
        return stop.code if isinstance(stop.code, int) else 2


def reproduce(args: argparse.Namespace) -> int:
    """Run the labs of the chosen mode one after the other, then write the report."""
    out_dir, run_root = output_folders(args)
    if not args.full and is_published_dir(out_dir):  # checked before any lab runs
        raise MinitorchError(
            f"--out-dir {out_dir}: quick mode's smoke finetunes never replace the published "
            "results; add --full to publish full-size runs there, or leave --out-dir out "
            "(results/quick/)")
    for folder, option in ((out_dir, "--out-dir"), (run_root, "--run-root")):
        # publishing into results/ with --full is the one write into the tracked tree
        if is_in_working_tree(folder) and not (args.full and is_published_dir(folder)):
            raise MinitorchError(
                f"{option} {folder} lies inside the repository where git would list every "
                "file written there; leave it out (results/quick/, runs/quick/), or give "
                "a folder git ignores (results/local/, runs/) or one outside the checkout")
    ensure_writable_dir(out_dir, "--out-dir")
    ensure_writable_dir(run_root, "--run-root")
    # the data and the pretrained model are read now (one test batch, the weights), not
    # after Lab 1 has run: a file that is there but not CIFAR-10 or not a model is refused too
    if not args.download:
        load_cifar10(args.data_dir, subset=0, test_subset=1)
    if getattr(load_pretrained(args.weights), "batch_norm_folded", False):
        raise MinitorchError(f"--weights {args.weights} has folded batch norm (inference "
                             "only), and the labs finetune it; give the unfolded file")
    mode = "full-size" if args.full else "quick (smoke finetuning)"
    commands = lab_commands(args)
    print(f"reproduce: {mode} mode, {len(commands)} lab runs, results in {out_dir}", flush=True)
    start, cpu_before = time.perf_counter(), time.process_time()
    for i, command in enumerate(commands, 1):
        shown = "python labs/" + " ".join(command)
        print(f"\n[{i}/{len(commands)}] {shown}", flush=True)
        step_start, cpu_start = time.perf_counter(), time.process_time()
        status = run_lab(command)
        # the CPU seconds of all threads beside the wall time: where the minutes go (on two
        # cores, CPU above wall means the kernels ran in parallel)
        print(f"[{i}/{len(commands)}] {time.perf_counter() - step_start:.1f} s "
              f"(CPU {time.process_time() - cpu_start:.1f} s)", flush=True)
        if status != 0:
            raise MinitorchError(
                f"`{shown}` failed (exit {status}); fix what it printed above and "
                "rerun (finished finetuning epochs are kept; --full resumes them)"
            )
    report = write_report(out_dir, smoke=not args.full)
    print(f"\nreproduce: done in {time.perf_counter() - start:.0f} s (CPU "
          f"{time.process_time() - cpu_before:.0f} s); report: {report}")
    return 0
