"""What every lab experiment shares: data, starting model, finetuning runs, result files.

Every function takes the lab's options, a frozen dataclass (`options.LabOptions` or a lab's
subclass of it), never an argparse namespace, so a part runs the same from its script and
from a Python prompt.

Result files carry their provenance: each JSON written by `write_result` has a `_meta` entry
with the command line, the git commit, the date, the training subset and epochs, whether it
was a smoke run, and the fields of the options dataclass. A part that trains is smoke when it
falls short of the full recipe (20 epochs on all 50,000 training images, tested on all 10,000
test images); an evaluation-only part (``trains=False``) records ``epochs: null,
train_subset: 0`` and is smoke only when the test set was cut.
"""

from __future__ import annotations

import json
import os
import shlex
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import fields, replace
from pathlib import Path
from typing import Any

from minitorch_compress.compression.pipeline import write_model_file
from minitorch_compress.data.cifar10 import Cifar10, find_cifar10, load_cifar10
from minitorch_compress.errors import MinitorchError
from minitorch_compress.io.checkpoint import atomic_write, json_default
from minitorch_compress.kernels.common import cpu_name
from minitorch_compress.models.pretrained import find_pretrained_checkpoint, load_pretrained
from minitorch_compress.nn.module import Module
from minitorch_compress.options import DataOptions, LabOptions, ensure_writable_dir
from minitorch_compress.paths import REPO_ROOT, shown
from minitorch_compress.recipe import RECIPE_EPOCHS, FinetuneConfig
from minitorch_compress.results import git_commit, read_result
from minitorch_compress.training.distill import DistillConfig
from minitorch_compress.training.evaluate import evaluate
from minitorch_compress.training.trainer import Trainer, refuse_existing_run

FULL_TRAIN_SIZE = 50_000
FULL_TEST_SIZE = 10_000


def is_smoke(options: DataOptions, trains: bool = True) -> bool:
    """Whether these options fall short of a full result.

    Args:
        options: the lab options (--epochs, --subset, --test-subset).
        trains: whether the part trains. An evaluation uses neither --epochs nor --subset:
            on all 10,000 test images it is a full result, even inside ``--part all
            --epochs 2``.
    """
    if options.test_subset is not None and options.test_subset < FULL_TEST_SIZE:
        return True
    short_training = isinstance(options, LabOptions) and (
        options.epochs < RECIPE_EPOCHS
        or (options.subset is not None and options.subset < FULL_TRAIN_SIZE))
    return trains and short_training


def _command_line(options: DataOptions, script: str | None) -> str:
    """How this run was started, as a student would type it from the repository root.

    The arguments are ``options.argv`` when the options were parsed from a command line
    (`options.LabParser` records them), else the arguments that give the same options
    (`DataOptions.as_argv`: a part called from Python is recorded as the command that runs
    it); the script is `script` (e.g. ``labs/lab2_pruning.py``), else this process's.
    """
    argv = options.argv if options.argv is not None else options.as_argv()
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


# option fields that only say where things are read or written, or how progress shows: like
# `_WHERE_OPTIONS`, they change no number, and `recorded_options` leaves them out
_WHERE_FIELDS = ("argv", "data_dir", "download", "weights", "no_progress", "out_dir",
                 "run_root")


def recorded_options(options: DataOptions) -> dict[str, Any]:
    """The options a result was made with, as `provenance` records them: every field of the
    dataclass but those of `_WHERE_FIELDS` (the starting weights are recorded beside, by
    `weights_id`), tuples as lists and paths as `paths.shown` gives them."""
    def recorded(value: Any) -> Any:
        if isinstance(value, tuple):
            return [recorded(v) for v in value]
        return shown(value) if isinstance(value, Path) else value

    return {field.name: recorded(getattr(options, field.name)) for field in fields(options)
            if field.name not in _WHERE_FIELDS}


def provenance(options: DataOptions, wall_s: float | None = None, *, trains: bool = True,
               script: str | None = None) -> dict[str, Any]:
    """The `_meta` entry of a result file: how the run was started (``command``: its
    command line, or the one that gives its options), the commit, the date, the training
    and test subsets and epochs, whether it is smoke, the machine, the wall time and the
    option dataclass's fields (``options``, `recorded_options`).

    Args:
        options: the lab options.
        wall_s: the run's wall time, if known.
        trains: False for an evaluation-only part: ``epochs`` is then None, ``train_subset``
            0 and ``smoke`` depends on the test set only (`is_smoke`).
        script: the lab script, e.g. ``labs/lab2_pruning.py`` (default: this process's).
    """
    return {
        "command": _command_line(options, script),
        "commit": git_commit(),
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "epochs": options.epochs if trains else None,
        "train_subset": options.subset if trains else 0,
        "test_subset": options.test_subset,
        "smoke": is_smoke(options, trains),
        "machine": f"{os.cpu_count()} cores, {cpu_name()}",  # speed figures name the CPU
        **({"wall_s": round(wall_s, 1)} if wall_s is not None else {}),
        "options": recorded_options(options),
    }


def weights_id(options: DataOptions) -> str | None:
    """The --weights option as recorded in result and run files (None: the default)."""
    return None if options.weights is None else str(options.weights)


def refuse_smoke_over_full(out_dir: Path, name: str, smoke: bool) -> None:
    """A smoke result never replaces a full-size one: raise if ``out_dir/name.json`` holds a
    full-size result and this run is smoke."""
    previous = read_result(out_dir, name) if smoke else None
    if previous is not None and not previous.get("_meta", {}).get("smoke", True):
        raise MinitorchError(
            f"{out_dir / name}.json holds a full-size result and this is a smoke run "
            "(fewer epochs or images), which never replaces one: write it elsewhere (the "
            "default --out-dir, results/local/, is for such runs)")


def preflight(options: LabOptions, results: Sequence[tuple[str, bool]],
              runs: Sequence[str]) -> None:
    """Every check that can fail a lab run, made before any work starts.

    Args:
        options: the lab options (--out-dir, --run-root, --resume, --overwrite, ...).
        results: (result name, whether that part trains) of each result file it will write.
        runs: the run folders under --run-root it will train in.

    Raises:
        MinitorchError: an output folder that cannot be written, a smoke result over a
            full-size one, or a fresh run over an existing one (`check_run_dir`).
    """
    for name, trains in results:
        refuse_smoke_over_full(options.out_dir, name, is_smoke(options, trains))
    for run in runs:
        check_run_dir(options, run)
    ensure_writable_dir(options.out_dir, "--out-dir")
    if runs:
        ensure_writable_dir(options.run_root, "--run-root")


def write_result(out_dir: Path, name: str, payload: dict[str, Any],
                 options: DataOptions, wall_s: float | None = None, *, trains: bool = True,
                 script: str | None = None) -> Path:
    """Write `out_dir/name.json` atomically, with `_meta` provenance; returns the path.

    `trains` and `script` are passed to `provenance`.
    """
    refuse_smoke_over_full(out_dir, name, is_smoke(options, trains))
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{name}.json"
    document = {**payload, "_meta": provenance(options, wall_s, trains=trains, script=script)}
    text = json.dumps(document, indent=2, default=json_default) + "\n"
    atomic_write(path, lambda f: f.write(text.encode()))
    return path


def reusable_evaluation(options: LabOptions, name: str) -> dict[str, Any] | None:
    """With --resume, the finished evaluation ``<out-dir>/<name>.json`` if it was made on the
    same test set with the same weights; otherwise (or without --resume) None."""
    if not options.resume:
        return None
    previous = read_result(options.out_dir, name)
    if previous is None or previous.get("_meta", {}).get("test_subset") != options.test_subset:
        return None
    return previous if previous.get("weights") == weights_id(options) else None


def run_and_write(options: LabOptions, name: str, part: str, title: str,
                  compute: Callable[[], dict[str, Any]], *, trains: bool,
                  script: str | None = None) -> dict[str, Any]:
    """Run one lab part, write ``<out-dir>/<name>.json`` and return what was written.

    Args:
        options: the lab options.
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
    if options.argv is None:  # built in Python: record the command of this part alone
        options = replace(options, part=part)
    if not trains and (previous := reusable_evaluation(options, name)) is not None:
        print(f"({part}) reusing {options.out_dir / name}.json (--resume)")
        return previous
    print(f"{title} ...", flush=True)
    start = time.perf_counter()
    payload = compute()
    wall = time.perf_counter() - start
    if trains:
        wall = payload.get("wall_s_total", payload.get("wall_s"))
    else:
        payload.update(weights=weights_id(options), wall_s=round(wall, 1))
    write_result(options.out_dir, name, payload, options, wall, trains=trains, script=script)
    return read_result(options.out_dir, name) or payload


def load_data(options: DataOptions, train: bool = True) -> Cifar10:
    """CIFAR-10 as the options select it (the whole test set unless ``test_subset``); with
    ``train=False`` the training batches are not read at all (an evaluation needs only the
    test batch)."""
    return load_cifar10(options.data_dir, subset=options.subset if train else 0,
                        test_subset=options.test_subset, download=options.download)


def lab_data(options: LabOptions, data: Cifar10 | None, *, trains: bool) -> Cifar10:
    """The data a lab part runs on: `data` when its caller loaded it (a lab's ``run`` shares
    one data set between its parts), else CIFAR-10 loaded for this part alone (without the
    training images when it only evaluates)."""
    return data if data is not None else load_data(options, train=trains)


def pretrained(options: LabOptions) -> Module:
    """A fresh copy of the pretrained model (reloaded before every experiment, as the labs ask)."""
    return load_pretrained(options.weights)


def accuracy_on_test_set(model: Module, data: Cifar10, options: LabOptions,
                         desc: str) -> float:
    """`evaluate` on the test images of `data`, with a progress bar unless --no-progress."""
    return evaluate(model, data.x_test, data.y_test, progress=not options.no_progress, desc=desc)


def check_run_dir(options: LabOptions, run_name: str) -> None:
    """Refuse, before any work starts, a fresh run over one that ``<run-root>/<run_name>``
    already holds (unless --resume or --overwrite).

    Raises:
        RunExistsError: naming --resume and --overwrite.
    """
    if not (options.resume or options.overwrite):
        refuse_existing_run(options.run_root / run_name, "another --run-root")


def prepare_run_dir(options: LabOptions, run_name: str, *,
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
    run_dir = options.run_root / run_name
    path = run_dir / "provenance.json"
    meta = {**provenance(options, script=script), "weights": weights_id(options)}
    if options.resume and (run_dir / "last.npz").is_file():
        started = json.loads(path.read_text()) if path.is_file() else meta
        for key in ("train_subset", "test_subset", "epochs", "weights"):
            if started.get(key) != meta[key]:
                raise MinitorchError(
                    f"{run_dir} was started with {key}={started.get(key)}, not {meta[key]}; "
                    "resume with the same options or drop --resume")
        return
    check_run_dir(options, run_name)
    run_dir.mkdir(parents=True, exist_ok=True)
    text = json.dumps({**meta, "run": run_name}, indent=2) + "\n"
    atomic_write(path, lambda f: f.write(text.encode()))


def finetune(model: Module, data: Cifar10, options: LabOptions, run_name: str,
             hooks: Sequence[Any] = (), *, script: str | None = None,
             teacher: Module | None = None,
             distill: DistillConfig | None = None) -> dict[str, Any]:
    """Finetune with the course recipe in `runs/<run_name>`; resumable with --resume.

    The run folder is checked and recorded first (`prepare_run_dir`, with `script` for its
    provenance). With a `teacher` (another model) the loss is knowledge distillation from it,
    `distill` (a `training.DistillConfig`) giving its temperature and weight; both go to the
    `Trainer` as they are.

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
    prepare_run_dir(options, run_name, script=script)
    config = FinetuneConfig(epochs=options.epochs, seed=options.seed)
    trainer = Trainer(model, (data.x_train, data.y_train), (data.x_test, data.y_test), config,
                      hooks=hooks, run_dir=options.run_root / run_name,
                      progress=not options.no_progress, teacher=teacher, distill=distill)
    history = trainer.fit(resume=options.resume, overwrite=options.overwrite)
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


def save_model_file(model: Module, options: LabOptions, name: str) -> dict[str, Any]:
    """The finetuned `model` (its best weights, as it computes with them) as
    ``<out-dir>/models/<name>.mtc``: every finetuning lab writes its model file when it ends.

    Returns:
        {"file" (repository-relative where possible), "bytes", "ratio"} for the result JSON.
    """
    path = options.out_dir / "models" / f"{name}.mtc"
    sizes = write_model_file(model, path)
    return {"file": shown(path), "bytes": sizes["bytes"], "ratio": round(sizes["ratio"], 2)}
