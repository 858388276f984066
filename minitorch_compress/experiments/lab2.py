"""Lab 2: magnitude pruning of the pretrained ResNet-20 (SPEC "Lab 2", parts a-e).

Each part is a function ``part_x(options, data=None) -> payload`` of `Lab2Options` (a frozen
dataclass: ``part_c(Lab2Options(epochs=1, subset=1000))`` runs from a Python prompt, loading
CIFAR-10 itself when no `data` is passed) returning the JSON payload that `run_part` writes
to ``<out-dir>/lab2_<part>.json`` (with `_meta` provenance):

* (a) ``{"accuracy": float}``: the pretrained float model on the test set;
* (b) ``{"accuracy": {"0.4": float, "0.6": float, "0.8": float}, ...}``: per-layer percentile
  pruning of a freshly reloaded pretrained model at each fraction, no finetuning;
* (c) prune 80 % per layer, finetune with `MaskHook` (pruned weights stay exactly 0);
* (d) `IterativePruningHook`: before epoch e = 1..10 prune to 8e % per layer, then 10 more
  epochs with the 80 % mask fixed;
* (e) the same with one global threshold over all prunable layers.

(c)-(e) return ``{"best_accuracy", "final_accuracy", "epochs", "history" (test accuracy per
epoch), "sparsity" ({layer: fraction of zeros} of the best model), "total_sparsity",
"wall_s", "log", ...}``; their best checkpoints stay in ``<run-root>/lab2_<part>/best.npz`` for
Lab 3 (`load_sparse_best`). `minitorch_compress.reports.lab2` renders ``lab2.md`` and the
figures in ``<out-dir>/lab2/`` from whichever JSON files exist.

Smoke runs (fewer than 20 epochs, a training or test subset) are labelled as such everywhere;
with ``--epochs N < 20`` the iterative schedule is compressed to ``max(1, N // 2)`` pruning
epochs (`prune_epochs_for`), so the 80 % mask is fixed, and a best model exists, within N.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from minitorch_compress.compression import (
    IterativePruningHook,
    MaskHook,
    Masks,
    prunable_layers,
    prune_model_by_percentage,
    sparsity_report,
)
from minitorch_compress.data.cifar10 import Cifar10
from minitorch_compress.errors import MinitorchError
from minitorch_compress.experiments.common import (
    accuracy_on_test_set,
    finetune,
    lab_data,
    load_data,
    preflight,
    pretrained,
    run_and_write,
    save_model_file,
)
from minitorch_compress.experiments.lab2_layout import FINETUNE_PARTS, PARTS, SCRIPT, TITLES
from minitorch_compress.io.checkpoint import load_checkpoint
from minitorch_compress.models.resnet import ResNet20
from minitorch_compress.options import LabOptions
from minitorch_compress.recipe import RECIPE_EPOCHS
from minitorch_compress.training.trainer import hook_state

FRACTIONS = ("0.4", "0.6", "0.8")  # part (b); the strings are the JSON keys
TARGET = 0.8  # sparsity of parts (c)-(e)
PRUNE_EPOCHS = 10  # the course's iterative schedule: 8 % more before each of epochs 1..10


@dataclass(frozen=True)
class Lab2Options(LabOptions):
    """Lab 2's options: those of every lab (`LabOptions`: part, epochs, subset, test_subset,
    seed, out_dir, run_root, resume, overwrite, data_dir, weights, ...); Lab 2 has no knob of
    its own. Build it in Python (``Lab2Options(epochs=1, subset=1000)``) or from the parsed
    arguments of ``labs/lab2_pruning.py`` (``Lab2Options.from_args(args)``)."""

    PARTS = PARTS


def run_name(part: str) -> str:
    """Folder of a finetuning part under --run-root: ``lab2_c``, ``lab2_d``, ``lab2_e``."""
    return f"lab2_{part}"


def prune_epochs_for(epochs: int) -> int:
    """Pruning epochs of the iterative schedule for a run of `epochs` epochs.

    The course's 20 epochs (and longer runs) prune over 10 epochs. A smoke run of N < 20
    epochs prunes over max(1, N // 2), so the final mask is fixed, and a best *sparse* model
    exists, before the run ends.
    """
    return PRUNE_EPOCHS if epochs >= RECIPE_EPOCHS else max(1, epochs // 2)


class BestOnlyWithFinalMask:
    """Trainer hook: an epoch may become "best" only once the iterative hook's mask is fixed.

    Before its last pruning step an iterative run is less sparse than the target (8 %, 16 %,
    ... and regrown weights), so its accuracy is not an 80 %-sparse result; the trainer skips
    epochs for which this sets ``metrics["eligible_for_best"] = False``.

    Args:
        pruning: the `IterativePruningHook` of the same run; list it *before* this hook so
            that its ``on_epoch_end`` has run.
    """

    def __init__(self, pruning: IterativePruningHook) -> None:
        self.pruning = pruning

    def on_epoch_end(self, trainer: Any, epoch: int, metrics: dict[str, Any]) -> None:
        """Veto the epoch unless the final mask was in force during it."""
        metrics["eligible_for_best"] = self.pruning.mask_fixed


# ------------------------------------------------------------------------------ the parts
def part_a(options: Lab2Options, data: Cifar10 | None = None) -> dict[str, Any]:
    """(a) Test accuracy of the pretrained float model.

    Returns:
        {"accuracy": float, "test_images": int}.
    """
    data = lab_data(options, data, trains=False)
    model = pretrained(options)
    return {"accuracy": accuracy_on_test_set(model, data, options, "(a) float"),
            "test_images": len(data.y_test)}


def part_b(options: Lab2Options, data: Cifar10 | None = None) -> dict[str, Any]:
    """(b) Per-layer percentile pruning at q = 0.4 / 0.6 / 0.8, without finetuning.

    The pretrained weights are reloaded before each q, as the lab asks (magnitude pruning at
    nested fractions would give the same masks anyway, but the lab's recipe is the spec).

    Returns:
        {"accuracy": {"0.4": float, "0.6": float, "0.8": float},
        "total_sparsity": {q: fraction of zeros over the prunable layers}, "test_images"}.
    """
    data = lab_data(options, data, trains=False)
    accuracy: dict[str, float] = {}
    total_sparsity: dict[str, float] = {}
    for q in FRACTIONS:
        model = pretrained(options)
        prune_model_by_percentage(model, float(q))
        total_sparsity[q] = sparsity_report(model)[1]
        accuracy[q] = accuracy_on_test_set(model, data, options, f"(b) q={q}")
        print(f"  (b) q = {q}: accuracy {accuracy[q]:.4f}, sparsity {total_sparsity[q]:.4f}",
              flush=True)
    return {"accuracy": accuracy, "total_sparsity": total_sparsity,
            "test_images": len(data.y_test)}


def _finetune_payload(model: ResNet20, data: Cifar10, options: Lab2Options, part: str,
                      hooks: list[Any], extra: dict[str, Any]) -> dict[str, Any]:
    """Run (or resume) the finetuning of `part` and describe its best model."""
    result = finetune(model, data, options, run_name(part), hooks=hooks, script=SCRIPT)
    # `finetune` leaves the model holding the best eligible epoch's weights
    per_layer, total = sparsity_report(model)
    return {**result, "sparsity": per_layer, "total_sparsity": total,
            "model_file": save_model_file(model, options, run_name(part)),
            "train_images": len(data.y_train), "test_images": len(data.y_test), **extra}


def part_c(options: Lab2Options, data: Cifar10 | None = None) -> dict[str, Any]:
    """(c) Prune 80 % of every prunable layer, then finetune with the mask enforced.

    Returns:
        The `finetune` summary plus the best model's "sparsity" per layer,
        "total_sparsity", "best_epoch", "target".
    """
    data = lab_data(options, data, trains=True)
    model = pretrained(options)
    # on --resume the trainer replaces these weights and masks with the checkpointed ones
    masks = prune_model_by_percentage(model, TARGET)
    return _finetune_payload(model, data, options, "c", [MaskHook(masks)], {"target": TARGET})


def _iterative(options: Lab2Options, data: Cifar10 | None, part: str,
               global_: bool) -> dict[str, Any]:
    data = lab_data(options, data, trains=True)
    prune_epochs = prune_epochs_for(options.epochs)
    pruning = IterativePruningHook(TARGET, prune_epochs, global_=global_)
    hooks = [pruning, BestOnlyWithFinalMask(pruning)]  # pruning first: its on_epoch_end decides
    extra = {"target": TARGET, "prune_epochs": prune_epochs, "global": global_,
             "schedule": f"prune to {TARGET:g} * e / {prune_epochs} before epoch e = 1.."
                         f"{prune_epochs}, then the mask is fixed"}
    return _finetune_payload(pretrained(options), data, options, part, hooks, extra)


def part_d(options: Lab2Options, data: Cifar10 | None = None) -> dict[str, Any]:
    """(d) Iterative per-layer pruning to 80 % (8e % before epoch e = 1..10), then a fixed mask.

    Only epochs with the final mask in force may be the best one.

    Returns:
        As `part_c`, plus "prune_epochs", "global" (False) and "schedule".
    """
    return _iterative(options, data, "d", global_=False)


def part_e(options: Lab2Options, data: Cifar10 | None = None) -> dict[str, Any]:
    """(e) As (d) with one global threshold over all prunable layers (80 % in total).

    Returns:
        As `part_d`, with "global" True; "sparsity" then varies from layer to layer.
    """
    return _iterative(options, data, "e", global_=True)


PART_FUNCTIONS = {"a": part_a, "b": part_b, "c": part_c, "d": part_d, "e": part_e}


# ------------------------------------------------------------------------------ running
def evaluation_only(parts: list[str]) -> bool:
    """Whether none of `parts` trains (then no training image needs to be loaded)."""
    return not set(parts) & set(FINETUNE_PARTS)


def run_part(part: str, options: Lab2Options, data: Cifar10) -> dict[str, Any]:
    """Run one part, write ``<out-dir>/lab2_<part>.json`` and return what was written.

    With --resume, (a)/(b) results made on the same test set are reused and (c)-(e)
    continue (or, when finished, just reload) their runs in ``<run-root>/lab2_<part>``.

    Raises:
        MinitorchError: unknown part, or a finetuning part without training images.
    """
    if part not in PART_FUNCTIONS:
        raise MinitorchError(f"unknown Lab 2 part {part!r}; choose from {', '.join(PARTS)}")
    if part in FINETUNE_PARTS and len(data.y_train) == 0:
        raise MinitorchError(f"part ({part}) finetunes: it needs training images (--subset > 0)")
    return run_and_write(options, f"lab2_{part}", part, TITLES[part],
                         lambda: PART_FUNCTIONS[part](options, data),
                         trains=part in FINETUNE_PARTS, script=SCRIPT)


# ------------------------------------------------------------------------------ for Lab 3
def load_sparse_best(run_root: str | Path, part: str = "c") -> tuple[ResNet20, Masks]:
    """The best 80 %-sparse model of Lab 2 part (c), (d) or (e), and its masks (for Lab 3).

    Args:
        run_root: the --run-root of the Lab 2 run (default ``runs/``).
        part: "c", "d" or "e".

    Returns:
        (model, masks): a ResNet-20 in eval mode holding the best checkpoint's weights, and
        {layer name: float32 0/1 array of the weight's shape (out, in[, k, k])}, the mask the
        finetuning enforced (the model's weights are exactly 0 where the mask is 0).

    Raises:
        MinitorchError: the checkpoint is missing (saying which command makes it) or holds
            no mask.
    """
    if part not in FINETUNE_PARTS:
        raise MinitorchError(f"Lab 2 part {part!r} saves no sparse model; use c, d or e")
    run_dir = Path(run_root) / run_name(part)
    path = run_dir / "best.npz"
    if not path.is_file():
        raise MinitorchError(
            f"no Lab 2 ({part}) checkpoint at {path}; run `python labs/lab2_pruning.py "
            f"--part {part}` first (or pass the --run-root it used)")
    arrays, _ = load_checkpoint(path)
    model = ResNet20()
    model.load_state_dict({k[len("model."):]: v for k, v in arrays.items()
                           if k.startswith("model.")})
    # (c) ran a MaskHook, (d)/(e) an IterativePruningHook whose state holds its final mask
    # (hook_state also reads the hook0.* keys of checkpoints written before hooks had names)
    hook = MaskHook({}) if part == "c" else IterativePruningHook(TARGET, PRUNE_EPOCHS)
    state = hook_state(arrays, hook, 0)
    masks = state if part == "c" else {k[len("mask."):]: v for k, v in state.items()
                                       if k.startswith("mask.")}
    masks = {k: v for k, v in masks.items() if k in set(prunable_layers(model))}
    if not masks:
        raise MinitorchError(f"{path} holds no pruning mask; rerun `python labs/lab2_pruning.py "
                             f"--part {part}`")
    masks = {k: (np.asarray(v) != 0).astype(np.float32) for k, v in masks.items()}
    _warn_if_not_a_full_run(run_dir, part)
    return model.eval(), masks


def _warn_if_not_a_full_run(run_dir: Path, part: str) -> None:
    provenance_path = run_dir / "provenance.json"
    if provenance_path.is_file() and json.loads(provenance_path.read_text()).get("smoke"):
        warnings.warn(f"{run_dir} is a smoke run of Lab 2 ({part}), not the full recipe",
                      stacklevel=3)
    last = run_dir / "last.npz"
    if last.is_file():
        _, meta = load_checkpoint(last)
        done, planned = meta.get("epoch"), meta.get("config", {}).get("epochs")
        if done is not None and planned is not None and done < planned:
            warnings.warn(f"{run_dir} stopped after epoch {done} of {planned}; finish it with "
                          f"`python labs/lab2_pruning.py --part {part} --resume`", stacklevel=3)


def headline_text(result: dict[str, Any]) -> str:
    """A part's result in one line: its accuracy, or (b)'s accuracy per fraction pruned, to 4
    decimals (a dict was printed raw: {'0.4': 0.8766666666666667})."""
    headline = result.get("accuracy", result.get("best_accuracy"))
    if isinstance(headline, dict):
        return ", ".join(f"q = {q}: {accuracy:.4f}" for q, accuracy in headline.items())
    return f"{headline:.4f}"


def run(options: Lab2Options,
        after_part: Callable[[], Any] | None = None) -> list[dict[str, Any]]:
    """Run the chosen parts in order (every check first, `preflight`), printing each
    headline; `after_part` is called after each (the lab script re-renders the report).

    Returns:
        What each part wrote.
    """
    parts = options.parts()
    preflight(options, [(f"lab2_{p}", p in FINETUNE_PARTS) for p in parts],
              [run_name(p) for p in parts if p in FINETUNE_PARTS])
    if evaluation_only(parts):
        # (a)/(b) only evaluate: skip reading the 50,000 training images
        options = replace(options, subset=0)
    data = load_data(options)
    written = []
    for part in parts:
        result = run_part(part, options, data)
        print(f"({part}) {headline_text(result)}", flush=True)
        written.append(result)
        if after_part is not None:
            after_part()
    return written
