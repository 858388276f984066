"""Every finetuned lab model as a compressed ``.mtc`` file, evaluated from the file.

For each lab run whose best checkpoint is on disk (``<run-root>/<run>/best.npz``), the model is
rebuilt exactly as the lab computed with it (its float weights, and the lab's quantizer where
it has one), written to ``<out-dir>/models/<name>.mtc``, read back, and evaluated from the file
on the test set; the result, with Deep Compression's stage sizes, goes to
``<out-dir>/compression.json``::

    {"models": {name: {"file", "accuracy", "table_accuracy", "bytes", "float32_bytes",
                       "ratio", "stages": {...}, "parts": {...}, "encodings": {...}}}}

``table_accuracy`` is the figure the lab's own result file reports for that model, so the
report can show that the file scores exactly what the table says.
The models of `INFERENCE_FILES` (Lab 3 (d)) are also written inference-only, batch norm
folded (``<name>_folded.mtc``), under ``"inference_file"``: the file the 20x target is about.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from minitorch_compress.compression.pipeline import compress_model, write_model_file
from minitorch_compress.compression.prune import prune_below
from minitorch_compress.compression.what_if import shrink_options
from minitorch_compress.data.cifar10 import Cifar10
from minitorch_compress.errors import CheckpointError, MinitorchError
from minitorch_compress.experiments.common import (
    FULL_TEST_SIZE,
    FULL_TRAIN_SIZE,
    load_data,
    write_result,
)
from minitorch_compress.experiments.lab4_layout import method_run
from minitorch_compress.experiments.lab5_layout import mixed_model_name
from minitorch_compress.io import mtc
from minitorch_compress.io.checkpoint import load_checkpoint
from minitorch_compress.models.pretrained import load_pretrained
from minitorch_compress.models.resnet import to_sparse
from minitorch_compress.options import DataOptions
from minitorch_compress.paths import LOCAL_RESULTS_DIR, RUNS_DIR, is_published_dir, shown
from minitorch_compress.results import lookup, read_result
from minitorch_compress.training.evaluate import predict


@dataclass(frozen=True)
class ModelFilesOptions(DataOptions):
    """Options of ``python -m minitorch_compress models``: those of `DataOptions` (only the
    test set is read; ``weights`` is the proxy model's start), and where the files are.

    Attributes:
        run_root: where the lab runs keep their best checkpoints.
        out_dir: the results folder: ``compression.json`` and ``models/*.mtc`` are written
            there, and the labs' result files are read from it.
        only: only these models (names such as "lab3_d_4bit"); None: every one.
    """

    run_root: Path = RUNS_DIR
    out_dir: Path = LOCAL_RESULTS_DIR
    only: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "run_root", Path(self.run_root))
        object.__setattr__(self, "out_dir", Path(self.out_dir))


@dataclass(frozen=True)
class LabModel:
    """One finetuned lab model: where its best checkpoint is and how the lab computed."""

    name: str  # e.g. "lab3_d_4bit": the .mtc file's name
    run: str  # its run folder under --run-root (or, for (d), one started --sparse-from
    #           Lab 2 (c)'s model file: the same name + "_from_lab2_c")
    result: str  # the lab's result file, e.g. "lab3_d"
    accuracy_path: tuple[str, ...]  # where its best accuracy is in that file
    bits: int | None = None  # the body's bit width (None: float)
    mode: str = "masked"  # the quantizer
    threshold: float | None = None  # |w| below it pruned before compressing (Lab 4 (c))
    bits_per_layer: Mapping[str, int] | None = None  # mixed precision (Lab 5 (a)): {layer: bits}


def lab_models(out_dir: Any = None) -> list[LabModel]:
    """Every finetuned model of Labs 2 and 3, in report order, then Lab 4 (b)'s and (e)'s
    channel-pruned models and (c)'s Lasso-then-threshold ones, for the strengths and budgets
    their result files in `out_dir` list ((b)'s and (e)'s runs save the smaller model itself,
    so they are rebuilt like the others; (c)'s models are their run's last weights with the
    one pruning step applied), then Lab 5 (a)'s mixed-precision models, for the targets
    lab5_a.json lists (each with the per-layer widths and quantizer recorded there)."""
    models = [LabModel(f"lab2_{p}", f"lab2_{p}", f"lab2_{p}", ("best_accuracy",))
              for p in "cde"]
    for b in ("4", "3", "2"):
        models.append(LabModel(f"lab3_c_{b}bit", f"lab3_c_{b}bit", "lab3_c",
                               ("best_accuracy", b), int(b), "asymmetric"))
    for b in ("4", "3", "2"):
        models.append(LabModel(f"lab3_d_{b}bit", f"lab3_d_{b}bit", "lab3_d", ("after", b),
                               int(b), "masked"))
    models.append(LabModel("lab3_e", "lab3_e", "lab3_e", ("best_accuracy",), 4, "masked"))
    for b in ("4", "3", "2"):
        models.append(LabModel(f"lab3_d_naive_{b}bit", f"lab3_d_{b}bit_naive", "lab3_d_naive",
                               ("after", b), int(b), "asymmetric"))
    models.append(LabModel("lab3_e_naive", "lab3_e_naive", "lab3_e_naive", ("best_accuracy",),
                           4, "asymmetric"))
    lab4_b = read_result(out_dir, "lab4_b") if out_dir is not None else None
    for strength, runs in (lab4_b or {}).get("strengths", {}).items():
        for name, key in ((f"lab4_b_{strength}", "group_lasso"),
                          (f"lab4_b_l1_{strength}", "l1_filter")):
            if runs.get(key) is None:  # the baseline, not run (--no-l1-baseline)
                continue
            models.append(LabModel(name, name, "lab4_b",
                                   ("strengths", strength, key, "best_accuracy")))
    lab4_e = read_result(out_dir, "lab4_e") if out_dir is not None else None
    for budget, methods in (lab4_e or {}).get("budgets", {}).items():
        for method, entry in methods.items():
            if method == "lasso_phase" or not isinstance(entry, dict):
                continue  # the phase is a step, not a finetuned model
            name = method_run(method, budget)
            models.append(LabModel(name, name, "lab4_e",
                                   ("budgets", budget, method, "best_accuracy")))
    lab4_c = read_result(out_dir, "lab4_c") if out_dir is not None else None
    for strength in (lab4_c or {}).get("strengths", {}):
        models.append(LabModel(f"lab4_c_{strength}", f"lab4_c_{strength}", "lab4_c",
                               ("strengths", strength, "accuracy"),
                               threshold=lab4_c["threshold"]))
    lab5_a = read_result(out_dir, "lab5_a") if out_dir is not None else None
    for target, entry in (lab5_a or {}).get("targets", {}).items():
        name = mixed_model_name(target)
        models.append(LabModel(name, name, "lab5_a", ("targets", target, "best_accuracy"),
                               mode=entry["mode"], bits_per_layer=entry["bits"]))
    return models


def compress_lab_model(spec: LabModel, options: ModelFilesOptions, data: Cifar10,
                       progress: bool) -> dict[str, Any] | None:
    """Write and evaluate one lab model's file; None when its checkpoint is not on disk."""
    checkpoint = best_checkpoint(spec, options.run_root)
    if checkpoint is None:
        return None
    model = load_pretrained(checkpoint)
    if spec.threshold is not None:
        prune_below(model, spec.threshold)
    model = compress_model(model, bits=spec.bits, mode=spec.mode,  # type: ignore[arg-type]
                           bits_per_layer=spec.bits_per_layer)
    path = options.out_dir / "models" / f"{spec.name}.mtc"
    sizes = write_model_file(model, path)
    return {**evaluate_file(spec, path, options, data, progress), **sizes}


def best_checkpoint(spec: LabModel, run_root: Path) -> Path | None:
    """The run's ``best.npz`` (or that of its ``_from_lab2_c`` twin), None if neither."""
    candidates = [run_root / run / "best.npz" for run in (spec.run, spec.run + "_from_lab2_c")]
    return next((c for c in candidates if c.is_file()), None)


def refuse_smoke_run(checkpoint: Path) -> None:
    """A run trained or tested on less than the full data never becomes a published model:
    raise (naming the run's sizes) unless its checkpoint says 50,000 training and 10,000 test
    images."""
    _, meta = load_checkpoint(checkpoint)
    data = meta.get("data") or {}
    full = {"train_images": FULL_TRAIN_SIZE, "test_images": FULL_TEST_SIZE}
    if any(data.get(key) != size for key, size in full.items()):
        raise MinitorchError(
            f"{shown(checkpoint)} is a smoke run ({data.get('train_images', '?')} training, "
            f"{data.get('test_images', '?')} test images), which never replaces a published "
            "model; write it elsewhere (leave --out-dir out for results/local/)")


#: The models that also get an inference-only file, ``<name>_folded.mtc``: each batch norm
#: stored as its eval-mode (scale, shift) (`mtc.save(fold_batch_norm=True)`, about 5 KB less,
#: bit-identical logits). The 20x target is about such a model; the full file keeps the batch
#: statistics, so it can be finetuned further or exported to PyTorch.
INFERENCE_FILES = ("lab3_d_4bit", "lab3_d_3bit", "lab3_d_2bit")


def inference_file(name: str, full: Any, path: Any, data: Cifar10,
                   full_predictions: Any) -> dict[str, Any]:
    """Write `full` (a model decoded from `path`) again with its batch norms folded, to
    ``<name>_folded.mtc`` beside `path`, and evaluate that file.

    Returns:
        {"file", "bytes", "ratio" (against the unfolded model's float32 size), "accuracy"
        (from the folded file), "predictions_differing" (from the full file's; 0 when the
        fold is exact, as it should be)}.
    """
    folded_path = path.with_name(f"{name}_folded.mtc")
    sizes = write_model_file(full, folded_path, fold_batch_norm=True)
    predicted = predict(mtc.load_model(folded_path), data.x_test, data.y_test, progress=False)
    out = {"file": shown(folded_path), "bytes": sizes["bytes"], "ratio": sizes["ratio"],
           "accuracy": float((predicted == data.y_test).mean()),
           "predictions_differing": int((predicted != full_predictions).sum())}
    print(f"  {name}_folded (inference only): {out['bytes']:,} bytes ({out['ratio']:.2f}x), "
          f"accuracy from the file {out['accuracy']:.4f}, "
          f"{out['predictions_differing']} predictions differing", flush=True)
    return out


def like_for_like(document: dict[str, Any] | None, predicted: Any,
                  labels: Any) -> dict[str, Any]:
    """What the file's accuracy can be compared with the lab table's on, when the lab tested
    on another number of images than this evaluation (a smoke run tests on the first 2,000
    or fewer; ``models --test-subset N`` evaluates on the first N).

    Returns:
        {} when both are on the same images. Otherwise {"table_test_images": n} and, when
        the table's images are among this evaluation's (n fewer), "accuracy_on_table_images":
        the file's accuracy on those first n images; with more, the two are not compared.
    """
    subset = ((document or {}).get("_meta") or {}).get("test_subset")
    table_images = min(subset, FULL_TEST_SIZE) if isinstance(subset, int) else FULL_TEST_SIZE
    if table_images == len(labels):
        return {}
    if table_images > len(labels):
        return {"table_test_images": table_images}
    return {"table_test_images": table_images, "accuracy_on_table_images": float(
        (predicted[:table_images] == labels[:table_images]).mean())}


def evaluate_file(spec: LabModel, path: Any, options: ModelFilesOptions, data: Cifar10,
                  progress: bool) -> dict[str, Any]:
    """Evaluate a lab model's file as it is: accuracy from the file on the dense path and on
    the direct sparse kernel, beside the figure the lab's own table reports."""
    from_file = mtc.load_model(path)  # the number reported is the file's, not memory's
    dense = predict(from_file, data.x_test, data.y_test, progress=progress, desc=spec.name)
    accuracy = float((dense == data.y_test).mean())
    # the same file on the direct sparse kernel (convs at or above their break-even)
    sparse_layers = to_sparse(from_file)
    sparse = predict(from_file, data.x_test, data.y_test, progress=progress,
                     desc=f"{spec.name} sparse")
    what_if = shrink_options(path, lambda model: predict(model, data.x_test, data.y_test,
                                                         progress=False), data.y_test, dense)
    document = read_result(options.out_dir, spec.result)
    table = lookup(document, spec.accuracy_path)
    compared = like_for_like(document, dense, data.y_test) if table is not None else {}
    print(f"  {spec.name}: {path.stat().st_size:,} bytes, accuracy from the file "
          f"{accuracy:.4f}" + (f" (table: {table:.4f})" if table is not None else ""),
          flush=True)
    inference = (inference_file(spec.name, mtc.load_model(path), path, data, dense)
                 if spec.name in INFERENCE_FILES else None)
    return {"file": shown(path), "accuracy": accuracy, "table_accuracy": table, **compared,
            **({"inference_file": inference} if inference else {}),
            "bits": spec.bits, "quantizer": spec.mode if spec.bits or spec.bits_per_layer
            else None,
            "what_if": what_if,
            "sparse_path": {"convs": len(sparse_layers),
                            "accuracy": float((sparse == data.y_test).mean()),
                            "predictions_differing": int((sparse != dense).sum())}}


#: The stand-in for Lab 3 (d)'s 4-bit model while its finetune has not run: the same
#: pruning and quantizer on the pretrained weights, not finetuned. Its file size is what the
#: 20x target is about (the sparsity pattern and code counts are alike); its accuracy is not.
PROXY = {"about": "the pretrained model pruned 80 % per layer, mask-aware 4 bits, not "
                  "finetuned",
         "command": "python -m minitorch_compress compress --prune 0.8 --bits 4 --out "
                    "results/local/proxy.mtc"}


def proxy_model(options: ModelFilesOptions, data: Cifar10) -> dict[str, Any] | None:
    """The `PROXY` model's file sizes and accuracy from its file (written to a temporary
    folder: it is made from the pretrained weights, so it is not committed); None when the
    pretrained checkpoint is not found."""
    try:
        model = load_pretrained(options.weights)
    except CheckpointError:
        return None
    compress_model(model, prune=0.8, bits=4, mode="masked")
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "proxy.mtc"
        sizes = write_model_file(model, path)
        predicted = predict(mtc.load_model(path), data.x_test, data.y_test,
                            progress=not options.no_progress, desc="proxy")
        what_if = shrink_options(path, lambda m: predict(m, data.x_test, data.y_test,
                                                         progress=False), data.y_test, predicted)
    accuracy = float((predicted == data.y_test).mean())
    print(f"  proxy: {sizes['bytes']:,} bytes ({sizes['ratio']:.2f}x), accuracy from the file "
          f"{accuracy:.4f}", flush=True)
    return {**PROXY, "accuracy": accuracy, **sizes, "what_if": what_if}


def check_something_to_do(options: ModelFilesOptions) -> None:
    """Raise, saying where it looked and what to pass, when no model to write (those
    ``options.only`` names, or all) has a run checkpoint under ``options.run_root`` or a file
    in ``<out-dir>/models`` (a quick reproduce's runs are in ``runs/quick``, not the default
    ``runs/``), or when ``--only`` names a model that does not exist."""
    every = lab_models(options.out_dir)
    specs = [spec for spec in every if not options.only or spec.name in options.only]
    unknown = sorted(set(options.only or ()) - {spec.name for spec in every})
    if unknown:
        raise MinitorchError(f"--only {' '.join(unknown)}: no lab model has that name; the "
                             f"names are those of {shown(options.out_dir / 'models')}/*.mtc, "
                             "e.g. lab2_c, lab3_d_4bit, lab3_e_naive")
    if any(best_checkpoint(spec, options.run_root) is not None
           or (options.out_dir / "models" / f"{spec.name}.mtc").is_file() for spec in specs):
        return
    quick = RUNS_DIR / "quick"
    hint = ("; a quick reproduce's smoke runs are in runs/quick: pass --run-root runs/quick "
            "--out-dir results/quick (and --test-subset N for a quicker check)"
            if options.run_root.resolve() != quick.resolve() and any(quick.glob("*/best.npz"))
            else "; run a lab's finetuning part first, or pass --run-root where its runs are")
    raise MinitorchError(
        f"no lab model to write: none of the {len(specs)} lab runs has a best.npz under "
        f"{shown(options.run_root)}{'' if options.run_root.is_dir() else ' (no such folder)'} "
        f"(e.g. {shown(options.run_root / specs[0].run / 'best.npz')})"
        f" and {shown(options.out_dir / 'models')} holds none of their files{hint}")


def run(options: ModelFilesOptions, data: Cifar10 | None = None) -> dict[str, Any]:
    """Every lab model on disk as an .mtc file; writes and returns compression.json's
    payload (models whose checkpoint is missing are listed under "missing").

    A model whose run is gone but whose file was made earlier (e.g. committed, or written by
    the lab when it finished) is decoded, written again by the current writer (same weights,
    so a format improvement reaches every committed file) and evaluated from that file, so a
    kernel or format change is checked against every committed model. ``options.only`` (names)
    limits the work to those models; the others keep their entries.
    """
    data = data if data is not None else load_data(options, train=False)
    models, missing = {}, []
    previous = read_result(options.out_dir, "compression") or {}
    only = set(options.only or ())
    specs = [spec for spec in lab_models(options.out_dir) if not only or spec.name in only]
    check_something_to_do(options)  # before any file is written
    if is_published_dir(options.out_dir):  # before any file is written
        for spec in specs:
            if (checkpoint := best_checkpoint(spec, options.run_root)) is not None:
                refuse_smoke_run(checkpoint)
    for spec in lab_models(options.out_dir):
        earlier = previous.get("models", {}).get(spec.name)
        if only and spec.name not in only:
            if earlier is not None:
                models[spec.name] = earlier
            else:
                missing.append(spec.name)
            continue
        result = compress_lab_model(spec, options, data, progress=not options.no_progress)
        path = options.out_dir / "models" / f"{spec.name}.mtc"
        if result is None and path.is_file():
            # the run is gone, its file is not: written again by today's writer (the
            # decoded weights are the ones it holds, so only the encoding can change)
            sizes = write_model_file(mtc.load_model(path), path)
            result = {**(earlier or {}), **sizes,
                      **evaluate_file(spec, path, options, data, progress=not options.no_progress)}
        if result is not None:
            models[spec.name] = result
        else:
            missing.append(spec.name)
    proxy = proxy_model(options, data) if not only else previous.get("proxy")
    payload = {"models": models, "missing": missing, "test_images": len(data.y_test),
               **({"proxy": proxy} if proxy else {})}
    write_result(options.out_dir, "compression", payload, options, trains=False,
                 script="-m minitorch_compress models")
    return json.loads((options.out_dir / "compression.json").read_text())
