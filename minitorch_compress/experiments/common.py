"""What every lab experiment shares: options, data, finetuning runs, result files.

Result files carry their provenance: each JSON written by `write_result` has a `_meta` entry
with the command line, the git commit, the date, the training subset and epochs, and whether
it was a smoke run. A part that trains is smoke when it falls short of the full recipe (20
epochs on all 50,000 training images, tested on all 10,000 test images); an evaluation-only
part (``trains=False``) records ``epochs: null, train_subset: 0`` and is smoke only when the
test set was cut.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from minitorch_compress.cli import (
    OneLineParser,
    add_data_arguments,
    ensure_writable_dir,
    load_data,
    positive_int,
)
from minitorch_compress.data.cifar10 import Cifar10
from minitorch_compress.errors import MinitorchError
from minitorch_compress.io.checkpoint import atomic_write, json_default
from minitorch_compress.models.pretrained import load_pretrained
from minitorch_compress.nn.module import Module
from minitorch_compress.paths import LOCAL_RESULTS_DIR, REPO_ROOT, RUNS_DIR, shown
from minitorch_compress.training.evaluate import evaluate
from minitorch_compress.training.trainer import (
    FinetuneConfig,
    Trainer,
    refuse_existing_run,
)

FULL_TRAIN_SIZE = 50_000
FULL_TEST_SIZE = 10_000
RECIPE_EPOCHS = 20


class LabParser(OneLineParser):
    """An `argparse.ArgumentParser` that keeps the arguments it parsed as ``args.argv``.

    `provenance` records them, so a lab's ``main(argv)`` called in-process (as the tests do)
    is recorded with its own arguments rather than the test runner's command line.
    """

    def parse_args(self, args: Sequence[str] | None = None,  # type: ignore[override]
                   namespace: argparse.Namespace | None = None) -> argparse.Namespace:
        """`argparse.ArgumentParser.parse_args`, plus ``argv``: the arguments parsed."""
        parsed = super().parse_args(args, namespace)
        parsed.argv = list(sys.argv[1:] if args is None else args)
        return parsed


def lab_parser(description: str, parts: Sequence[str]) -> argparse.ArgumentParser:
    """Options common to the lab scripts: --part, --epochs, --subset, --resume, output folders.

    The parsed options also hold ``argv``, the arguments as given (see `LabParser`).
    """
    parser = LabParser(description=description)
    parser.add_argument("--part", choices=[*parts, "all"], default="all")
    parser.add_argument("--epochs", type=positive_int, default=RECIPE_EPOCHS,
                        help="finetuning epochs (the recipe: 20)")
    parser.add_argument("--resume", action="store_true",
                        help="continue interrupted finetuning runs from their last epoch")
    parser.add_argument("--overwrite", action="store_true",
                        help="start finetuning runs afresh even where --run-root holds one "
                             "(its checkpoints are replaced)")
    parser.add_argument("--out-dir", type=Path, default=LOCAL_RESULTS_DIR,
                        help="where JSON, tables and figures go (default: results/local/, "
                             "git-ignored; --out-dir results publishes into the committed "
                             "results/, where a smoke run never replaces a full-size result)")
    parser.add_argument("--run-root", type=Path, default=RUNS_DIR,
                        help="where run checkpoints go (default: runs/, git-ignored)")
    parser.add_argument("--seed", type=int, default=0, help="seed of batch order and "
                        "augmentation (default 0)")
    add_data_arguments(parser)
    return parser


def git_commit(scope: Sequence[str] = (".", ":(exclude)results"),
               dirty_note: str = "+dirty") -> str:
    """The current commit, with `dirty_note` appended when tracked files in `scope` (git
    pathspecs) are modified; "unknown" outside a git checkout.

    The default scope leaves out ``results/``: those are the outputs of runs like this one
    (an earlier part of the same lab rewrites its JSON and tables), not the code that ran.
    """
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO_ROOT,
                                capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--",
                                *scope],
                               cwd=REPO_ROOT, capture_output=True, text=True).stdout.strip()
        return commit + (dirty_note if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def is_smoke(args: argparse.Namespace, trains: bool = True) -> bool:
    """Whether these options fall short of a full result.

    Args:
        args: the lab options (--epochs, --subset, --test-subset).
        trains: whether the part trains. An evaluation uses neither --epochs nor --subset:
            on all 10,000 test images it is a full result, even inside ``--part all
            --epochs 2``.
    """
    if args.test_subset is not None and args.test_subset < FULL_TEST_SIZE:
        return True
    return trains and (args.epochs < RECIPE_EPOCHS
                       or (args.subset is not None and args.subset < FULL_TRAIN_SIZE))


def _command_line(args: argparse.Namespace, script: str | None) -> str:
    """How this run was started, as a student would type it from the repository root.

    The arguments are ``args.argv`` when the parser recorded them (`LabParser`), else this
    process's; the script is `script` (e.g. ``labs/lab2_pruning.py``), else this process's.
    """
    argv = getattr(args, "argv", None)
    if argv is None:
        argv = sys.argv[1:]
    if script is None:
        path = Path(sys.argv[0]).resolve()
        script = str(path.relative_to(REPO_ROOT) if path.is_relative_to(REPO_ROOT) else path)
    words = [*script.split(), *portable(argv)]  # a script may be "-m package command"
    return "python " + " ".join(shlex.quote(_relative(a)) for a in words)


def _relative(argument: str) -> str:
    """An absolute path inside the repository, shown relative to its root (as typed there)."""
    path = Path(argument)
    if path.is_absolute() and path.is_relative_to(REPO_ROOT):
        return str(path.relative_to(REPO_ROOT)) or "."
    return argument


# options whose value only says where files go: a folder outside the checkout changes no
# number, so a recorded command leaves it out rather than name a folder of one machine
_WHERE_OPTIONS = ("--run-root", "--out-dir", "--run-dir")


def portable(argv: Sequence[str]) -> list[str]:
    """`argv` as a command a student can type in a fresh clone: ``--data-dir``/``--weights``
    that name what the default search finds anyway, and output folders outside the
    repository, are dropped (no absolute path of this machine is recorded)."""
    from minitorch_compress.data.cifar10 import find_cifar10
    from minitorch_compress.errors import MinitorchError
    from minitorch_compress.models.pretrained import find_pretrained_checkpoint

    def found(option: str, value: str | None) -> Path | None:
        """What the run would load with `value` (None: with the default search)."""
        try:
            if option == "--data-dir":
                return find_cifar10(value).resolve()
            return find_pretrained_checkpoint(value).resolve()
        except MinitorchError:
            return None

    out: list[str] = []
    items = list(argv)
    i = 0
    while i < len(items):
        option, value = items[i], items[i + 1] if i + 1 < len(items) else None
        if value is not None and option in ("--data-dir", "--weights") \
                and found(option, value) is not None \
                and found(option, value) == found(option, None):
            i += 2
            continue
        if value is not None and option in _WHERE_OPTIONS and Path(value).is_absolute() \
                and not Path(value).is_relative_to(REPO_ROOT):
            i += 2
            continue
        out.append(option)
        i += 1
    return out


def provenance(args: argparse.Namespace, wall_s: float | None = None, *, trains: bool = True,
               script: str | None = None) -> dict[str, Any]:
    """The `_meta` entry of a result file.

    Args:
        args: the lab options.
        wall_s: the run's wall time, if known.
        trains: False for an evaluation-only part: ``epochs`` is then None, ``train_subset``
            0 and ``smoke`` depends on the test set only (`is_smoke`).
        script: the lab script, e.g. ``labs/lab2_pruning.py`` (default: this process's).
    """
    return {
        "command": _command_line(args, script),
        "commit": git_commit(),
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "epochs": args.epochs if trains else None,
        "train_subset": args.subset if trains else 0,
        "test_subset": args.test_subset,
        "smoke": is_smoke(args, trains),
        "machine": f"{os.cpu_count()} cores",
        **({"wall_s": round(wall_s, 1)} if wall_s is not None else {}),
    }


def weights_id(args: argparse.Namespace) -> str | None:
    """The --weights option as recorded in result and run files (None: the default)."""
    return None if args.weights is None else str(args.weights)


def refuse_smoke_over_full(out_dir: Path, name: str, smoke: bool) -> None:
    """A smoke result never replaces a full-size one: raise if ``out_dir/name.json`` holds a
    full-size result and this run is smoke."""
    previous = read_result(out_dir, name) if smoke else None
    if previous is not None and not previous.get("_meta", {}).get("smoke", True):
        raise MinitorchError(
            f"{out_dir / name}.json holds a full-size result and this is a smoke run "
            "(fewer epochs or images), which never replaces one: write it elsewhere (the "
            "default --out-dir, results/local/, is for such runs)")


def preflight(args: argparse.Namespace, results: Sequence[tuple[str, bool]],
              runs: Sequence[str]) -> None:
    """Every check that can fail a lab run, made before any work starts.

    Args:
        args: the lab options (--out-dir, --run-root, --resume, --overwrite, ...).
        results: (result name, whether that part trains) of each result file it will write.
        runs: the run folders under --run-root it will train in.

    Raises:
        MinitorchError: an output folder that cannot be written, a smoke result over a
            full-size one, or a fresh run over an existing one (`check_run_dir`).
    """
    for name, trains in results:
        refuse_smoke_over_full(args.out_dir, name, is_smoke(args, trains))
    for run in runs:
        check_run_dir(args, run)
    ensure_writable_dir(args.out_dir, "--out-dir")
    if runs:
        ensure_writable_dir(args.run_root, "--run-root")


def write_result(out_dir: Path, name: str, payload: dict[str, Any],
                 args: argparse.Namespace, wall_s: float | None = None, *, trains: bool = True,
                 script: str | None = None) -> Path:
    """Write `out_dir/name.json` atomically, with `_meta` provenance; returns the path.

    `trains` and `script` are passed to `provenance`.
    """
    refuse_smoke_over_full(out_dir, name, is_smoke(args, trains))
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{name}.json"
    document = {**payload, "_meta": provenance(args, wall_s, trains=trains, script=script)}
    text = json.dumps(document, indent=2, default=json_default) + "\n"
    atomic_write(path, lambda f: f.write(text.encode()))
    return path


def read_result(out_dir: Path, name: str) -> dict[str, Any] | None:
    """The JSON written by `write_result`, or None when that part has not been run."""
    path = out_dir / f"{name}.json"
    return json.loads(path.read_text()) if path.is_file() else None


def lookup(document: dict[str, Any] | None, path: Sequence[str]) -> float | None:
    """The number at `path` in a result document (e.g. ("after", "4")), or None."""
    value: Any = document
    for key in path:
        if not isinstance(value, dict) or key not in value:
            return None
        value = value[key]
    return float(value) if isinstance(value, (int, float)) else None


def reusable_evaluation(args: argparse.Namespace, name: str) -> dict[str, Any] | None:
    """With --resume, the finished evaluation ``<out-dir>/<name>.json`` if it was made on the
    same test set with the same weights; otherwise (or without --resume) None."""
    if not args.resume:
        return None
    previous = read_result(args.out_dir, name)
    if previous is None or previous.get("_meta", {}).get("test_subset") != args.test_subset:
        return None
    return previous if previous.get("weights") == weights_id(args) else None


def run_and_write(args: argparse.Namespace, name: str, part: str, title: str,
                  compute: Callable[[], dict[str, Any]], *, trains: bool,
                  script: str | None = None) -> dict[str, Any]:
    """Run one lab part, write ``<out-dir>/<name>.json`` and return what was written.

    Args:
        args: the lab options.
        name: the result file's name, without ``.json``.
        part: the part's letter, for the messages.
        title: printed before the part starts.
        compute: runs the part and returns its JSON payload.
        trains: whether the part trains. An evaluation is reused with --resume when
            `reusable_evaluation` finds one; its payload gets "weights" and "wall_s" (the
            whole evaluation). A finetuning payload brings its own "wall_s_total" or "wall_s",
            training plus testing summed over epochs, so a resumed run counts each epoch once.
        script: the lab script, for the provenance.
    """
    if not trains and (previous := reusable_evaluation(args, name)) is not None:
        print(f"({part}) reusing {args.out_dir / name}.json (--resume)")
        return previous
    print(f"{title} ...", flush=True)
    start = time.perf_counter()
    payload = compute()
    wall = time.perf_counter() - start
    if trains:
        wall = payload.get("wall_s_total", payload.get("wall_s"))
    else:
        payload.update(weights=weights_id(args), wall_s=round(wall, 1))
    write_result(args.out_dir, name, payload, args, wall, trains=trains, script=script)
    return read_result(args.out_dir, name) or payload


def load_lab_data(args: argparse.Namespace) -> Cifar10:
    """CIFAR-10 as selected by the options (the whole test set unless --test-subset)."""
    return load_data(args)


def pretrained(args: argparse.Namespace) -> Module:
    """A fresh copy of the pretrained model (reloaded before every experiment, as the labs ask)."""
    return load_pretrained(args.weights)


def accuracy_on_test_set(model: Module, data: Cifar10, args: argparse.Namespace,
                         desc: str) -> float:
    """`evaluate` on the test images of `data`, with a progress bar unless --no-progress."""
    return evaluate(model, data.x_test, data.y_test, progress=not args.no_progress, desc=desc)


def check_run_dir(args: argparse.Namespace, run_name: str) -> None:
    """Refuse, before any work starts, a fresh run over one that ``<run-root>/<run_name>``
    already holds (unless --resume or --overwrite).

    Raises:
        RunExistsError: naming --resume and --overwrite.
    """
    if not (args.resume or getattr(args, "overwrite", False)):
        refuse_existing_run(args.run_root / run_name, "another --run-root")


def prepare_run_dir(args: argparse.Namespace, run_name: str, *,
                    script: str | None = None) -> None:
    """Get ``<run-root>/<run_name>`` ready: check a resumed run, record a fresh one.

    The trainer refuses to resume with another recipe (epochs, seed, ...); the training and
    test subsets and the starting weights are not part of it, so ``provenance.json`` in the
    run folder records them (with `provenance` and ``"run": run_name``) and --resume must
    match them. A fresh run over an existing one is refused (`check_run_dir`) unless
    --overwrite, and then the trainer replaces the old run's files before its first epoch.

    Raises:
        MinitorchError: --resume of a run started with other subsets, epochs or weights;
            a fresh run over an existing one without --overwrite.
    """
    run_dir = args.run_root / run_name
    path = run_dir / "provenance.json"
    meta = {**provenance(args, script=script), "weights": weights_id(args)}
    if args.resume and (run_dir / "last.npz").is_file():
        started = json.loads(path.read_text()) if path.is_file() else meta
        for key in ("train_subset", "test_subset", "epochs", "weights"):
            if started.get(key) != meta[key]:
                raise MinitorchError(
                    f"{run_dir} was started with {key}={started.get(key)}, not {meta[key]}; "
                    "resume with the same options or drop --resume")
        return
    check_run_dir(args, run_name)
    run_dir.mkdir(parents=True, exist_ok=True)
    text = json.dumps({**meta, "run": run_name}, indent=2) + "\n"
    atomic_write(path, lambda f: f.write(text.encode()))


def finetune(model: Module, data: Cifar10, args: argparse.Namespace, run_name: str,
             hooks: Sequence[Any] = (), *, script: str | None = None) -> dict[str, Any]:
    """Finetune with the course recipe in `runs/<run_name>`; resumable with --resume.

    The run folder is checked and recorded first (`prepare_run_dir`, with `script` for its
    provenance).

    Returns:
        {"best_accuracy", "final_accuracy", "epochs", "history" (test accuracy per epoch),
        "log" (the full per-epoch metrics), "wall_s" (training + testing time summed over
        epochs, so a resumed run counts each epoch once), "best_epoch" (the best epoch among
        those eligible, see the trainer's ``eligible_for_best``)}. The model is left holding
        the weights of the best epoch.

    Raises:
        MinitorchError: the run ran no epoch, or no epoch was eligible as best; see also
            `prepare_run_dir`.
    """
    prepare_run_dir(args, run_name, script=script)
    config = FinetuneConfig(epochs=args.epochs, seed=args.seed)
    trainer = Trainer(model, (data.x_train, data.y_train), (data.x_test, data.y_test), config,
                      hooks=hooks, run_dir=args.run_root / run_name,
                      progress=not args.no_progress)
    history = trainer.fit(resume=args.resume, overwrite=getattr(args, "overwrite", False))
    if not history:
        raise MinitorchError(f"{run_name} ran no epoch; use --epochs >= 1")
    if trainer.best_state is None:
        raise MinitorchError(
            f"no epoch of {run_name} was eligible as best (e.g. iterative pruning never "
            "reached its final mask): run more epochs"
        )
    model.load_state_dict(trainer.best_state)
    eligible = [h for h in history if h.get("eligible_for_best", True)]
    return {
        "best_accuracy": trainer.best_accuracy,
        "final_accuracy": history[-1]["test_accuracy"] if history else None,
        "epochs": len(history),
        "history": [h["test_accuracy"] for h in history],
        "log": history,
        "wall_s": round(sum(h["epoch_wall_s"] for h in history), 1),
        "best_epoch": (max(eligible, key=lambda h: h["test_accuracy"])["epoch"]
                       if eligible else None),
    }


def save_model_file(model: Module, args: argparse.Namespace, name: str) -> dict[str, Any]:
    """The finetuned `model` (its best weights, as it computes with them) as
    ``<out-dir>/models/<name>.mtc``: every finetuning lab writes its model file when it ends.

    Returns:
        {"file" (repository-relative where possible), "bytes", "ratio"} for the result JSON.
    """
    from minitorch_compress.compression.pipeline import write_model_file

    path = args.out_dir / "models" / f"{name}.mtc"
    sizes = write_model_file(model, path)
    return {"file": shown(path), "bytes": sizes["bytes"], "ratio": round(sizes["ratio"], 2)}
