"""Fixed point for real: every model run in integers, against its float and fake-quant accuracy.

For the pretrained model and every Lab 3 model file in ``<models-dir>`` (default
``<out-dir>/models``: ``lab3_c_*``, ``lab3_d_*``, ``lab3_e*``, the ones whose weights sit
on an asymmetric grid of at most 8 bits), on the same test images:

* the float accuracy (for a Lab 3 file: its fake-quant accuracy, the stored levels in
  float32) and the figure the lab's own result file reports (``lab3_c.json`` ...);
* the integer model's accuracy (`models.int8_resnet`): the file's own activation ranges when
  it stores them (``compress --int8``), otherwise ranges calibrated on the first
  ``calibration_images`` training images by ``method`` (`compression.calibration`);
* how each layer's weights were coded (``grid<b>``: the trained levels used exactly through
  the two-sum form; ``s8``: per-channel symmetric int8) and how many predictions differ from
  the float model's.

And, for the report's time profile, each integer layer of the pretrained model with its
weight shape, output size and multiply-adds per image (the milliseconds come from
``bench_int8.json``, which `benchmarks/bench_int8.py` writes on a quiet machine).

Options are a frozen `Int8Options`; ``run(options)`` measures, writes ``<out-dir>/int8.json``
and returns the payload.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from minitorch_compress.compression import calibration
from minitorch_compress.data.cifar10 import Cifar10, load_cifar10
from minitorch_compress.errors import MinitorchError
from minitorch_compress.experiments.common import write_result
from minitorch_compress.experiments.int8_layout import RESULT, SCRIPT
from minitorch_compress.experiments.model_files import INFERENCE_FILES, lab_models
from minitorch_compress.models.int8_resnet import Int8ResNet20, predict_int8
from minitorch_compress.options import DataOptions
from minitorch_compress.paths import LOCAL_RESULTS_DIR, shown
from minitorch_compress.results import lookup, read_result
from minitorch_compress.training.evaluate import predict

PRETRAINED = "pretrained"


@dataclass(frozen=True)
class Int8Options(DataOptions):
    """Options of ``labs/lab3_int8.py``: those of `DataOptions` (``subset`` unused: the
    calibration images are `calibration_images`) and

    Attributes:
        out_dir: where ``int8.json`` is written and the Lab 3 result files are read.
        models_dir: where the Lab 3 model files are (None: ``<out_dir>/models``).
        calibration_images: the first N training images calibrate a file without stored
            activation ranges.
        method: the range method (`compression.calibration.METHODS`).
        only: only these models ("pretrained", "lab3_d_4bit", ...); None: every one found.
        resume: reuse ``<out_dir>/int8.json`` when it holds every model asked for, measured
            on the same test images with the same weights and calibration.
    """

    out_dir: Path = LOCAL_RESULTS_DIR
    models_dir: Path | None = None
    calibration_images: int = calibration.CALIBRATION_IMAGES
    method: str = calibration.DEFAULT_METHOD
    only: tuple[str, ...] | None = None
    resume: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "out_dir", Path(self.out_dir))
        if self.models_dir is not None:
            object.__setattr__(self, "models_dir", Path(self.models_dir))
        if self.subset is not None:
            raise MinitorchError("--subset: the int8 experiment reads only calibration "
                                 "images; give --calibration-images")
        if not isinstance(self.calibration_images, int) or self.calibration_images < 1:
            raise MinitorchError("calibration_images must be a whole number >= 1, got "
                                 f"{self.calibration_images!r}")
        if self.method not in calibration.METHODS:
            raise MinitorchError(f"unknown range method {self.method!r}; choose one of "
                                 f"{', '.join(calibration.METHODS)}")

    @property
    def model_folder(self) -> Path:
        """Where the Lab 3 model files are read."""
        return self.models_dir if self.models_dir is not None else self.out_dir / "models"


@dataclass(frozen=True)
class ModelEntry:
    """One model of the table: its name, its weights (None: the pretrained checkpoint) and
    where the lab's result file reports its accuracy (None: the pretrained model)."""

    name: str
    weights: Path | None
    result: str | None = None
    accuracy_path: tuple[str, ...] = ()


def lab3_files(folder: Path) -> list[ModelEntry]:
    """Every Lab 3 model file in `folder`, in report order: each model of
    `model_files.lab_models` that has a bit width, and its batch-norm-folded file where
    the models command writes one."""
    entries = []
    for spec in lab_models():
        if spec.bits is None:
            continue
        for name in (spec.name, f"{spec.name}_folded"):
            if name != spec.name and spec.name not in INFERENCE_FILES:
                continue
            path = folder / f"{name}.mtc"
            if path.is_file():
                entries.append(ModelEntry(name, path, spec.result, spec.accuracy_path))
    return entries


def models_to_run(options: Int8Options) -> list[ModelEntry]:
    """The pretrained model and every Lab 3 file found, or those `options.only` names.

    Raises:
        MinitorchError: a name in `only` that is not among them.
    """
    entries = [ModelEntry(PRETRAINED, None if options.weights is None
                          else Path(options.weights)),
               *lab3_files(options.model_folder)]
    if options.only is None:
        return entries
    known = {entry.name for entry in entries}
    unknown = [name for name in options.only if name not in known]
    if unknown:
        raise MinitorchError(f"--only {unknown[0]}: no such model here (known: "
                             f"{', '.join(sorted(known))})")
    return [entry for entry in entries if entry.name in options.only]


def weight_kinds(int_model: Int8ResNet20) -> dict[str, int]:
    """{"grid4": 20, "s8": 1, ...}: how many layers were coded each way."""
    counts: dict[str, int] = {}
    for kind in int_model.weight_kinds.values():
        counts[kind] = counts.get(kind, 0) + 1
    return dict(sorted(counts.items()))


def measure_model(entry: ModelEntry, data: Cifar10, options: Int8Options,
                  images: Callable[[], np.ndarray]) -> tuple[dict[str, Any], Int8ResNet20]:
    """One row of the table (float and int8 accuracy of one model on the test images) and
    the integer model."""
    start = time.perf_counter()
    int_model, model, note = calibration.int8_from_weights(entry.weights, images,
                                                           options.method)
    progress = not options.no_progress
    float_predictions = predict(model, data.x_test, data.y_test, progress=progress,
                                desc=f"{entry.name} float")
    int_predictions = predict_int8(int_model, data.x_test)
    table = (lookup(read_result(options.out_dir, entry.result), entry.accuracy_path)
             if entry.result is not None else None)
    body = {kind for name, kind in int_model.weight_kinds.items() if name != "head_conv"}
    row = {
        "file": None if entry.weights is None else shown(entry.weights),
        "float_accuracy": float((float_predictions == data.y_test).mean()),
        "int8_accuracy": float((int_predictions == data.y_test).mean()),
        "table_accuracy": table,
        "table_source": (None if entry.result is None
                         else f"{entry.result}.json: {' / '.join(entry.accuracy_path)}"),
        "predictions_differing": int((float_predictions != int_predictions).sum()),
        "weight_kinds": weight_kinds(int_model),
        "body_on_grid": all(kind.startswith("grid") for kind in body),
        "ranges": note,
        "ranges_from_file": note.startswith("activation ranges from the file"),
        "wall_s": round(time.perf_counter() - start, 1),
    }
    print(f"  {entry.name}: float {row['float_accuracy']:.4f}, int8 "
          f"{row['int8_accuracy']:.4f}" + (f" (table {table:.4f})" if table is not None else "")
          + f", weights {row['weight_kinds']}", flush=True)
    return row, int_model


def layer_profile(int_model: Int8ResNet20, image_size: int = 32) -> list[dict[str, Any]]:
    """Each integer layer in running order: "layer", "weights" (K, C, kh, kw), "stride",
    "output" (K, Ho, Wo) and "macs" (multiply-adds per image of its A sum)."""
    sizes = {"input": image_size}
    rows = []
    for name, (source, target) in calibration.layer_tensors(int_model).items():
        layer = dict(int_model.named_layers())[name]
        k, c, kh, kw = layer.weight.shape
        size = (sizes[source] + 2 * layer.padding - kh) // layer.stride + 1
        sizes[target] = size
        rows.append({"layer": name, "weights": [k, c, kh, kw], "stride": layer.stride,
                     "output": [k, size, size], "macs": k * c * kh * kw * size * size})
    return rows


def reusable(options: Int8Options, entries: list[ModelEntry]) -> dict[str, Any] | None:
    """With ``resume``, the finished ``int8.json`` if it measured every model of `entries` on
    the same test images, with the same weights and calibration; otherwise None."""
    previous = read_result(options.out_dir, RESULT) if options.resume else None
    if previous is None:
        return None
    same = (previous.get("_meta", {}).get("test_subset") == options.test_subset
            and previous.get("weights") == (None if options.weights is None
                                            else str(options.weights))
            and previous.get("calibration") == calibration.described(
                options.method, options.calibration_images))
    measured = {entry.name for entry in entries} <= set(previous.get("models", {}))
    return previous if same and measured else None


def run(options: Int8Options, data: Cifar10 | None = None) -> dict[str, Any]:
    """Measure every model of `models_to_run`, write ``<out_dir>/int8.json`` and return it
    (with ``resume``, the file already there when `reusable` accepts it)."""
    entries = models_to_run(options)
    if (previous := reusable(options, entries)) is not None:
        print(f"int8: reusing {options.out_dir / RESULT}.json (--resume)")
        return previous
    if data is None:
        data = load_cifar10(options.data_dir, subset=options.calibration_images,
                            test_subset=options.test_subset, download=options.download)
    calibration_set = data.x_train[:options.calibration_images]
    if len(calibration_set) < options.calibration_images:
        raise MinitorchError(f"--calibration-images {options.calibration_images}: only "
                             f"{len(calibration_set)} training images were loaded")
    start = time.perf_counter()
    models = {}
    print(f"int8: {len(entries)} models on {len(data.y_test):,} test images", flush=True)
    pretrained = None
    for entry in entries:
        models[entry.name], int_model = measure_model(entry, data, options,
                                                      lambda: calibration_set)
        if entry.name == PRETRAINED:
            pretrained = int_model
    if pretrained is None:  # --only left it out: built for the layer table alone
        pretrained, _, _ = calibration.int8_from_weights(
            options.weights, lambda: calibration_set, options.method)
    payload = {
        "models": models,
        "calibration": calibration.described(options.method, options.calibration_images),
        "test_images": len(data.y_test),
        "layers": layer_profile(pretrained),
        "weights": None if options.weights is None else str(options.weights),
    }
    wall = time.perf_counter() - start
    write_result(options.out_dir, RESULT, payload, options, wall, trains=False, script=SCRIPT)
    return payload
