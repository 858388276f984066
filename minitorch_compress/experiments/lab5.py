"""Lab 5: the course's last claims. (b) early exit (claim 1.8), (c) every claim in one table.

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
* (a) Mixed precision (claim 1.10) is not implemented yet (issue #38).

Options are a frozen `Lab5Options`; ``part_b(options)`` runs (b), writes its JSON and returns
the payload.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from minitorch_compress import ops
from minitorch_compress.autograd.engine import no_grad
from minitorch_compress.autograd.tensor import Tensor
from minitorch_compress.data.cifar10 import Cifar10, load_cifar10
from minitorch_compress.data.transforms import normalize
from minitorch_compress.errors import MinitorchError
from minitorch_compress.experiments.common import is_smoke, refuse_smoke_over_full, write_result
from minitorch_compress.experiments.lab5_layout import PARTS, SCRIPT
from minitorch_compress.io.checkpoint import load_checkpoint, save_checkpoint
from minitorch_compress.models import early_exit as ee
from minitorch_compress.models.pretrained import load_pretrained
from minitorch_compress.models.resnet import ResNet20
from minitorch_compress.optim.sgd import SGD
from minitorch_compress.options import LabOptions
from minitorch_compress.paths import shown
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


@dataclass(frozen=True)
class Lab5Options(LabOptions):
    """Lab 5's options: `options.LabOptions` (epochs: of the internal classifiers; seed:
    their initialisation and batch order; run_root: where (b) caches the pooled block
    features, ``<run_root>/lab5_b/``; resume: reuse those features when they were made from
    the same images and weights; overwrite: recompute them, as a run without resume does)
    and

    Attributes:
        speed_rounds: alternating timing rounds of the full and early-exit models (0: speed
            not measured).
    """

    PARTS = PARTS

    speed_rounds: int = 0

    def __post_init__(self) -> None:
        super().__post_init__()
        if not isinstance(self.speed_rounds, int) or self.speed_rounds < 0:
            raise MinitorchError("speed_rounds must be a whole number >= 0, got "
                                 f"{self.speed_rounds!r}")


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
