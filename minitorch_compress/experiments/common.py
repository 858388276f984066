"""What every lab experiment shares: options, data, finetuning runs, result files, plots.

Result files carry their provenance: each JSON written by `write_result` has a `_meta` entry
with the command line, the git commit, the date, the training subset and epochs, and whether
it was a smoke run (anything short of the full recipe on all 50,000 images).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from minitorch_compress.cli import add_data_arguments, load_data
from minitorch_compress.data.cifar10 import Cifar10
from minitorch_compress.errors import MinitorchError
from minitorch_compress.io.checkpoint import atomic_write
from minitorch_compress.models.pretrained import REPO_ROOT, load_pretrained
from minitorch_compress.nn.module import Module
from minitorch_compress.training.trainer import FinetuneConfig, Trainer

FULL_TRAIN_SIZE = 50_000


def lab_parser(description: str, parts: Sequence[str]) -> argparse.ArgumentParser:
    """Options common to the lab scripts: --part, --epochs, --subset, --resume, output folders."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--part", choices=[*parts, "all"], default="all")
    parser.add_argument("--epochs", type=int, default=20,
                        help="finetuning epochs (the recipe: 20)")
    parser.add_argument("--resume", action="store_true",
                        help="continue interrupted finetuning runs from their last epoch")
    parser.add_argument("--out-dir", type=Path, default=REPO_ROOT / "results",
                        help="where JSON, tables and figures go (default: results/)")
    parser.add_argument("--run-root", type=Path, default=REPO_ROOT / "runs",
                        help="where run checkpoints go (default: runs/, git-ignored)")
    parser.add_argument("--seed", type=int, default=0)
    add_data_arguments(parser)
    return parser


def git_commit() -> str:
    """The current commit (with '+dirty' when tracked files are modified), or 'unknown'."""
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO_ROOT,
                                capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=REPO_ROOT, capture_output=True, text=True).stdout.strip()
        return commit + ("+dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def is_smoke(args: argparse.Namespace) -> bool:
    """Whether these options fall short of the full recipe (all training images, 20 epochs)."""
    return bool(args.subset is not None and args.subset < FULL_TRAIN_SIZE) or args.epochs < 20 \
        or bool(args.test_subset is not None and args.test_subset < 10_000)


def _command_line() -> str:
    """How this process was started, as a student would type it from the repository root."""
    script = Path(sys.argv[0]).resolve()
    if script.is_relative_to(REPO_ROOT):
        script = script.relative_to(REPO_ROOT)
    return "python " + " ".join(shlex.quote(a) for a in [str(script), *sys.argv[1:]])


def provenance(args: argparse.Namespace, wall_s: float | None = None) -> dict[str, Any]:
    """The `_meta` entry of a result file."""
    return {
        "command": _command_line(),
        "commit": git_commit(),
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "epochs": args.epochs,
        "train_subset": args.subset,
        "test_subset": args.test_subset,
        "smoke": is_smoke(args),
        "machine": f"{os.cpu_count()} cores",
        **({"wall_s": round(wall_s, 1)} if wall_s is not None else {}),
    }


def write_result(out_dir: Path, name: str, payload: dict[str, Any],
                 args: argparse.Namespace, wall_s: float | None = None) -> Path:
    """Write `out_dir/name.json` atomically, with `_meta` provenance; returns the path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{name}.json"
    document = {**payload, "_meta": provenance(args, wall_s)}
    text = json.dumps(document, indent=2, default=_jsonable) + "\n"
    atomic_write(path, lambda f: f.write(text.encode()))
    return path


def read_result(out_dir: Path, name: str) -> dict[str, Any] | None:
    """The JSON written by `write_result`, or None when that part has not been run."""
    path = out_dir / f"{name}.json"
    return json.loads(path.read_text()) if path.is_file() else None


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"not JSON-serialisable: {type(value).__name__}")


def load_lab_data(args: argparse.Namespace) -> Cifar10:
    """CIFAR-10 as selected by the options (the whole test set unless --test-subset)."""
    return load_data(args)


def pretrained(args: argparse.Namespace) -> Module:
    """A fresh copy of the pretrained model (reloaded before every experiment, as the labs ask)."""
    return load_pretrained(args.weights)


def finetune(model: Module, data: Cifar10, args: argparse.Namespace, run_name: str,
             hooks: Sequence[Any] = ()) -> dict[str, Any]:
    """Finetune with the course recipe in `runs/<run_name>`; resumable with --resume.

    Returns:
        {"best_accuracy", "final_accuracy", "epochs", "history" (test accuracy per epoch),
        "log" (the full per-epoch metrics), "wall_s" (training + testing time summed over
        epochs, so a resumed run counts each epoch once)}. The model is left holding the
        weights of the best epoch.
    """
    config = FinetuneConfig(epochs=args.epochs, seed=args.seed)
    trainer = Trainer(model, (data.x_train, data.y_train), (data.x_test, data.y_test), config,
                      hooks=hooks, run_dir=args.run_root / run_name,
                      progress=not args.no_progress)
    history = trainer.fit(resume=args.resume)
    if trainer.best_state is None:
        raise MinitorchError(
            f"no epoch of {run_name} was eligible as best (e.g. iterative pruning never "
            "reached its final mask): run more epochs"
        )
    model.load_state_dict(trainer.best_state)
    return {
        "best_accuracy": trainer.best_accuracy,
        "final_accuracy": history[-1]["test_accuracy"] if history else None,
        "epochs": len(history),
        "history": [h["test_accuracy"] for h in history],
        "log": history,
        "wall_s": round(sum(h["epoch_wall_s"] for h in history), 1),
    }


def plot_histories(histories: dict[str, list[float]], path: Path, title: str,
                   published: dict[str, float] | None = None) -> None:
    """Test accuracy per epoch, one line per run, dashed lines at the published figures."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    for i, (label, accuracies) in enumerate(histories.items()):
        color = f"C{i}"
        ax.plot(range(1, len(accuracies) + 1), accuracies, marker="o", ms=3, label=label,
                color=color)
        if published and label in published:
            ax.axhline(published[label], color=color, ls="--", lw=0.8)
    ax.set_xlabel("epoch")
    ax.set_ylabel("test accuracy")
    ax.set_title(title + ("  (dashed: published)" if published else ""))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
