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
  to rounding; with ``--round-widths`` as many kept back as make each block's width a
  multiple of the conv tile), and the smaller model is written as ``lab4_a_<lambda>.mtc``.
  Payload per strength: accuracy, surviving channels per block, MACs ratio, history.
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
  sparse path (from ``lab2_c.mtc``), and every (a), (b) and finetuned (e) model, with their
  accuracies, MACs and time per MAC relative to the full model. With ``--part all`` it runs
  last.
* (e) **The methods at equal MAC budgets.** At each ``--budgets`` fraction of the MACs, the
  L1-filter ranking of Li et al. and group Lasso (`part_e`), each finetuned with the labels
  alone and with distillation from the pretrained model, all in the same epochs; each
  result is written as it finishes.

Strengths are strings (the JSON keys). The defaults bracket each penalty's useful range on
the pretrained model: with the prox after every step and a converged model the loss gradient
barely pushes back, so the prox acts as a near-uniform decay (of the group norms in (a), of
every |w| in (c)) and the strength predicts which channels or weights reach zero
(`compression.structured.predicted_group_norms`). Group-Lasso strength 0.6 removes its first
channels late in its 10 epochs and 2 removes nearly all; Lasso strength 0.01 ends below Lab 2
(d)'s 80 % zeros and 0.02 above. (e) does not take strengths: it predicts the one for its
budget.
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
    CHANNEL_TILE,
    FULL_WIDTHS,
    GroupLassoHook,
    at_least_one,
    fill_to_tile,
    group_norms,
    l1_filter_keep,
    l1_filter_norms,
    predicted_group_norms,
    resnet20_macs,
    shrink,
    strength_for_mac_budget,
    surviving_channels,
    top_channels,
    widths_for_mac_budget,
    within_block_ranks,
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
    provenance,
    run_and_write,
    save_model_file,
    weights_id,
    write_result,
)
from minitorch_compress.experiments.conv_time import (
    conv_macs,
    narrowed,
    record_convs,
    time_each,
)
from minitorch_compress.experiments.lab4_layout import (
    FINETUNE_PARTS,
    METHODS,
    PARTS,
    SCRIPT,
    TITLES,
    iterative_pruning,
    method_run,
)
from minitorch_compress.kernels.parallel import get_num_threads
from minitorch_compress.models.pretrained import load_pretrained
from minitorch_compress.models.resnet import to_sparse
from minitorch_compress.options import LabOptions, refuse_repeats
from minitorch_compress.paths import RESULTS_DIR, shown
from minitorch_compress.recipe import FinetuneConfig
from minitorch_compress.results import read_result
from minitorch_compress.training.distill import DistillConfig

STRENGTHS = ("0.6", "0.8", "1")  # group Lasso, part (a): see the module docstring
L1_STRENGTHS = ("0.01", "0.02")  # Lasso on every weight, part (c): see the module docstring
SMALL_THRESHOLD = 1e-3  # part (c)'s single pruning step: |w| below this becomes 0
# part (e)'s MAC budgets, as fractions of the full model's MACs (the JSON keys), in the order
# they run: 0.6 first, the one budget that can reach 1.5x the full model's speed
BUDGETS = ("0.6", "0.5", "0.4")
SPEED_BATCH = 100


@dataclass(frozen=True)
class Lab4Options(LabOptions):
    """Lab 4's options: those of every lab (`LabOptions`) and its own knobs.

    Attributes:
        strengths: group-Lasso strengths of (a)/(b), as strings (the JSON keys).
        l1_strengths: Lasso strengths of (c), as strings.
        no_l1_baseline: (b) finetunes only the group-Lasso models, not the L1-filter
            baseline.
        round_widths: (a) makes each block's surviving channels up to a multiple of the conv
            tile by keeping back zero groups (`fill_to_tile`: the same outputs), so (a)'s and
            (b)'s models run every conv1 on whole tiles.
        speed_rounds: (d)'s timed rounds per model (their median is reported).
        budgets: (e)'s MAC budgets, fractions of the full model's MACs in whole percents, as
            strings ("0.6"; the JSON keys), run in this order.
        methods: (e)'s methods, some of ``METHODS``, run in this order at each budget.
        kd_temperature, kd_alpha: (e)'s distillation settings (`DistillConfig`'s defaults).

    Raises:
        MinitorchError: (when built) a strength that is not a number >= 0, --round-widths
            without part (a) or --no-l1-baseline without (b), fewer than one speed round, a
            budget outside (0, 1], not a whole percent or below the smallest tiled model, an
            unknown method, a value given twice in a list (`refuse_repeats`), or
            distillation settings `DistillConfig` refuses.
    """

    PARTS = PARTS

    strengths: tuple[str, ...] = STRENGTHS
    l1_strengths: tuple[str, ...] = L1_STRENGTHS
    no_l1_baseline: bool = False
    round_widths: bool = False
    speed_rounds: int = 5
    budgets: tuple[str, ...] = BUDGETS
    methods: tuple[str, ...] = METHODS
    kd_temperature: float = DistillConfig().temperature
    kd_alpha: float = DistillConfig().alpha

    def __post_init__(self) -> None:
        super().__post_init__()
        for name, option in (("strengths", "--strengths"), ("l1_strengths", "--l1-strengths")):
            values = tuple(str(v) for v in getattr(self, name))
            object.__setattr__(self, name, values)
            for value in values:
                try:  # inf, too, is no strength: it zeroes every channel group at once
                    ok = 0 <= float(value) < float("inf")
                except ValueError:
                    ok = False
                if not ok:
                    raise MinitorchError(f"{option} takes finite numbers >= 0, got {value!r}")
            refuse_repeats(option, values, same=float)  # 0 and 0.0: one strength
        # a switch of one part, given without that part, would be ignored silently
        for name, option, used_by in (("round_widths", "--round-widths", "a"),
                                      ("no_l1_baseline", "--no-l1-baseline", "b")):
            if getattr(self, name) and used_by not in self.parts():
                raise MinitorchError(f"{option} applies to part {used_by} only (got --part "
                                     f"{self.part}); leave it out or add --part {used_by}")
        if not isinstance(self.speed_rounds, int) or self.speed_rounds < 1:
            raise MinitorchError(f"--speed-rounds must be >= 1, got {self.speed_rounds!r}")
        budgets = tuple(budget_key(b) for b in self.budgets)
        refuse_repeats("--budgets", self.budgets, same=budget_key)  # 0.6 and 0.60: one budget
        object.__setattr__(self, "budgets", budgets)
        unknown = [m for m in self.methods if m not in METHODS]
        if unknown or not self.methods:
            raise MinitorchError(f"--methods takes some of {' '.join(METHODS)}, got "
                                 f"{' '.join(map(str, self.methods)) or 'none'}")
        refuse_repeats("--methods", self.methods)
        object.__setattr__(self, "methods", tuple(self.methods))
        self.distill_config()  # its MinitorchError names the bad setting

    def distill_config(self) -> DistillConfig:
        """The distillation settings of (e)'s KD methods."""
        try:
            return DistillConfig(float(self.kd_temperature), float(self.kd_alpha))
        except (TypeError, ValueError):
            raise MinitorchError(f"--kd-temperature and --kd-alpha take numbers, got "
                                 f"{self.kd_temperature!r} and {self.kd_alpha!r}") from None

    def parts(self) -> list[str]:
        """The parts `part` names, in order; with "all", (d) last, since it times the models
        of every other part."""
        parts = super().parts()
        return [p for p in parts if p != "d"] + (["d"] if "d" in parts else [])


def budget_key(value: Any) -> str:
    """A MAC budget as (e) records it: "0.60" and 0.6 both become "0.6".

    Raises:
        MinitorchError: not a fraction in (0, 1] in whole percents, or below the MACs of the
            smallest model the tile allows (`CHANNEL_TILE` channels in every block).
    """
    try:
        percent = 100 * float(value)
    except (TypeError, ValueError):
        percent = float("nan")
    if not (0 < percent <= 100 and abs(percent - round(percent)) < 1e-9):
        raise MinitorchError(f"--budgets takes fractions of the MACs in (0, 1] in whole "
                             f"percents (e.g. 0.6 0.45), got {value!r}")
    smallest = resnet20_macs([CHANNEL_TILE] * len(FULL_WIDTHS)) / resnet20_macs()
    if percent / 100 < smallest:
        raise MinitorchError(f"--budgets {value}: below the smallest model with {CHANNEL_TILE} "
                             f"channels a block ({smallest:.1%} of the MACs)")
    return f"{round(percent) / 100:g}"


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
        keep = at_least_one(surviving_channels(model), model)
        small = shrink(model, fill_to_tile(keep, model) if options.round_widths else keep)
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

    The channel-pruned models are those of (a) and (b) at ``--strengths`` and every
    finetuned (e) model in ``<out-dir>/models``.

    Each round also times every conv of each model alone, on the inputs it sees in the
    model (`conv_time`: the conv kernel `kernels/dispatch.py` picks, without the batch norm,
    residual add and ReLU it runs fused with). Of a channel-pruned model, the convs that
    pruning narrowed (`conv_time.narrowed`) should take time in proportion to their MACs;
    all else it runs -- the convs left whole, those epilogues on each block's full-width
    output, pooling, the FC, each call's fixed costs -- does not shrink. Recording both
    tells how well the kernels keep up with the narrower layers from how much of the model
    never got smaller.

    Returns:
        {"models": {name: {"img_s", "speedup_range" ([lowest, highest] over the rounds of
        the full model's time / its own in the same round), "macs_ratio", "time_per_mac" (its
        time per MAC relative
        to the full model's: 1.0 when time falls exactly with the MACs), "accuracy",
        "weights_zero" (fraction of its prunable weights that are 0), "weights_kept" (its
        prunable weights, as a fraction of the full model's), "file"}}, "batch", "rounds",
        "threads"}; a model with narrowed convs (all dense) also has "narrowed_convs" (how
        many), "narrowed_time_per_mac" (their time per MAC relative to the same convs' in
        the full model), "fixed_share" (the share of its time outside them) and
        "fixed_share_in_full" (the share of the full model's time outside the same convs).
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
    names = [f"lab4_{kind}{strength}" for strength in options.strengths
             for kind in ("a_", "b_", "b_l1_")]
    # and every finetuned model of (e) that is there (its phase models have the widths of
    # its group-Lasso models)
    names += sorted(path.stem for path in (options.out_dir / "models").glob("lab4_e_*_m*.mtc")
                    if not path.stem.startswith("lab4_e_lasso_phase_"))
    for name in names:
        if (path := model_file(options, name)).is_file():
            candidates[name] = (load_pretrained(path), shown(path))
    x = Tensor(np.random.default_rng(0).standard_normal(
        (SPEED_BATCH, 3, 32, 32)).astype(np.float32))
    times: dict[str, list[float]] = {name: [] for name in candidates}
    conv_times: dict[str, list[list[float]]] = {name: [] for name in candidates}
    # each model's convs, recorded from one forward (which also compiles and warms); kept
    # (with the activations they hold) for the full model and those pruning narrowed
    convs = {name: record_convs(model, x) for name, (model, _) in candidates.items()}
    for name, calls in convs.items():
        if name != "full" and (calls is None or convs["full"] is None
                               or not narrowed(calls, convs["full"])):
            convs[name] = None
    with no_grad():
        for calls in convs.values():
            if calls is not None:
                time_each(calls)  # warm the plain conv path too
        for _ in range(options.speed_rounds):
            for name, (model, _) in candidates.items():
                start = time.perf_counter()
                model(x)
                times[name].append(time.perf_counter() - start)
                if convs[name] is not None:
                    conv_times[name].append(time_each(convs[name]))

    def prunable_weights(model: Any) -> int:
        return sum(layer.weight.size for layer in prunable_layers(model).values())

    def narrowed_split(name: str) -> dict[str, float]:
        """Its narrowed convs' time per MAC against the same convs' in the full model, and
        the share of each model's time outside those convs (nothing when none is narrowed
        or a model runs sparse convs)."""
        if name == "full" or convs[name] is None:
            return {}
        which = narrowed(convs[name], convs["full"])
        seconds = {n: statistics.median(sum(t[i] for i in which) for t in conv_times[n])
                   for n in (name, "full")}
        macs = {n: conv_macs([convs[n][i] for i in which]) for n in (name, "full")}
        return {"narrowed_convs": len(which),
                "narrowed_time_per_mac": (seconds[name] / macs[name])
                                         / (seconds["full"] / macs["full"]),
                "fixed_share": 1 - seconds[name] / statistics.median(times[name]),
                "fixed_share_in_full": 1 - seconds["full"] / statistics.median(times["full"])}

    full_weights = prunable_weights(candidates["full"][0])
    models = {}
    for name, (model, source) in candidates.items():
        macs_ratio = resnet20_macs(model.mid_channels) / resnet20_macs()
        # the model against the full one in the same round, lowest and highest: how far the
        # median's ratio could move between quiet windows
        per_round = [f / t for f, t in zip(times["full"], times[name], strict=True)]
        models[name] = {
            "img_s": SPEED_BATCH / statistics.median(times[name]),
            "speedup_range": [min(per_round), max(per_round)],
            "macs_ratio": macs_ratio,
            "time_per_mac": statistics.median(times[name]) / statistics.median(times["full"])
                            / macs_ratio,
            **narrowed_split(name),
            "accuracy": accuracy_on_test_set(model, data, options, f"(d) {name}"),
            "weights_zero": sparsity_report(model)[1],
            "weights_kept": prunable_weights(model) / full_weights, "file": source}
        print(f"  (d) {name}: {models[name]['img_s']:.0f} img/s, accuracy "
              f"{models[name]['accuracy']:.4f}", flush=True)
    return {"models": models, "batch": SPEED_BATCH, "rounds": options.speed_rounds,
            "threads": get_num_threads(), "test_images": len(data.y_test)}


def part_e(options: Lab4Options, data: Cifar10 | None = None) -> dict[str, Any]:
    """(e) The four methods at equal MAC budgets, each from the pretrained model in the same
    number of epochs (``--epochs``) with the course recipe.

    At each budget b of ``--budgets``, for each method of ``--methods``:

    * ``l1`` / ``l1_kd`` (Li et al., ICLR 2017): every block keeps about the same fraction of
      its channels, those with the largest conv1 filter L1 norms, the widths rounded to the
      tile so that the MACs are at most b (`widths_for_mac_budget` on `within_block_ranks`);
      the smaller model is finetuned for all the epochs, without / with distillation from the
      pretrained model (``--kd-temperature``, ``--kd-alpha``).
    * ``lasso`` / ``lasso_kd``: a group-Lasso phase of half the epochs at the strength
      predicted to land on b (`strength_for_mac_budget`), shared by both methods
      (``lab4_e_lasso_phase_m<b>``); the widths trimmed to b by the final group norms (the
      largest groups kept, never a zero group beyond the tile rounding), then finetuned for
      the other half, without / with distillation.

    Each result is written to ``<out-dir>/lab4_e.json`` as soon as it finishes (a session that
    ends mid-way loses nothing), beside the budgets and methods recorded there before with the
    same settings (`recorded_e`); with --resume those are reused rather than run again.

    Returns:
        {"budgets": {b: {method: RUN, "lasso_phase": PHASE}}, "epochs": {"l1", "lasso"},
        "train_images", "test_images", "seed", "weights", "kd": {"temperature", "alpha"},
        "wall_s_total"}; RUN = {"best_accuracy", "final_accuracy", "best_epoch", "history",
        "wall_s", "widths", "macs_ratio", "model_file", "distill" (the settings or None),
        "run" (its command, commit, date)}, a group-Lasso RUN also with "strength",
        "predicted_channels" and "actual_channels" (per block, after the phase); PHASE =
        {"strength", "predicted_channels", "actual_channels", "accuracy", "history", "widths",
        "macs_ratio", "wall_s", "model_file", "run"}.
    """
    data = lab_data(options, data, trains=True)
    if options.argv is None:  # built in Python: record the command of this part alone
        options = replace(options, part="e")
    lasso_epochs, tune_epochs = phase_epochs(options.epochs)
    distill = options.distill_config()
    context = {"epochs": {"l1": lasso_epochs + tune_epochs, "lasso": [lasso_epochs, tune_epochs]},
               "train_images": len(data.y_train), "test_images": len(data.y_test),
               "seed": options.seed, "weights": weights_id(options),
               "kd": {"temperature": distill.temperature, "alpha": distill.alpha}}
    recorded = recorded_e(options, context)
    ran: dict[str, dict[str, Any]] = {}  # what this call ran or reused, by budget
    stale: set[tuple[str, str]] = set()  # group-Lasso results of a phase run again

    def record(budget: str, name: str, entry: dict[str, Any]) -> None:
        ran.setdefault(budget, {})[name] = entry
        payload = e_payload(recorded_e(options, context, quiet=True), ran, stale, context)
        write_result(options.out_dir, "lab4_e", payload, options, payload["wall_s_total"],
                     script=SCRIPT)

    def reusable(budget: str, name: str) -> dict[str, Any] | None:
        entry = recorded.get(budget, {}).get(name) if options.resume else None
        if entry is None or not model_file(options, method_run(name, budget)).is_file():
            return None
        print(f"  (e) {name} at {budget}: reusing the result recorded in "
              f"{shown(options.out_dir / 'lab4_e.json')} (--resume)", flush=True)
        return entry

    def teacher_of(method: str) -> dict[str, Any]:
        return ({"teacher": pretrained(options), "distill": distill}
                if method.endswith("_kd") else {})

    def finetuned(model: Any, epochs: int, method: str, budget: str) -> dict[str, Any]:
        name = method_run(method, budget)
        result = finetune(model, data, replace(options, epochs=epochs), name, script=SCRIPT,
                          **teacher_of(method))
        widths = list(model.mid_channels)
        entry = {**{k: result[k] for k in ("best_accuracy", "final_accuracy", "best_epoch",
                                           "history", "wall_s")},
                 "widths": widths, "macs_ratio": resnet20_macs(widths) / resnet20_macs(),
                 "model_file": save_model_file(model, options, name),
                 "distill": ({"temperature": distill.temperature, "alpha": distill.alpha}
                             if method.endswith("_kd") else None),
                 "run": run_provenance(options)}
        print(f"  (e) {method} at {budget}: best {entry['best_accuracy']:.4f}, last "
              f"{entry['final_accuracy']:.4f}, {entry['macs_ratio']:.1%} of the MACs "
              f"({widths})", flush=True)
        return entry

    for budget in options.budgets:
        for method in options.methods:
            if (entry := reusable(budget, method)) is not None:
                record(budget, method, entry)
            elif method.startswith("l1"):
                full = pretrained(options)
                norms = l1_filter_norms(full)
                widths = widths_for_mac_budget(within_block_ranks(norms), float(budget))
                student = shrink(full, top_channels(norms, widths))
                record(budget, method, finetuned(student, lasso_epochs + tune_epochs, method,
                                                 budget))
            else:
                phase = ran.get(budget, {}).get("lasso_phase") or reusable(budget, "lasso_phase")
                if phase is None:
                    phase = lasso_phase(options, data, budget, lasso_epochs)
                    stale |= {(budget, m) for m in ("lasso", "lasso_kd")}
                record(budget, "lasso_phase", phase)
                student = load_pretrained(model_file(options, method_run("lasso_phase", budget)))
                stale.discard((budget, method))
                entry = finetuned(student, tune_epochs, method, budget)
                record(budget, method, {**entry, **{k: phase[k] for k in (
                    "strength", "predicted_channels", "actual_channels")}})
    return e_payload(recorded_e(options, context, quiet=True), ran, stale, context)


def lasso_phase(options: Lab4Options, data: Cifar10, budget: str,
                epochs: int) -> dict[str, Any]:
    """(e)'s group-Lasso phase at one budget: the pretrained model finetuned with the prox at
    the strength predicted for the budget, its widths trimmed to the budget by the final group
    norms, written as ``lab4_e_lasso_phase_m<b>.mtc``.

    Returns:
        {"strength", "predicted_channels" (per block, what the strength was predicted to
        leave), "actual_channels" (per block, the non-zero groups after the run), "accuracy"
        (last epoch, before trimming), "history", "widths", "macs_ratio" (the trimmed model),
        "wall_s", "model_file", "run"}.
    """
    fraction = float(budget)
    model = pretrained(options)
    recipe = FinetuneConfig(epochs=epochs, seed=options.seed)
    steps = -(-len(data.y_train) // recipe.batch_size) * epochs
    sgd = (recipe.lr, steps, recipe.momentum, recipe.weight_decay)
    start = group_norms(model)
    strength = strength_for_mac_budget(start, fraction, *sgd)
    predicted = [int(np.count_nonzero(n)) for n in predicted_group_norms(start, strength, *sgd)]
    name = method_run("lasso_phase", budget)
    result = finetune(model, data, replace(options, epochs=epochs), name,
                      [GroupLassoHook(strength), LastEpochOnly(epochs)], script=SCRIPT)
    norms = group_norms(model)
    alive = [int(np.count_nonzero(n)) for n in norms]
    # the largest groups up to the budget; where the prox zeroed more than the budget asks,
    # no zero group is kept beyond rounding the survivors up to the tile (a zero group stays
    # dead in the finetune: its ReLU passes no gradient)
    widths = [min(w, CHANNEL_TILE * max(1, -(-a // CHANNEL_TILE)))
              for w, a in zip(widths_for_mac_budget(norms, fraction), alive, strict=True)]
    small = shrink(model, top_channels(norms, widths))
    entry = {"strength": strength, "predicted_channels": predicted, "actual_channels": alive,
             "accuracy": result["best_accuracy"], "history": result["history"],
             "widths": widths, "macs_ratio": resnet20_macs(widths) / resnet20_macs(),
             "wall_s": result["wall_s"], "model_file": save_model_file(small, options, name),
             "run": run_provenance(options)}
    print(f"  (e) group-Lasso phase at {budget}: lambda {strength:.4f}, channels predicted "
          f"{sum(predicted)}, left {sum(alive)}, trimmed to {widths} "
          f"({entry['macs_ratio']:.1%} of the MACs)", flush=True)
    return entry


def run_provenance(options: Lab4Options) -> dict[str, Any]:
    """Who made one (e) result: its command, commit and date (the results of one file may
    come from separate commands; the file's `_meta` names only the last)."""
    meta = provenance(options, script=SCRIPT)
    return {"command": meta["command"], "commit": meta["commit"], "date": meta["date"]}


def recorded_e(options: Lab4Options, context: dict[str, Any],
               quiet: bool = False) -> dict[str, dict[str, Any]]:
    """The (e) results ``<out-dir>/lab4_e.json`` holds, by budget, if it was made with the same
    `context` (epochs, images, seed, weights, distillation settings).

    A file made with other settings would lose every result this run does not redo, so it is
    refused unless --overwrite; then (or when `quiet`: the re-reads before each write) none
    of its results are kept.

    Raises:
        MinitorchError: the file was made with other settings and --overwrite is not given.
    """
    previous = read_result(options.out_dir, "lab4_e")
    if previous is None:
        return {}
    other = [key for key, value in context.items() if previous.get(key) != value]
    if other and not (quiet or options.overwrite):
        key = other[0]
        raise MinitorchError(
            f"{shown(options.out_dir / 'lab4_e.json')} holds results made with {key} "
            f"{previous.get(key)}, not {context[key]}: use another --out-dir, the same "
            "settings, or --overwrite to replace them all")
    return {} if other else previous.get("budgets", {})


def e_payload(recorded: dict[str, dict[str, Any]], ran: dict[str, dict[str, Any]],
              stale: set[tuple[str, str]], context: dict[str, Any]) -> dict[str, Any]:
    """(e)'s result: the recorded results (less the `stale` ones, whose phase was run again)
    with this run's over them, the budgets in decreasing order."""
    merged: dict[str, dict[str, Any]] = {}
    for budget in {*recorded, *ran}:
        entries = {k: v for k, v in recorded.get(budget, {}).items() if (budget, k) not in stale}
        merged[budget] = {**entries, **ran.get(budget, {})}
    budgets = {b: merged[b] for b in sorted(merged, key=float, reverse=True)}
    wall = sum(entry.get("wall_s", 0) for runs in budgets.values() for entry in runs.values())
    return {"budgets": budgets, **context, "wall_s_total": round(wall, 1)}


PART_FUNCTIONS: dict[str, Callable[[Lab4Options, Cifar10 | None], dict[str, Any]]] = {
    "a": part_a, "b": part_b, "c": part_c, "d": part_d, "e": part_e}


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
    if part == "e":
        lasso = {"lasso", "lasso_kd"} & set(options.methods)
        return [method_run(m, b) for b in options.budgets
                for m in (["lasso_phase"] if lasso else []) + list(options.methods)]
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
