"""Lab 5: the course's last claims. (a) mixed precision (claim 1.10), (b) early exit (claim
1.8), (c) every claim in one table.

* (a) **Mixed precision (claim 1.10).** For each target of `lab5_layout.TARGETS` (a committed
  uniform Lab 3 model file whose size is the budget): the sensitivity of the start model
  (`mixed_precision.layer_sensitivity`: each of the 20 body convs alone at each width of
  `BIT_MENU`, the others float; cross-entropy and accuracy on `Lab5Options.sensitivity_images`
  training images drawn with the seed, no augmentation: the test images never choose the
  bits), each layer's measured ``.mtc`` bytes at each width (`mixed_precision.layer_bytes`),
  the widths minimising the summed loss increase within the budget less `BUDGET_MARGIN`
  (`mixed_precision.allocate`, exact at 1-byte granularity, then checked on the real file),
  and QAT of that allocation with the Lab 3 (c) recipe (`common.finetune`; for the sparse
  start the mask-aware quantizer and the fixed mask of Lab 3 (d)). Each target finetunes in
  its own run folder ``<run_root>/lab5_a_<target>`` and ``lab5_a.json`` is rewritten after
  each one; its model goes to ``<out_dir>/models/lab5_a_<target>.mtc``, read back and
  evaluated from the file.
* (b) **Early exit (claim 1.8).** Classifiers after each of the first eight residual blocks
  of the pretrained ResNet-20 (the ninth exit is its own head), trained with the backbone
  frozen, as Shallow-Deep Networks do: the pooled output of every block is computed once per
  image (one pass, no augmentation), then the eight linear classifiers are trained on it
  with our autograd (cross-entropy, SGD with momentum, cosine learning rate, seeded batch
  order). On the test set: each exit's accuracy, its "wasteful" and "destructive" fractions
  (`models.early_exit.wasteful_and_destructive`), the max-softmax exit policy swept over
  thresholds (accuracy against average MACs per image), the operating point (the cheapest
  threshold within `TOLERANCE` of the full model's accuracy) and, with ``speed_rounds > 0``,
  its measured images/s at batch 1 and 100 against the full model.
* (c) **The claims table** runs nothing: it is built from the result files by
  `reports.claims` (``claims.json`` and ``claims.md``).
Options are a frozen `Lab5Options`; ``part_a(options)`` and ``part_b(options)`` run (a) and
(b), write their JSON and return the payload.
"""

from __future__ import annotations

import json
import math
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from minitorch_compress import ops
from minitorch_compress.autograd.engine import no_grad
from minitorch_compress.autograd.tensor import Tensor
from minitorch_compress.compression import (
    MaskHook,
    mask_from_weights,
    set_bits_per_layer,
    weight_layers,
)
from minitorch_compress.compression import mixed_precision as mp
from minitorch_compress.compression.quant import QuantMode
from minitorch_compress.data.cifar10 import Cifar10, load_cifar10
from minitorch_compress.data.transforms import normalize
from minitorch_compress.errors import MinitorchError
from minitorch_compress.experiments.common import (
    accuracy_on_test_set,
    finetune,
    is_smoke,
    preflight,
    provenance,
    refuse_smoke_over_full,
    save_model_file,
    weights_id,
    write_result,
)
from minitorch_compress.experiments.lab5_layout import (
    PARTS,
    SCRIPT,
    TARGETS,
    mixed_model_name,
    uniform_model_name,
)
from minitorch_compress.io import mtc
from minitorch_compress.io.checkpoint import atomic_write, load_checkpoint, save_checkpoint
from minitorch_compress.models import early_exit as ee
from minitorch_compress.models.pretrained import load_pretrained
from minitorch_compress.models.resnet import ResNet20
from minitorch_compress.ops.losses import log_softmax_array
from minitorch_compress.optim.sgd import SGD
from minitorch_compress.options import LabOptions, refuse_repeats
from minitorch_compress.paths import REPO_ROOT, shown
from minitorch_compress.recipe import RECIPE_EPOCHS
from minitorch_compress.results import read_result

#: the operating point may lose at most this much test accuracy against the full model
TOLERANCE = 0.005
#: the thresholds of the max-softmax policy swept in (b)
THRESHOLDS = (0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.925, 0.95, 0.96, 0.97, 0.98, 0.99, 0.995,
              0.998, 0.999, 0.9995, 0.9999)
#: the classifiers' recipe (`Lab5Options.epochs`, default 20, counts its epochs). The pooled
#: features are small (standard deviation 0.15-0.5 per channel), so the step is large; a
#: linear classifier on them underfits rather than overfits, so there is no weight decay
#: (with 5e-4 the exits lost 1-4 points on the test set in a trial on the full data).
HEAD_BATCH = 128
HEAD_LR = 1.0
HEAD_MOMENTUM = 0.9
HEAD_WEIGHT_DECAY = 0.0
FULL_EPOCHS = RECIPE_EPOCHS  # fewer make a smoke run, as in the other labs
#: images timed per round at each batch size (batch 1 is slow per image in Python)
SPEED_IMAGES = {1: 200, 100: 1000}


#: (a): the widths each body conv may get, the training images its sensitivity is measured
#: on, and the share of the budget left unallocated: a finetune moves the Huffman-coded
#: sizes (the uniform Lab 3 models' files moved by -0.1 % to +0.9 % from before to after
#: their finetune), so the allocation aims 1 % below the budget and the finished file is
#: measured against the budget itself
BIT_MENU = mp.BIT_MENU
SENSITIVITY_IMAGES = 2000
BUDGET_MARGIN = 0.01
GRANULARITY = 1  # bytes per unit of the knapsack's table: exact to the byte
#: (a) the quantizer and the model of each start; the committed files set the budgets
START_MODES: dict[str, QuantMode] = {"dense": "asymmetric", "sparse": "masked"}
COMMITTED_RESULTS = REPO_ROOT / "results"
SPARSE_START = COMMITTED_RESULTS / "models" / "lab2_c.mtc"  # Lab 3 (d)'s --sparse-from


@dataclass(frozen=True)
class Lab5Options(LabOptions):
    """Lab 5's options: `options.LabOptions` (epochs: of (a)'s finetunes and of (b)'s
    internal classifiers; seed: batch order, and (a)'s sensitivity images; run_root: (a)'s
    run folders ``<run_root>/lab5_a_<target>`` and sensitivities ``<run_root>/lab5_a/``,
    (b)'s pooled block features ``<run_root>/lab5_b/``; resume: continue (a)'s finetunes and
    keep its finished targets, reuse cached sensitivities and features made from the same
    images and weights; overwrite: start afresh) and

    Attributes:
        targets: (a)'s targets, of `lab5_layout.TARGETS` (default: all of them).
        sensitivity_images: (a): training images the sensitivity is measured on (at most the
            training images loaded).
        speed_rounds: alternating timing rounds of the full and early-exit models (0: speed
            not measured).
    """

    PARTS = PARTS

    targets: tuple[str, ...] = tuple(TARGETS)
    sensitivity_images: int = SENSITIVITY_IMAGES
    speed_rounds: int = 0

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "targets", tuple(self.targets))
        unknown = [t for t in self.targets if t not in TARGETS]
        if unknown or not self.targets:
            raise MinitorchError(f"targets take some of {' '.join(TARGETS)}, got "
                                 f"{' '.join(self.targets) or 'none'}")
        refuse_repeats("--targets", self.targets)  # c3 c3 would finetune c3 twice
        if not isinstance(self.sensitivity_images, int) or self.sensitivity_images < 1:
            raise MinitorchError("sensitivity_images must be a whole number >= 1, got "
                                 f"{self.sensitivity_images!r}")
        if not isinstance(self.speed_rounds, int) or self.speed_rounds < 0:
            raise MinitorchError("speed_rounds must be a whole number >= 0, got "
                                 f"{self.speed_rounds!r}")


# --------------------------------------------------------------------------------------------
# (a) Mixed precision.
# --------------------------------------------------------------------------------------------


def body_layers(model: ResNet20) -> list[str]:
    """The layers Lab 3 quantizes: every conv under ``body_op.`` (20 with the shortcuts)."""
    return [name for name in weight_layers(model) if name.startswith("body_op.")]


def start_model(options: Lab5Options, start: str) -> ResNet20:
    """A fresh float copy of a start: the pretrained model ("dense") or Lab 2 (c)'s committed
    80 %-sparse model ("sparse", the start of Lab 3 (d)'s committed models)."""
    return load_pretrained(options.weights if start == "dense" else SPARSE_START)


def loss_and_accuracy(images: np.ndarray, labels: np.ndarray, batch_size: int = 500
                      ) -> mp.Score:
    """A `mixed_precision.Score`: model -> (mean cross-entropy, accuracy) on uint8 `images`
    (N, 3, 32, 32) with `labels` (N,), in eval mode, without augmentation."""
    def score(model: ResNet20) -> tuple[float, float]:
        model.eval()
        total_loss, right = 0.0, 0
        with no_grad():
            for begin in range(0, len(images), batch_size):
                logits = model(Tensor(normalize(images[begin:begin + batch_size]))).data
                batch = labels[begin:begin + batch_size]
                log_probs = log_softmax_array(logits.astype(np.float64), axis=1)
                total_loss -= float(log_probs[np.arange(len(batch)), batch].sum())
                right += int((logits.argmax(axis=1) == batch).sum())
        return total_loss / len(labels), right / len(labels)
    return score


def sensitivity_images(options: Lab5Options, data: Cifar10) -> tuple[np.ndarray, np.ndarray]:
    """`options.sensitivity_images` training images (fewer if fewer are loaded), drawn
    without replacement with the seed, and their labels."""
    count = min(options.sensitivity_images, len(data.y_train))
    chosen = np.sort(np.random.default_rng(options.seed).choice(len(data.y_train), count,
                                                                 replace=False))
    return data.x_train[chosen], data.y_train[chosen]


def start_sensitivity(options: Lab5Options, data: Cifar10, start: str) -> dict[str, Any]:
    """The sensitivity of a start's body convs and their measured bytes, cached in
    ``<run_root>/lab5_a/start_<start>.json`` and reused with --resume when made from the same
    images (count, training set drawn from, seed), weights and widths.

    Returns:
        {"images", "mode", "bit_menu", "float": {"loss", "accuracy"}, "layers": {layer:
        {bits: {"loss", "accuracy", "loss_increase"}}}, "bytes": {layer: {bits: bytes}},
        "rest_bytes": {bits: the rest of the uniform file}, "uniform_bytes": {bits: the whole
        uniform file, before finetuning}} (bits as strings, the JSON keys).
    """
    images, labels = sensitivity_images(options, data)
    key = {"images": len(labels), "drawn_from": len(data.y_train), "seed": options.seed,
           "bit_menu": list(BIT_MENU),
           "weights": weights_id(options) if start == "dense" else shown(SPARSE_START),
           "mode": START_MODES[start]}
    path = options.run_root / "lab5_a" / f"start_{start}.json"
    if options.resume and path.is_file():
        cached = json.loads(path.read_text())
        if all(cached.get(k) == v for k, v in key.items()):
            print(f"(a) reusing {shown(path)} (--resume)", flush=True)
            return cached
    model = start_model(options, start)
    layers = body_layers(model)
    mode = START_MODES[start]
    print(f"(a) sensitivity of the {start} start: {len(layers)} layers x {len(BIT_MENU)} widths "
          f"on {len(labels):,} training images ...", flush=True)
    progress = None if options.no_progress else (lambda line: print(f"  {line}", flush=True))
    (base_loss, base_accuracy), table = mp.layer_sensitivity(
        model, layers, BIT_MENU, mode, loss_and_accuracy(images, labels), progress)
    costs, rest = mp.layer_bytes(model, layers, BIT_MENU, mode)
    result = {**key, "float": {"loss": base_loss, "accuracy": base_accuracy},
              "layers": {name: {str(b): {"loss": loss, "accuracy": accuracy,
                                         "loss_increase": loss - base_loss}
                                for b, (loss, accuracy) in table[name].items()}
                         for name in layers},
              "bytes": {name: {str(b): c for b, c in costs[name].items()} for name in layers},
              "rest_bytes": {str(b): r for b, r in rest.items()},
              "uniform_bytes": {str(b): rest[b] + sum(costs[n][b] for n in layers)
                                for b in BIT_MENU}}
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(result, indent=2) + "\n"
    atomic_write(path, lambda f: f.write(text.encode()))
    return result


def _int_keyed(table: dict[str, dict[str, Any]], value: str | None = None
               ) -> dict[str, dict[int, Any]]:
    return {name: {int(b): (v[value] if value else v) for b, v in row.items()}
            for name, row in table.items()}


def allocation_for(target: str, sensitivity: dict[str, Any], model: ResNet20,
                   work_dir: Path) -> dict[str, Any]:
    """The widths of a target: the knapsack within the budget less `BUDGET_MARGIN`, checked
    on the real file of the start model at those widths (``<work_dir>/before.mtc``); when the
    file is larger than the knapsack's bytes say, the knapsack is rerun with that much less.

    Returns:
        {"bits": {layer: int}, "budget_file", "budget_bytes", "margin_bytes",
        "knapsack_bytes" (what the layers may take), "layer_bytes" (what they take),
        "predicted_bytes", "before_file_bytes" (the start model's file at these widths),
        "loss_increase_sum", "granularity"}.
    """
    spec = TARGETS[target]
    budget_file = COMMITTED_RESULTS / "models" / f"{uniform_model_name(target)}.mtc"
    if not budget_file.is_file():
        raise MinitorchError(f"(a) target {target} is measured against {shown(budget_file)}, "
                             "which is missing: it is a committed file of the repository")
    budget = budget_file.stat().st_size
    margin = math.ceil(BUDGET_MARGIN * budget)
    costs = _int_keyed(sensitivity["bytes"])
    penalty = _int_keyed(sensitivity["layers"], "loss_increase")
    # the rest of the file (header, batch norm, head, FC) as at the uniform width: a first
    # guess, corrected below by the real file
    rest = sensitivity["rest_bytes"][spec["bits"]]
    mode = START_MODES[spec["start"]]
    knapsack = budget - margin - rest
    path = work_dir / "before.mtc"
    for _ in range(5):
        bits = mp.allocate(costs, penalty, knapsack, GRANULARITY)
        set_bits_per_layer(model, bits, mode)
        mtc.save(path, model)
        real = path.stat().st_size
        excess = real - (budget - margin)
        if excess <= 0:
            break
        knapsack -= excess  # the rest came out larger than guessed: take it from the layers
    else:
        raise MinitorchError(f"(a) {target}: no allocation's file fits {budget - margin:,} bytes")
    layer_total = mp.allocation_cost(costs, bits)
    return {"bits": bits, "budget_file": shown(budget_file), "budget_bytes": budget,
            "margin_bytes": margin, "knapsack_bytes": knapsack, "layer_bytes": layer_total,
            "predicted_bytes": layer_total + rest, "before_file_bytes": real,
            "loss_increase_sum": mp.allocation_penalty(penalty, bits),
            "granularity": GRANULARITY}


def run_target(options: Lab5Options, data: Cifar10, target: str,
               sensitivity: dict[str, Any]) -> dict[str, Any]:
    """Allocate, finetune and write one target's model; returns its record for lab5_a.json.

    With --resume and a run folder that recorded its widths (``allocation.json``), those
    widths are finetuned on, so a resumed run never changes its model halfway.
    """
    spec = TARGETS[target]
    mode = START_MODES[spec["start"]]
    name = mixed_model_name(target)
    run_dir = options.run_root / name
    model = start_model(options, spec["start"])
    recorded = run_dir / "allocation.json"
    if options.resume and recorded.is_file() and (run_dir / "last.npz").is_file():
        allocation = json.loads(recorded.read_text())
        print(f"(a) {target}: resuming with the widths of {shown(recorded)}", flush=True)
    else:
        with tempfile.TemporaryDirectory() as work_dir:
            allocation = allocation_for(target, sensitivity, model, Path(work_dir))
        # recorded before the first epoch, so an interrupted run resumes with these widths
        # (only last.npz/best.npz make a folder "a run" that a fresh start refuses)
        run_dir.mkdir(parents=True, exist_ok=True)
        text = json.dumps(allocation, indent=2) + "\n"
        atomic_write(recorded, lambda f: f.write(text.encode()))
    bits = {layer: int(b) for layer, b in allocation["bits"].items()}
    set_bits_per_layer(model, bits, mode)
    print(f"(a) {target}: widths {' '.join(str(b) for b in bits.values())} (budget "
          f"{allocation['budget_bytes']:,} bytes, file before finetuning "
          f"{allocation['before_file_bytes']:,})", flush=True)
    before = accuracy_on_test_set(model, data, options, f"(a) {target} before")
    hooks = [MaskHook(mask_from_weights(model))] if spec["start"] == "sparse" else []
    result = finetune(model, data, options, name, hooks, script=SCRIPT)
    model_file = save_model_file(model, options, name)
    path = options.out_dir / "models" / f"{name}.mtc"
    loaded = mtc.load(path)
    stored = {layer: mtc.stored_bits(loaded.header["tensors"][f"{layer}.weight"])
              for layer in bits}
    from_file = accuracy_on_test_set(load_pretrained(path), data, options,
                                     f"(a) {target} from file")
    uniform = _uniform(target)
    record = {
        "start": spec["start"], "mode": mode, **allocation, "bits": bits,
        "stored_bits": stored, "before": before,
        **{key: result[key] for key in ("best_accuracy", "final_accuracy", "best_epoch",
                                        "history", "wall_s")},
        "model_file": model_file, "file_accuracy": from_file,
        "within_budget": model_file["bytes"] <= allocation["budget_bytes"],
        "uniform": uniform,
        "run": {key: value for key, value in provenance(options, script=SCRIPT).items()
                if key in ("command", "commit", "date")},
    }
    print(f"(a) {target}: best {result['best_accuracy']:.4f} at {model_file['bytes']:,} bytes "
          f"(uniform {uniform['bits']} bits: {uniform['accuracy']} at {uniform['bytes']:,}); "
          f"from the file {from_file:.4f}", flush=True)
    return record


def uniform_models() -> list[dict[str, Any]]:
    """The committed uniform Lab 3 (c) and (d) models: {"name", "file", "bytes" (the file's
    size), "bits", "accuracy" (best of run, from ``lab3_c.json`` / ``lab3_d.json``)}."""
    out = []
    for lab3, key in (("lab3_c", "best_accuracy"), ("lab3_d", "after")):
        result = read_result(COMMITTED_RESULTS, lab3) or {}
        for bits in ("4", "3", "2"):
            path = COMMITTED_RESULTS / "models" / f"{lab3}_{bits}bit.mtc"
            accuracy = result.get(key, {}).get(bits)
            if path.is_file() and accuracy is not None:
                out.append({"name": path.stem, "file": shown(path), "bytes": path.stat().st_size,
                            "bits": int(bits), "accuracy": accuracy})
    return out


def _uniform(target: str) -> dict[str, Any]:
    """The uniform model a target is measured against, and (under "next") the one a bit wider
    (the moonshot's bar)."""
    models = {m["name"]: m for m in uniform_models()}
    name = uniform_model_name(target)
    if name not in models:
        raise MinitorchError(f"(a) target {target} is measured against {name}, whose committed "
                             "file or result (results/lab3_*.json) is missing")
    wider = models.get(uniform_model_name(target, TARGETS[target]["next"]))
    return {**models[name], "next": wider}


def part_a_settings(options: Lab5Options, data: Cifar10) -> dict[str, Any]:
    """What a finished target of lab5_a.json depends on besides the code: --resume keeps a
    recorded target only when these match."""
    return {"epochs": options.epochs, "train_images": len(data.y_train),
            "test_images": len(data.y_test), "seed": options.seed,
            "sensitivity_images": min(options.sensitivity_images, len(data.y_train)),
            "weights": weights_id(options), "smoke": is_smoke(options)}


def _recorded_part_a(options: Lab5Options, settings: dict[str, Any]) -> dict[str, Any]:
    """The lab5_a.json in --out-dir when it was made with `settings` (else an empty one)."""
    previous = read_result(options.out_dir, "lab5_a")
    if previous is None or previous.get("settings") != settings:
        return {"targets": {}, "sensitivity": {}}
    return previous


def _write_part_a(options: Lab5Options, settings: dict[str, Any],
                  targets: dict[str, Any], sensitivity: dict[str, Any]) -> None:
    """(Re)write lab5_a.json with `targets` over those it already records with the same
    settings (re-read now: another command may have finished a target meanwhile)."""
    previous = _recorded_part_a(options, settings)
    merged_targets = {**previous["targets"], **targets}
    merged_targets = {t: merged_targets[t] for t in TARGETS if t in merged_targets}
    payload = {
        "protocol": {
            "layers": "the 20 convs of the residual blocks (shortcuts included); head conv and "
                      "FC float, as in Lab 3",
            "sensitivity": "one layer at a time at each width, the others float; mean "
                           "cross-entropy and accuracy on training images drawn with the "
                           "seed, no augmentation (the test images never choose the bits)",
            "penalty": "the loss increase over the float start, summed over the layers",
            "allocation": "exact knapsack by dynamic programming over bytes, granularity "
                          f"{GRANULARITY} byte",
            "bit_menu": list(BIT_MENU), "budget_margin": BUDGET_MARGIN,
            "finetune": "the Lab 3 (c) recipe (the sparse start: Lab 3 (d)'s mask-aware "
                        "quantizer, mask fixed); best of run on the test set, as Lab 3",
        },
        "settings": settings,
        "sensitivity": {**previous["sensitivity"], **sensitivity},
        "uniform_models": uniform_models(),
        "targets": merged_targets,
    }
    wall = sum(t["wall_s"] for t in merged_targets.values())
    write_result(options.out_dir, "lab5_a", payload, options, wall, script=SCRIPT)


def part_a(options: Lab5Options, data: Cifar10 | None = None,
           after_target: Callable[[], Any] | None = None) -> dict[str, Any]:
    """Mixed precision against uniform at equal file size, for each of ``options.targets``:
    writes ``lab5_a.json`` after each target's finetune (then calls `after_target`: the lab
    script re-renders the page there) and returns the last payload.

    Raises:
        MinitorchError: a smoke run over a full-size lab5_a.json, an existing run folder
            without --resume or --overwrite (both before anything runs), no training images.
    """
    names = [mixed_model_name(t) for t in options.targets]
    preflight(options, [("lab5_a", True)], names)
    if data is None:
        data = load_cifar10(options.data_dir, subset=options.subset,
                            test_subset=options.test_subset, download=options.download)
    if len(data.y_train) == 0:
        raise MinitorchError("part (a) finetunes: it needs training images (--subset > 0)")
    settings = part_a_settings(options, data)
    recorded = _recorded_part_a(options, settings)
    sensitivity: dict[str, Any] = {}
    for target in options.targets:
        if options.resume and target in recorded["targets"]:
            print(f"(a) {target}: reusing the finished target recorded in "
                  f"{shown(options.out_dir / 'lab5_a.json')} (--resume)", flush=True)
            continue
        start = TARGETS[target]["start"]
        if start not in sensitivity:
            sensitivity[start] = start_sensitivity(options, data, start)
        record = run_target(options, data, target, sensitivity[start])
        _write_part_a(options, settings, {target: record}, sensitivity)
        if after_target is not None:
            after_target()
    if not (options.out_dir / "lab5_a.json").is_file() or sensitivity:
        _write_part_a(options, settings, {}, sensitivity)
    return read_result(options.out_dir, "lab5_a") or {}


# --------------------------------------------------------------------------------------------
# (b) Early exit.
# --------------------------------------------------------------------------------------------


def train_internal_classifiers(classifiers: ee.InternalClassifiers,
                               features: Sequence[np.ndarray], labels: np.ndarray,
                               epochs: int, seed: int = 0) -> list[dict[str, float]]:
    """Train every internal classifier on its block's pooled features (backbone frozen).

    One SGD step per batch minimises the sum of the exits' cross-entropies; the classifiers
    share no parameter, so each one learns as if trained alone. The learning rate follows a
    cosine from `HEAD_LR` to 0 over the epochs.

    Args:
        features: float32 (N, C_e) per internal exit, in the order of ``classifiers.heads``.
        labels: int (N,).

    Returns:
        Per epoch: {"epoch", "loss" (mean over the exits and batches), "lr"}.
    """
    rng = np.random.default_rng(seed)
    optimizer = SGD(classifiers.parameters(), lr=HEAD_LR, momentum=HEAD_MOMENTUM,
                    weight_decay=HEAD_WEIGHT_DECAY)
    log = []
    for epoch in range(epochs):
        optimizer.lr = HEAD_LR * 0.5 * (1 + math.cos(math.pi * epoch / epochs))
        order = rng.permutation(len(labels))
        total, batches = 0.0, 0
        for begin in range(0, len(order), HEAD_BATCH):
            index = order[begin:begin + HEAD_BATCH]
            logits = classifiers([Tensor(f[index]) for f in features])
            losses = [ops.cross_entropy(z, labels[index]) for z in logits]
            loss = losses[0]
            for other in losses[1:]:
                loss = loss + other
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += loss.item() / len(losses)
            batches += 1
        log.append({"epoch": epoch + 1, "loss": round(total / max(batches, 1), 5),
                    "lr": optimizer.lr})
    return log


def threshold_curve(logits: np.ndarray, labels: np.ndarray, costs: np.ndarray,
                    full_macs: int, thresholds: Sequence[float] = THRESHOLDS
                    ) -> list[dict[str, Any]]:
    """The exit policy at each threshold.

    Returns:
        Per threshold: "accuracy", "mean_macs" (per image), "saving" (1 - mean_macs /
        full_macs), "exit_fractions" (of the images leaving at each exit), "exit_accuracy"
        (the accuracy of the images leaving at each exit; None where none leave),
        "rescued" / "lost" (fractions of all images the policy classifies right and the
        final head wrong, and the other way round).
    """
    final_right = logits[-1].argmax(axis=-1) == labels
    curve = []
    for threshold in thresholds:
        exits = ee.confidence_exits(logits, threshold)
        right = ee.predictions_at(logits, exits) == labels
        mean_macs = float(costs[exits].mean())
        curve.append({
            "threshold": threshold,
            "accuracy": float(right.mean()),
            "mean_macs": mean_macs,
            "saving": 1 - mean_macs / full_macs,
            "exit_fractions": [float((exits == e).mean()) for e in range(len(logits))],
            "exit_accuracy": [float(right[exits == e].mean()) if (exits == e).any() else None
                              for e in range(len(logits))],
            "rescued": float((right & ~final_right).mean()),
            "lost": float((~right & final_right).mean()),
        })
    return curve


def operating_point(curve: Sequence[dict[str, Any]], float_accuracy: float,
                    tolerance: float = TOLERANCE) -> dict[str, Any] | None:
    """The threshold with the fewest average MACs among those at most `tolerance` below the
    full model's accuracy; None when no threshold is that accurate."""
    good = [c for c in curve if c["accuracy"] >= float_accuracy - tolerance - 1e-12]
    return min(good, key=lambda c: c["mean_macs"]) if good else None


def _images_per_second(run: Any, images: np.ndarray, batch_size: int) -> float:
    start = time.perf_counter()
    for begin in range(0, len(images), batch_size):
        run(images[begin:begin + batch_size])
    return len(images) / (time.perf_counter() - start)


def measure_speed(model: ResNet20, classifiers: ee.InternalClassifiers, images: np.ndarray,
                  threshold: float, batch_size: int, rounds: int) -> dict[str, Any]:
    """Images/s of the full model and of the early-exit model (exited images dropped from
    the batch), timed in alternating rounds on the same images; medians over the rounds.

    Args:
        images: float32 (N, 3, 32, 32), normalised; N a multiple of `batch_size` is best.
        threshold: the exit policy's threshold.
        rounds: >= 1; each round times the full model, then the early-exit one.

    Returns:
        {"batch_size", "images", "rounds", "full_img_s", "early_exit_img_s", "speedup",
        "full_rounds", "early_exit_rounds"} (the per-round figures kept).
    """
    if rounds < 1:
        raise ValueError(f"measure_speed needs rounds >= 1, got {rounds}")
    model.eval()

    def full(batch: np.ndarray) -> None:
        with no_grad():
            model(Tensor(batch))

    def early(batch: np.ndarray) -> None:
        ee.early_exit_predict(model, classifiers, batch, threshold)

    full(images[:batch_size])  # compile and warm both paths before the first round
    early(images[:batch_size])
    full_rounds, early_rounds = [], []
    for _ in range(rounds):
        full_rounds.append(_images_per_second(full, images, batch_size))
        early_rounds.append(_images_per_second(early, images, batch_size))
    full_s, early_s = statistics.median(full_rounds), statistics.median(early_rounds)
    return {"batch_size": batch_size, "images": len(images), "rounds": rounds,
            "full_img_s": round(full_s, 1), "early_exit_img_s": round(early_s, 1),
            "speedup": round(early_s / full_s, 3),
            "full_rounds": [round(v, 1) for v in full_rounds],
            "early_exit_rounds": [round(v, 1) for v in early_rounds]}


def _features(options: Lab5Options, model: ResNet20, images: np.ndarray, split: str
              ) -> list[np.ndarray]:
    """Pooled block features of `images`, cached in ``<run_root>/lab5_b/`` and reused with
    --resume when made from the same number of images and the same weights."""
    path = options.run_root / "lab5_b" / f"features_{split}.npz"
    if options.resume and path.is_file():
        arrays, meta = load_checkpoint(path)
        if meta.get("images") == len(images) and meta.get("weights") == options.weights:
            if not options.no_progress:
                print(f"(b) reusing {shown(path)} (--resume)")
            return [arrays[f"exit{e}"] for e in range(ee.NUM_EXITS)]
    if not options.no_progress:
        print(f"(b) pooled block features of {len(images):,} {split} images ...", flush=True)
    features = ee.pooled_block_features(model, images)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_checkpoint(path, {f"exit{e}": f for e, f in enumerate(features)},
                    {"images": len(images), "weights": options.weights})
    return features


def heads_file(options: Lab5Options) -> Path:
    """Where (b) writes its trained internal classifiers."""
    return options.out_dir / "models" / "lab5_b_exits.npz"


def part_b(options: Lab5Options, data: Cifar10 | None = None) -> dict[str, Any]:
    """Early exit on the pretrained ResNet-20: writes ``lab5_b.json`` and the classifiers'
    file (``<out_dir>/models/lab5_b_exits.npz``); returns what was written.

    Args:
        data: CIFAR-10 already loaded, as `options` selects it (its subsets are what the result
            records); None: load it.

    Raises:
        MinitorchError: a smoke run (fewer epochs or images) over a full-size result in
            `out_dir`, refused before anything is computed or written.
    """
    start = time.perf_counter()
    refuse_smoke_over_full(options.out_dir, "lab5_b", is_smoke(options))
    if data is None:
        data = load_cifar10(options.data_dir, subset=options.subset,
                            test_subset=options.test_subset, download=options.download)
    model = load_pretrained(options.weights)
    train_features = _features(options, model, data.x_train, "train")
    test_features = _features(options, model, data.x_test, "test")
    classifiers = ee.internal_classifiers_for(model, np.random.default_rng(options.seed))
    if not options.no_progress:
        print(f"(b) training {len(classifiers.heads)} internal classifiers for {options.epochs} "
              "epochs ...", flush=True)
    log = train_internal_classifiers(classifiers, train_features[:-1], data.y_train,
                                     options.epochs, options.seed)
    train_logits = ee.exit_logits(model, classifiers, train_features)
    logits = ee.exit_logits(model, classifiers, test_features)
    correct = logits.argmax(axis=-1) == data.y_test
    wasteful, destructive = ee.wasteful_and_destructive(correct)
    costs = ee.exit_costs(model, classifiers)
    full_macs = ee.full_model_macs(model)
    float_accuracy = float(correct[-1].mean())
    curve = threshold_curve(logits, data.y_test, costs, full_macs)
    point = operating_point(curve, float_accuracy)
    final_errors = int((~correct[-1]).sum())

    speed = None
    if options.speed_rounds and point is not None:
        images = normalize(data.x_test)
        speed = {str(b): measure_speed(model, classifiers, images[:n], point["threshold"], b,
                                       options.speed_rounds)
                 for b, n in SPEED_IMAGES.items()}

    path = heads_file(options)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_checkpoint(path, classifiers.state_dict(),
                    {"after_blocks": list(range(len(classifiers.heads))),
                     "weights": options.weights, "epochs": options.epochs, "seed": options.seed})
    payload = {
        "protocol": {
            "features": "the pooled output of every block, computed once per image with the "
                        "backbone frozen (eval mode), without augmentation",
            "classifiers": "Linear(C, 10) after blocks 0..7; exit 8 is the network's own head",
            "recipe": {"epochs": options.epochs, "batch": HEAD_BATCH, "lr": HEAD_LR,
                       "schedule": "cosine", "momentum": HEAD_MOMENTUM,
                       "weight_decay": HEAD_WEIGHT_DECAY, "seed": options.seed},
            "policy": "leave at the first exit whose max softmax probability >= threshold",
            "tolerance": TOLERANCE,
        },
        "train_images": len(data.y_train),
        "test_images": len(data.y_test),
        "float_accuracy": float_accuracy,
        "full_model_macs": full_macs,
        "exits": [{"exit": e, "after": f"body_op.{e}", "macs": int(costs[e]),
                   "accuracy": float(correct[e].mean()),
                   "train_accuracy": float((train_logits[e].argmax(-1) == data.y_train).mean()),
                   "wasteful": float(wasteful[e]), "destructive": float(destructive[e])}
                  for e in range(len(costs))],
        "final_errors": final_errors,
        "destructive_errors": int(round(destructive[-1] * len(data.y_test))),
        "curve": curve,
        "operating_point": point,
        "speed": speed,
        "speed_rounds": options.speed_rounds,
        "classifiers_file": shown(path),
        "classifiers_bytes": path.stat().st_size,
        "training_log": log,
    }
    wall = time.perf_counter() - start
    payload["wall_s"] = round(wall, 1)
    write_result(options.out_dir, "lab5_b", payload, options, wall, trains=True, script=SCRIPT)
    return read_result(options.out_dir, "lab5_b") or payload
