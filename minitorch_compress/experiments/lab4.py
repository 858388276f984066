"""Lab 4: structured sparsity that makes ResNet-20 smaller, and the course's claims measured.

Each part is a function ``part_x(options, data=None) -> payload`` of `Lab4Options` (a frozen
dataclass that a Python prompt can build, as the lab script does from its arguments; CIFAR-10
is loaded when no `data` is passed) that `run_part` writes to
``<out-dir>/lab4_<part>.json`` (with `_meta` provenance); models go to
``<out-dir>/models/lab4_*.mtc``, so a later part (and a later machine) starts from the
committed file, not from a run folder.

* (a) **Group Lasso on channels.** For each strength lambda of ``--strengths``, finetune the
  pretrained model for the first half of the epoch budget with the group-Lasso prox after
  every step (`compression.structured.GroupLassoHook`); the last epoch is the result (where
  the penalty has acted longest). Its zero groups are removed (`shrink`: the same outputs up
  to rounding), and the
  smaller model is written as ``lab4_a_<lambda>.mtc``. Payload per strength: accuracy,
  surviving channels per block, MACs ratio, history.
* (b) **The smaller dense network, finetuned.** Each (a) model finetuned with the course
  recipe for the rest of the budget (``lab4_b_<lambda>.mtc``), and, as the baseline of Li et
  al. (ICLR 2017), the pretrained model cut to the *same* channel counts by conv1 filter L1
  norm and finetuned for the whole budget (``lab4_b_l1_<lambda>.mtc``): both end after the
  same number of epochs from the pretrained model.
* (c) **Lasso, then one small threshold (claim 1.4).** For each ``--l1-strengths``,
  finetune with soft-thresholding of every prunable weight after each step (Lab 1 (e)'s prox,
  t = lr * lambda), then one pruning step that zeroes |w| < ``SMALL_THRESHOLD``; accuracy and
  sparsity, beside Lab 2 (d)'s iterative pruning (read from ``lab2_d.json``).
* (d) **Speed (claims 1.2 and 1.6).** Inference images/s at batch 100, measured in one run in
  alternating rounds: the full model, Lab 2 (c)'s 80 %-sparse model on the dense and on the
  sparse path (from ``lab2_c.mtc``), and every (a) and (b) model, with their accuracies and
  MACs.

Strengths are strings (the JSON keys). How to choose them, from the first full runs: on the
converged pretrained model the loss gradient barely pushes back, so the prox (lr * lambda of
every group's L2 norm per step, 0.002 * lambda, 196 steps an epoch) acts as a near-uniform
decay of the group norms (1.8-3.9, median 2.9), and channels die once the accumulated shrink,
about 0.39 * lambda * epochs, passes their norm. With 10 group-Lasso epochs, lambda = 0.6
(2.35 in all) removed its first channels in epoch 8 and 39 of 336 by epoch 10; lambda = 2
(0.78 an epoch) removed nearly all of them by epoch 5 and the accuracy collapsed with them.
The defaults bracket the useful range between.

The Lasso of (c) calibrates the same way, and more exactly: with the prox after every step
(lr * lambda = 0.002 * lambda off every |w|, 3,920 steps in 20 epochs) the loss gradient
barely holds any weight up, so after e epochs the zeros are almost exactly the pretrained
weights with |w| < 0.392 * lambda * e. For lambda = 0.01 that predicts 14.6 % zeros after
4 epochs and 38.2 % after 11 (measured: 14.6 % and 37.7 %), and 62.4 % after the final
threshold (measured: 61.5 %). So lambda = 0.015 is about where Lab 2 (d)'s 80 % falls
(79.7 % predicted) and 0.02 passes it (89.5 %): the defaults 0.01 0.02 end below and above
it.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from minitorch_compress.autograd.engine import no_grad
from minitorch_compress.autograd.tensor import Tensor
from minitorch_compress.compression import prunable_layers, prune_below, sparsity_report
from minitorch_compress.compression.masks import zero_momentum_of_zeros
from minitorch_compress.compression.structured import (
    GroupLassoHook,
    at_least_one,
    l1_filter_keep,
    resnet20_macs,
    shrink,
    surviving_channels,
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
from minitorch_compress.experiments.lab4_layout import (
    FINETUNE_PARTS,
    PARTS,
    SCRIPT,
    TITLES,
    iterative_pruning,
)
from minitorch_compress.kernels.parallel import get_num_threads
from minitorch_compress.models.pretrained import load_pretrained
from minitorch_compress.models.resnet import to_sparse
from minitorch_compress.options import LabOptions
from minitorch_compress.paths import RESULTS_DIR, shown

STRENGTHS = ("0.6", "0.8", "1")  # group Lasso, part (a): see the module docstring
L1_STRENGTHS = ("0.01", "0.02")  # Lasso on every weight, part (c): see the module docstring
SMALL_THRESHOLD = 1e-3  # part (c)'s single pruning step: |w| below this becomes 0
SPEED_BATCH = 100


@dataclass(frozen=True)
class Lab4Options(LabOptions):
    """Lab 4's options: those of every lab (`LabOptions`) and its own knobs.

    Attributes:
        strengths: group-Lasso strengths of (a)/(b), as strings (the JSON keys).
        l1_strengths: Lasso strengths of (c), as strings.
        no_l1_baseline: (b) finetunes only the group-Lasso models, not the L1-filter
            baseline.
        speed_rounds: (d)'s timed rounds per model (their median is reported).

    Raises:
        MinitorchError: (when built) a strength that is not a number >= 0, or fewer than
            one speed round.
    """

    PARTS = PARTS

    strengths: tuple[str, ...] = STRENGTHS
    l1_strengths: tuple[str, ...] = L1_STRENGTHS
    no_l1_baseline: bool = False
    speed_rounds: int = 5

    def __post_init__(self) -> None:
        super().__post_init__()
        for name, option in (("strengths", "--strengths"), ("l1_strengths", "--l1-strengths")):
            values = tuple(str(v) for v in getattr(self, name))
            object.__setattr__(self, name, values)
            for value in values:
                try:
                    ok = float(value) >= 0
                except ValueError:
                    ok = False
                if not ok:
                    raise MinitorchError(f"{option} takes numbers >= 0, got {value!r}")
        if not isinstance(self.speed_rounds, int) or self.speed_rounds < 1:
            raise MinitorchError(f"--speed-rounds must be >= 1, got {self.speed_rounds!r}")


def phase_epochs(epochs: int) -> tuple[int, int]:
    """(group-Lasso epochs, finetuning epochs) of a budget of `epochs`: half each, at least
    one for the Lasso."""
    lasso = max(1, epochs // 2)
    return lasso, max(1, epochs - lasso)


class LastEpochOnly:
    """Trainer hook: only the last epoch may be "best" (a penalty run is judged where it
    ends, at its sparsest, not at an earlier, denser epoch)."""

    def __init__(self, epochs: int) -> None:
        self.epochs = epochs

    def on_epoch_end(self, trainer: Any, epoch: int, metrics: dict[str, Any]) -> None:
        metrics["eligible_for_best"] = epoch == self.epochs - 1


class L1ProxHook:
    """Trainer hook: soft-thresholding of every prunable weight after each SGD step,
    ``w <- sign(w) max(|w| - lr * lambda, 0)`` (Lab 1 (e)'s prox), and the zeroed weights'
    momentum with them (see `GroupLassoHook`); logs the sparsity."""

    state_name = "l1_prox"

    def __init__(self, strength: float) -> None:
        self.strength = float(strength)

    def after_step(self, trainer: Any) -> None:
        t = trainer.optimizer.lr * self.strength
        layers = prunable_layers(trainer.model).values()
        for layer in layers:
            w = layer.weight.data
            np.copyto(w, np.sign(w) * np.maximum(np.abs(w) - t, 0.0))
        zero_momentum_of_zeros(trainer.optimizer, [layer.weight for layer in layers])

    def on_epoch_end(self, trainer: Any, epoch: int, metrics: dict[str, Any]) -> None:
        metrics["sparsity"] = sparsity_report(trainer.model)[1]


def model_file(options: Lab4Options, name: str) -> Path:
    """Where part (a)/(b) write model `name` (``<out-dir>/models/<name>.mtc``)."""
    return options.out_dir / "models" / f"{name}.mtc"


def need_model(options: Lab4Options, name: str, part: str) -> Path:
    """The model file a later part starts from, or a one-line error saying how to make it."""
    path = model_file(options, name)
    if not path.is_file():
        raise MinitorchError(f"{shown(path)} does not exist: run `python {SCRIPT} --part "
                             f"{part}` first (with the same --out-dir and --strengths)")
    return path


# ------------------------------------------------------------------------------ the parts
def part_a(options: Lab4Options, data: Cifar10 | None = None) -> dict[str, Any]:
    """(a) Group-Lasso finetuning at each strength, then the zero channels removed.

    Returns:
        {"strengths": {lambda: {"accuracy", "channels" (per block), "channel_fraction",
        "macs_ratio", "history", "channels_per_epoch", "wall_s", "model_file"}}, "epochs",
        "train_images", "test_images"}.
    """
    data = lab_data(options, data, trains=True)
    lasso_epochs, _ = phase_epochs(options.epochs)
    phase = replace(options, epochs=lasso_epochs)
    out: dict[str, Any] = {}
    for strength in options.strengths:
        model = pretrained(options)
        hooks = [GroupLassoHook(float(strength)), LastEpochOnly(lasso_epochs)]
        result = finetune(model, data, phase, f"lab4_a_{strength}", hooks, script=SCRIPT)
        small = shrink(model, at_least_one(surviving_channels(model), model))
        saved = save_model_file(small, options, f"lab4_a_{strength}")
        channels = list(small.mid_channels)
        out[strength] = {
            "accuracy": result["best_accuracy"], "channels": channels,
            "channel_fraction": sum(channels) / sum(model.mid_channels),
            "macs_ratio": resnet20_macs(channels) / resnet20_macs(),
            "history": result["history"], "wall_s": result["wall_s"], "model_file": saved,
            "channels_per_epoch": [h.get("channels") for h in result["log"]]}
        print(f"  (a) lambda = {strength}: accuracy {result['best_accuracy']:.4f}, channels "
              f"{channels} ({out[strength]['macs_ratio']:.1%} of the MACs)", flush=True)
    return {"strengths": out, "epochs": lasso_epochs, "train_images": len(data.y_train),
            "test_images": len(data.y_test),
            "wall_s_total": round(sum(v["wall_s"] for v in out.values()), 1)}


def part_b(options: Lab4Options, data: Cifar10 | None = None) -> dict[str, Any]:
    """(b) Each (a) model finetuned for the rest of the budget; the L1-filter baseline with the
    same channel counts finetuned for the whole budget.

    Returns:
        {"strengths": {lambda: {"group_lasso": RUN, "l1_filter": RUN, "channels",
        "macs_ratio"}}, "epochs": {"group_lasso", "l1_filter"}, ...}, RUN = {"best_accuracy",
        "final_accuracy", "best_epoch", "history", "wall_s", "model_file"}; "l1_filter" is
        None with ``--no-l1-baseline``.
    """
    data = lab_data(options, data, trains=True)
    lasso_epochs, tune_epochs = phase_epochs(options.epochs)
    out: dict[str, Any] = {}

    def run(model: Any, epochs: int, name: str) -> dict[str, Any]:
        result = finetune(model, data, replace(options, epochs=epochs), name, script=SCRIPT)
        return {**{k: result[k] for k in ("best_accuracy", "final_accuracy", "best_epoch",
                                           "history", "wall_s")},
                "model_file": save_model_file(model, options, name)}

    for strength in options.strengths:
        small = load_pretrained(need_model(options, f"lab4_a_{strength}", "a"))
        channels = list(small.mid_channels)
        group = run(small, tune_epochs, f"lab4_b_{strength}")
        l1 = None
        if not options.no_l1_baseline:
            full = pretrained(options)
            baseline = shrink(full, l1_filter_keep(full, channels))
            l1 = run(baseline, lasso_epochs + tune_epochs, f"lab4_b_l1_{strength}")
        out[strength] = {"group_lasso": group, "l1_filter": l1, "channels": channels,
                         "macs_ratio": resnet20_macs(channels) / resnet20_macs()}
        print(f"  (b) lambda = {strength}: group Lasso {group['best_accuracy']:.4f}, L1 "
              f"filters {'not run' if l1 is None else format(l1['best_accuracy'], '.4f')} "
              f"({channels})", flush=True)
    return {"strengths": out, "epochs": {"group_lasso": [lasso_epochs, tune_epochs],
                                         "l1_filter": lasso_epochs + tune_epochs},
            "train_images": len(data.y_train), "test_images": len(data.y_test),
            "wall_s_total": round(sum(v[k]["wall_s"] for v in out.values()
                                      for k in ("group_lasso", "l1_filter") if v[k]), 1)}


def part_c(options: Lab4Options, data: Cifar10 | None = None) -> dict[str, Any]:
    """(c) Lasso finetuning, then one pruning step at ``SMALL_THRESHOLD``, beside Lab 2 (d).

    Returns:
        {"strengths": {lambda: {"accuracy_before", "sparsity_before" (after the Lasso run),
        "accuracy", "sparsity" (after the threshold), "history", "sparsity_per_epoch",
        "wall_s", "model_file" (the thresholded model, ``lab4_c_<lambda>.mtc``)}}, "threshold",
        "iterative": {"best_accuracy", "total_sparsity", "history", "sparsity_per_epoch",
        "source"} or None, ...}.
    """
    data = lab_data(options, data, trains=True)
    out: dict[str, Any] = {}
    for strength in options.l1_strengths:
        model = pretrained(options)
        hooks = [L1ProxHook(float(strength)), LastEpochOnly(options.epochs)]
        result = finetune(model, data, options, f"lab4_c_{strength}", hooks, script=SCRIPT)
        before = sparsity_report(model)[1]
        prune_below(model, SMALL_THRESHOLD)
        after = sparsity_report(model)[1]
        accuracy = accuracy_on_test_set(model, data, options, f"(c) lambda={strength} pruned")
        out[strength] = {"accuracy_before": result["best_accuracy"], "sparsity_before": before,
                         "accuracy": accuracy, "sparsity": after, "history": result["history"],
                         "wall_s": result["wall_s"],
                         "sparsity_per_epoch": [h.get("sparsity") for h in result["log"]],
                         "model_file": save_model_file(model, options, f"lab4_c_{strength}")}
        print(f"  (c) lambda = {strength}: sparsity {before:.4f} -> {after:.4f} after the "
              f"threshold, accuracy {result['best_accuracy']:.4f} -> {accuracy:.4f}",
              flush=True)
    iterative = next((it for folder in (options.out_dir, RESULTS_DIR)
                      if (it := iterative_pruning(folder)) is not None), None)
    return {"strengths": out, "threshold": SMALL_THRESHOLD, "iterative": iterative,
            "epochs": options.epochs, "train_images": len(data.y_train),
            "test_images": len(data.y_test),
            "wall_s_total": round(sum(v["wall_s"] for v in out.values()), 1)}


def part_d(options: Lab4Options, data: Cifar10 | None = None) -> dict[str, Any]:
    """(d) Measured inference images/s of the full, unstructured-sparse and channel-pruned
    models, in one run, alternating rounds (median), with their accuracies and MACs.

    Returns:
        {"models": {name: {"img_s", "macs_ratio", "accuracy", "weights_zero" (fraction of
        its prunable weights that are 0), "weights_kept" (its prunable weights, as a fraction
        of the full model's), "file"}}, "batch", "rounds", "threads"}.
    """
    data = lab_data(options, data, trains=False)
    candidates: dict[str, tuple[Any, str]] = {"full": (pretrained(options), "pretrained")}
    for folder in (options.out_dir, RESULTS_DIR):
        if (path := folder / "models" / "lab2_c.mtc").is_file():
            dense = load_pretrained(path)
            sparse = load_pretrained(path)
            to_sparse(sparse)
            candidates["unstructured_80_dense_path"] = (dense, shown(path))
            candidates["unstructured_80_sparse_path"] = (sparse, shown(path))
            break
    # (a)'s models too: channel-pruned but not finetuned, they give the speed of every
    # strength, also those whose (b) finetune has not been run
    for strength in options.strengths:
        for name in (f"lab4_a_{strength}", f"lab4_b_{strength}", f"lab4_b_l1_{strength}"):
            path = model_file(options, name)
            if path.is_file():
                candidates[name] = (load_pretrained(path), shown(path))
    x = Tensor(np.random.default_rng(0).standard_normal(
        (SPEED_BATCH, 3, 32, 32)).astype(np.float32))
    times: dict[str, list[float]] = {name: [] for name in candidates}
    with no_grad():
        for model, _ in candidates.values():
            model(x)  # compile and warm
        for _ in range(options.speed_rounds):
            for name, (model, _) in candidates.items():
                start = time.perf_counter()
                model(x)
                times[name].append(time.perf_counter() - start)
    def prunable_weights(model: Any) -> int:
        return sum(layer.weight.size for layer in prunable_layers(model).values())

    full_weights = prunable_weights(candidates["full"][0])
    models = {}
    for name, (model, source) in candidates.items():
        models[name] = {
            "img_s": SPEED_BATCH / statistics.median(times[name]),
            "macs_ratio": resnet20_macs(model.mid_channels) / resnet20_macs(),
            "accuracy": accuracy_on_test_set(model, data, options, f"(d) {name}"),
            "weights_zero": sparsity_report(model)[1],
            "weights_kept": prunable_weights(model) / full_weights, "file": source}
        print(f"  (d) {name}: {models[name]['img_s']:.0f} img/s, accuracy "
              f"{models[name]['accuracy']:.4f}", flush=True)
    return {"models": models, "batch": SPEED_BATCH, "rounds": options.speed_rounds,
            "threads": get_num_threads(), "test_images": len(data.y_test)}


PART_FUNCTIONS: dict[str, Callable[[Lab4Options, Cifar10 | None], dict[str, Any]]] = {
    "a": part_a, "b": part_b, "c": part_c, "d": part_d}


# ------------------------------------------------------------------------------ running
def run_names(part: str, options: Lab4Options) -> list[str]:
    """The run folders a part trains in."""
    if part == "a":
        return [f"lab4_a_{s}" for s in options.strengths]
    if part == "b":
        kinds = ("",) if options.no_l1_baseline else ("", "l1_")
        return [f"lab4_b_{k}{s}" for s in options.strengths for k in kinds]
    if part == "c":
        return [f"lab4_c_{s}" for s in options.l1_strengths]
    return []


def run_part(part: str, options: Lab4Options, data: Cifar10) -> dict[str, Any]:
    """Run one part, write ``<out-dir>/lab4_<part>.json`` and return what was written."""
    if part not in PART_FUNCTIONS:
        raise MinitorchError(f"unknown Lab 4 part {part!r}; choose from {', '.join(PARTS)}")
    if part in FINETUNE_PARTS and len(data.y_train) == 0:
        raise MinitorchError(f"part ({part}) finetunes: it needs training images (--subset > 0)")
    if part == "d":  # it times model files that a rerun of (b) may have changed: never reuse
        options = replace(options, resume=False)
    return run_and_write(options, f"lab4_{part}", part, TITLES[part],
                         lambda: PART_FUNCTIONS[part](options, data),
                         trains=part in FINETUNE_PARTS, script=SCRIPT)


def run(options: Lab4Options,
        after_part: Callable[[], Any] | None = None) -> list[dict[str, Any]]:
    """Run the parts ``options.part`` names in order (every check first, `preflight`),
    sharing one loaded data set between them."""
    parts = options.parts()
    preflight(options, [(f"lab4_{p}", p in FINETUNE_PARTS) for p in parts],
              [run for p in parts for run in run_names(p, options)])
    if not set(parts) & set(FINETUNE_PARTS):
        options = replace(options, subset=0)
    data = load_data(options)
    written = []
    for part in parts:
        written.append(run_part(part, options, data))
        if after_part is not None:
            after_part()
    return written
