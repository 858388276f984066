"""Lab 3: fixed-point weight quantization with a straight-through estimator (SPEC "Lab 3").

Each part is a function ``part_x(options, data=None) -> payload`` of `Lab3Options` (a frozen
dataclass: ``part_b(Lab3Options(test_subset=500))`` runs from a Python prompt, loading
CIFAR-10 itself when no `data` is passed) returning the JSON payload that `run_part` writes
to ``<out-dir>/lab3_<part>[_symmetric|_naive].json`` (with `_meta`
provenance). "The body" is every Conv2d under ``body_op.`` (the 9 residual blocks, the two 1x1
shortcut convs included: 20 layers); the head conv and the final FC stay float.

* (b) ``{"accuracy": {"float", "6", "5", "4", "3", "2"}}``: the pretrained model with its body
  quantized to b bits, test accuracy only (no training); the float row is Lab 2 (a)'s
  (``float_from``) when ``lab2_a.json`` in the same folder measured it on the same images.
* (c) ``{"best_accuracy": {"4", "3", "2"}, "history": {"4": [per-epoch test accuracy], ...}}``:
  quantization-aware finetuning (QAT) with the course recipe. The forward uses the STE
  quantizer, so every test accuracy is that of the quantized weights.
* (d) ``{"before": {...}, "after": {...}, "sparsity": {...}}``: start from Lab 2 (c)'s best
  80 %-sparse model (``<run-root>/lab2_c/best.npz``), quantize with the mask-aware quantizer
  (mode "masked": scale over the non-zero weights, zeros stay 0) and finetune with the 80 %
  mask fixed (`MaskHook`); before = no finetuning, after = best epoch.
  ``--naive-quantizer`` runs the same part with the plain "asymmetric" quantizer (it
  scales over the zeros and moves them to a non-zero level, so the network no longer computes
  sparsely while the float weights keep their mask): what the published (d) did, measured
  before and after the same finetuning, into ``lab3_d_naive.json``.
* (e) ``{"best_accuracy", "final_accuracy", "sparsity": {layer: fraction}, "total_sparsity"}``:
  from the pretrained model, global iterative pruning to 80 % (Lab 2 (e)'s schedule) with 4-bit
  masked QAT throughout; only epochs with the final mask in force can be the best one.
  ``--naive-quantizer``: the same with the plain asymmetric quantizer (``lab3_e_naive.json``).

``--symmetric`` swaps in the symmetric quantizer (levels k s around an exact 0) for every part
and writes ``*_symmetric.json``. `minitorch_compress.reports.lab3` renders ``lab3.md`` and
the figures in ``<out-dir>/lab3/`` from whichever ``lab3_*.json`` files exist.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from minitorch_compress.compression import (
    IterativePruningHook,
    MaskHook,
    Masks,
    QuantMode,
    apply_masks,
    mask_from_weights,
    prune_model_by_percentage,
    quantized_state,
    set_weight_quantization,
    sparsity_of_masks,
    sparsity_report,
    weight_layers,
    zeros_destroyed,
)
from minitorch_compress.data.cifar10 import Cifar10
from minitorch_compress.errors import CheckpointError, MinitorchError
from minitorch_compress.experiments import lab2
from minitorch_compress.experiments.common import (
    accuracy_on_test_set,
    finetune,
    is_smoke,
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
from minitorch_compress.experiments.lab3_layout import (
    BITS_B,
    BITS_QAT,
    PARTS,
    SCRIPT,
)
from minitorch_compress.io.checkpoint import load_checkpoint
from minitorch_compress.models.pretrained import load_pretrained
from minitorch_compress.models.resnet import ResNet20
from minitorch_compress.options import LabOptions, refuse_repeats
from minitorch_compress.paths import shown
from minitorch_compress.results import read_result

BITS_E = 4
NAIVE_PARTS = ("d", "e")  # the parts --naive-quantizer applies to
TARGET = lab2.TARGET  # 80 % sparsity in (d) and (e)
QUANTIZED_LAYERS = "body"  # set_weight_quantization's selection: body_op.*, shortcuts included

TITLES = {
    "b": "(b) body quantized to b bits, no finetuning",
    "c": "(c) quantization-aware finetuning (QAT)",
    "d": "(d) {start} + QAT with the mask fixed",  # the start: `sparse_start_name`
    "d_naive": "(d) the sparse model under the plain asymmetric quantizer, + QAT",
    "e": "(e) global iterative pruning to 80 % + 4-bit QAT",
    "e_naive": "(e) global iterative pruning to 80 % + 4-bit QAT, plain asymmetric quantizer",
}


# ------------------------------------------------------------------------------ options
@dataclass(frozen=True)
class Lab3Options(LabOptions):
    """Lab 3's options: those of every lab (`LabOptions`) and its own knobs.

    Attributes:
        symmetric: the symmetric quantizer (levels k s around an exact 0) in every part;
            results go to ``lab3_<part>_symmetric.json``.
        naive_quantizer: parts (d) and (e) with the plain asymmetric quantizer instead of
            the mask-aware one (``lab3_<part>_naive.json``).
        sparse_from_pretrained: part (d) starts from the pretrained model pruned to 80 %
            per layer without finetuning (quick runs and tests).
        sparse_from: part (d) starts from this 80 %-sparse model file (.mtc or .npz)
            instead of ``<run_root>/lab2_c/best.npz``.
        bits: the widths parts (c)/(d) finetune, of "4" "3" "2" (None: all three).

    Raises:
        MinitorchError: (when built) two knobs that contradict each other, or a width
            outside 4 3 2. Knobs that do not fit `part` are refused by `check_parts`.
    """

    PARTS = PARTS

    symmetric: bool = False
    naive_quantizer: bool = False
    sparse_from_pretrained: bool = False
    sparse_from: Path | None = None
    bits: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.sparse_from is not None:
            object.__setattr__(self, "sparse_from", Path(self.sparse_from))
        if self.bits is not None:
            object.__setattr__(self, "bits", tuple(str(b) for b in self.bits))
            if not self.bits or set(self.bits) - set(BITS_QAT):
                raise MinitorchError(f"--bits takes some of {' '.join(BITS_QAT)}, got "
                                     f"{' '.join(self.bits) or 'none'}")
            refuse_repeats("--bits", self.bits)
        if self.naive_quantizer and self.symmetric:
            raise MinitorchError("--naive-quantizer is the plain asymmetric quantizer; drop "
                                 "--symmetric")
        if self.sparse_from is not None and self.sparse_from_pretrained:
            raise MinitorchError("--sparse-from and --sparse-from-pretrained name two "
                                 "different starts; pick one")


def check_parts(options: Lab3Options) -> None:
    """Refuse knobs that do not apply to ``options.part`` (`run` would ignore them).

    Raises:
        MinitorchError: naming the knob and the parts it applies to.
    """
    part = options.part
    if options.naive_quantizer and part not in NAIVE_PARTS:
        raise MinitorchError(f"--naive-quantizer applies to parts d and e only (got --part "
                             f"{part})")
    if options.sparse_from_pretrained and part not in ("d", "all"):
        raise MinitorchError(f"--sparse-from-pretrained applies to part d only (got --part "
                             f"{part})")
    if options.sparse_from is not None and part not in ("d", "all"):
        raise MinitorchError(f"--sparse-from applies to part d only (got --part {part})")
    if options.bits is not None and part not in ("c", "d"):
        raise MinitorchError(f"--bits applies to parts c and d only (got --part {part})")


def quantizer_mode(part: str, options: Lab3Options) -> QuantMode:
    """The quantizer a part uses: asymmetric for (b)/(c), masked for the sparse (d)/(e);
    symmetric everywhere with --symmetric; plain asymmetric with --naive-quantizer."""
    if options.naive_quantizer:
        return "asymmetric"
    if options.symmetric:
        return "symmetric"
    return "masked" if part in ("d", "e") else "asymmetric"


def result_name(part: str, options: Lab3Options) -> str:
    """``lab3_<part>``, ``lab3_<part>_symmetric`` or ``lab3_<part>_naive`` (no ``.json``)."""
    if options.naive_quantizer:
        return f"lab3_{part}_naive"
    return f"lab3_{part}" + ("_symmetric" if options.symmetric else "")


def run_name(part: str, options: Lab3Options, bits: str | None = None) -> str:
    """Folder of one finetuning run under --run-root, e.g. ``lab3_c_4bit``.

    Runs that start from a different model or use another quantizer get their own folder, so
    --resume can never continue a run made with other settings.
    """
    name = f"lab3_{part}" + (f"_{bits}bit" if bits is not None else "")
    if options.symmetric:
        name += "_symmetric"
    if options.naive_quantizer:
        name += "_naive"
    if part == "d" and options.sparse_from_pretrained:
        name += "_from_pretrained"
    if part == "d" and options.sparse_from is not None:
        name += "_from_" + Path(options.sparse_from).stem
    return name


def model_name(part: str, options: Lab3Options, bits: str | None = None) -> str:
    """The model file's name, as `experiments.model_files` names it: ``lab3_d_4bit``,
    ``lab3_d_naive_4bit``, ``lab3_e``, ``lab3_e_naive``, ``lab3_c_4bit_symmetric``."""
    name = f"lab3_{part}" + ("_naive" if options.naive_quantizer else "")
    name += f"_{bits}bit" if bits is not None else ""
    return name + ("_symmetric" if options.symmetric else "")


def selected_bit_widths(options: Lab3Options) -> tuple[str, ...]:
    """The widths parts (c)/(d) finetune in this run: --bits, in 4-3-2 order, or all three."""
    chosen = options.bits or BITS_QAT
    return tuple(bits for bits in BITS_QAT if bits in chosen)


def run_names(part: str, options: Lab3Options) -> list[str]:
    """The run folders a part trains in (none for (b))."""
    if part in ("c", "d"):
        return [run_name(part, options, bits) for bits in selected_bit_widths(options)]
    return [run_name(part, options)] if part == "e" else []


def lab2_checkpoint(options: Lab3Options) -> Path:
    """Where part (d) finds Lab 2 (c)'s best model: ``<run-root>/lab2_c/best.npz``."""
    return options.run_root / lab2.run_name("c") / "best.npz"


def check_sparse_start(options: Lab3Options) -> None:
    """Fail early, in one line, when part (d) has no model to start from.

    Raises:
        CheckpointError: the --sparse-from file is missing (or a folder), has folded batch
            norm or is not 80 % sparse, or Lab 2 (c)'s checkpoint is missing and neither
            --sparse-from nor --sparse-from-pretrained is given.
    """
    if options.sparse_from is not None:
        if options.sparse_from.is_dir():
            raise CheckpointError(
                f"--sparse-from {options.sparse_from} is a folder; pass a model file: the "
                f"committed results/models/lab2_c.mtc or Lab 2 (c)'s {lab2_checkpoint(options)}")
        if not options.sparse_from.is_file():  # /dev/zero, a FIFO: there but not a file
            missing = "no such file" if not options.sparse_from.exists() else "not a file"
            raise CheckpointError(f"--sparse-from {options.sparse_from}: {missing}")
        model = load_pretrained(options.sparse_from)
        if getattr(model, "batch_norm_folded", False):
            raise CheckpointError(
                f"--sparse-from {options.sparse_from} has folded batch norm (inference only: "
                "its batch statistics are gone); start from the unfolded file")
        sparsity = sparsity_of_masks(mask_from_weights(model))
        if sparsity < TARGET - 0.005:
            raise CheckpointError(
                f"--sparse-from {options.sparse_from} is {sparsity:.1%} sparse; part (d) "
                f"starts from a {TARGET:.0%}-sparse model such as results/models/lab2_c.mtc")
        return
    path = lab2_checkpoint(options)
    if not options.sparse_from_pretrained and not path.is_file():
        raise CheckpointError(
            f"Lab 3 (d) starts from Lab 2 (c)'s best 80 %-sparse model and {path} does not "
            "exist: run `python labs/lab2_pruning.py --part c` first (with the same "
            "--run-root), or start from its committed model file with --sparse-from "
            "results/models/lab2_c.mtc, or pass --sparse-from-pretrained for a quick run "
            "from the pretrained model pruned to 80 % without finetuning")


# ------------------------------------------------------------------------------ helpers
def quantized_model(state: dict[str, np.ndarray], bits: int, mode: QuantMode) -> ResNet20:
    """A ResNet-20 holding `state` (float weights) whose body computes with `bits`-bit weights.

    Args:
        state: a ResNet-20 state_dict (e.g. the sparse start of part (d)).
        bits: bit width of the body's weights.
        mode: "asymmetric", "masked" or "symmetric".

    Returns:
        The model in eval mode; the float weights stay its parameters (STE).
    """
    model = ResNet20(rng=np.random.default_rng(0))  # every parameter is overwritten below
    model.load_state_dict(state)
    set_weight_quantization(model, bits, QUANTIZED_LAYERS, mode)
    return model.eval()


def nonzero_levels(model: ResNet20) -> dict[str, int]:
    """Distinct non-zero values each quantized layer computes with.

    Returns:
        {layer name: count}; at most 2^b for the asymmetric and masked quantizers, 2^b - 1
        for the symmetric one.
    """
    return {name: int(np.unique(w[w != 0]).size) for name, w in quantized_state(model).items()}


def _quantized_layer_zeros(model: ResNet20) -> int:
    """Exact zeros among the float weights of the quantized layers."""
    return sum(int(layer.weight.size - np.count_nonzero(layer.weight.data))
               for layer in weight_layers(model).values() if layer.weight_transform is not None)


# ------------------------------------------------------------------------------ the parts
def part_b(options: Lab3Options, data: Cifar10 | None = None) -> dict[str, Any]:
    """(b) Test accuracy with the body quantized to 6..2 bits (head conv and FC float).

    Returns:
        {"accuracy": {"float": float, "6": float, ..., "2": float}, "mode",
        "quantized_layers" (the 20 names), "max_nonzero_levels": {bits: int},
        "test_images", "float_from" ("lab2_a.json" when the float row is Lab 2 (a)'s
        evaluation, `lab2_float_accuracy`, else None)}.
    """
    data = lab_data(options, data, trains=False)
    mode = quantizer_mode("b", options)
    model = pretrained(options)
    measured = lab2_float_accuracy(options, len(data.y_test))
    accuracy = {"float": measured if measured is not None
                else accuracy_on_test_set(model, data, options, "(b) float")}
    print(f"  (b) float: {accuracy['float']:.4f}"
          + (" (Lab 2 (a)'s, lab2_a.json)" if measured is not None else ""), flush=True)
    levels: dict[str, int] = {}
    layers: list[str] = []
    for bits in BITS_B:
        # the float weights are never changed: each width quantizes the same pretrained model
        layers = set_weight_quantization(model, int(bits), QUANTIZED_LAYERS, mode)
        accuracy[bits] = accuracy_on_test_set(model, data, options, f"(b) {bits} bits")
        levels[bits] = max(nonzero_levels(model).values())
        print(f"  (b) {bits} bits ({mode}): {accuracy[bits]:.4f}", flush=True)
    return {"accuracy": accuracy, "mode": mode, "quantized_layers": layers,
            "max_nonzero_levels": levels, "test_images": len(data.y_test),
            "float_from": None if measured is None else "lab2_a.json"}


def lab2_float_accuracy(options: Lab3Options, test_images: int) -> float | None:
    """The pretrained float model's test accuracy as Lab 2 (a) measured it into
    ``<out-dir>/lab2_a.json``, if it measured the same model (the same --weights) on the same
    test images: (b)'s float row is that very evaluation, so it is not run twice. None when
    there is no such result (then (b) evaluates the float model itself)."""
    result = read_result(options.out_dir, "lab2_a")
    if result is None or not isinstance(result.get("accuracy"), float):
        return None
    same = (result.get("weights") == weights_id(options)
            and result.get("test_images") == test_images
            and result.get("_meta", {}).get("test_subset") == options.test_subset)
    return result["accuracy"] if same else None


def part_c(options: Lab3Options, data: Cifar10 | None = None) -> dict[str, Any]:
    """(c) QAT finetuning of the pretrained model with its body at 4, 3 and 2 bits.

    Returns:
        {"best_accuracy": {bits: float}, "history": {bits: [test accuracy per epoch]},
        "final_accuracy", "best_epoch", "max_nonzero_levels", "wall_s" (each {bits: ...}),
        "wall_s_total", "mode", "epochs", "train_images", "test_images"}.
    """
    data = lab_data(options, data, trains=True)
    mode = quantizer_mode("c", options)

    def one_width(bits: str) -> dict[str, Any]:
        model = pretrained(options)
        set_weight_quantization(model, int(bits), QUANTIZED_LAYERS, mode)
        result = finetune(model, data, options, run_name("c", options, bits), script=SCRIPT)
        print(f"  (c) {bits} bits ({mode}): best {result['best_accuracy']:.4f}", flush=True)
        return {**{key: result[key] for key in (
                    "best_accuracy", "history", "final_accuracy", "best_epoch", "wall_s")},
                "model_file": save_model_file(model, options, model_name("c", options, bits)),
                "max_nonzero_levels": max(nonzero_levels(model).values())}

    context = {"mode": mode, "epochs": options.epochs, "train_images": len(data.y_train),
               "test_images": len(data.y_test), **run_settings(options)}
    out = each_bit_width(options, "c", PER_BIT_KEYS["c"], context, one_width)
    return {**out, "wall_s_total": round(sum(out["wall_s"].values()), 1), **context}


# Settings a partial file may lack (written before they were recorded): their defaults then.
DEFAULTS = {"weights": None, "seed": 0}

# Part (c) and (d) results hold one entry per bit width under each of these keys.
PER_BIT_KEYS = {
    "c": ("best_accuracy", "history", "final_accuracy", "best_epoch", "max_nonzero_levels",
          "wall_s", "model_file"),
    "d": ("before", "after", "sparsity", "quantized_sparsity", "max_nonzero_levels", "history",
          "final_accuracy", "best_epoch", "wall_s", "model_file"),
    "d_naive": ("masked_before", "zeros_destroyed"),
}


def each_bit_width(options: Lab3Options, part: str, keys: tuple[str, ...],
                   context: dict[str, Any],
                   one_width: Callable[[str], dict[str, Any]]) -> dict[str, Any]:
    """Run `one_width(bits)` for 4, 3 and 2 bits (or those --bits selects), recording each
    width as it finishes.

    A part of three hour-long finetunes must not lose a finished one: after each width that
    leaves the part incomplete, ``<out-dir>/<result>.json`` is written with the widths so far,
    ``"partial": true`` and ``"bits_finished"`` (the report shows them as such). With
    --resume, the widths such a file records are taken from it instead of being run again,
    provided it was made with the same settings (`context`, epochs and image counts), so a run
    interrupted on one machine continues on another from the committed file alone. Widths
    neither recorded nor selected by --bits are left out.

    Returns:
        {key: {bits: value}} for each key of `keys`, plus ``"partial": True`` and
        ``"bits_finished"`` when some width is still missing.
    """
    name = result_name(part, options)
    done = finished_bit_widths(options, name, keys, context)
    selected = selected_bit_widths(options)
    out: dict[str, Any] = {key: {} for key in keys}
    for bits in BITS_QAT:
        if bits in done:
            print(f"  ({part}) {bits} bits: reusing the finished width recorded in "
                  f"{shown(options.out_dir / name)}.json (--resume)", flush=True)
        elif bits not in selected:
            continue
        values = done.get(bits) or {**one_width(bits), "run": width_provenance(options)}
        for key in (*keys, "run"):
            if key in values:  # "run" is missing from files written before it was kept
                out.setdefault(key, {})[bits] = values[key]
        finished = [b for b in BITS_QAT if b in out[keys[0]]]
        if len(finished) < len(BITS_QAT):
            write_result(options.out_dir, name, {**out, **context, "partial": True,
                                              "bits_finished": finished},
                         options, sum(out["wall_s"].values()), script=SCRIPT)
    finished = [b for b in BITS_QAT if b in out[keys[0]]]
    if len(finished) < len(BITS_QAT):
        out.update(partial=True, bits_finished=finished)
    return out


def run_settings(options: Lab3Options) -> dict[str, Any]:
    """What else a finished width depends on: the starting weights and the seed."""
    return {"weights": weights_id(options), "seed": options.seed}


def finished_bit_widths(options: Lab3Options, name: str, keys: tuple[str, ...],
                        context: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The widths a partial result file made with these settings already holds (--resume).

    Returns:
        {bits: {key: value}}; empty without --resume, without a partial file, or when the
        file was made with other settings (then the widths are run again).
    """
    previous = read_result(options.out_dir, name) if options.resume else None
    if previous is None or not previous.get("partial"):
        return {}
    meta = previous.get("_meta", {})
    same = (meta.get("smoke") == is_smoke(options, True) and meta.get("epochs") == options.epochs
            and meta.get("train_subset") == options.subset
            and meta.get("test_subset") == options.test_subset
            and all(previous.get(key, DEFAULTS.get(key)) == value
                    for key, value in context.items()))
    if not same:
        print(f"  note: {shown(options.out_dir / name)}.json was made with other settings; its "
              "finished widths are run again", flush=True)
        return {}
    return {b: {key: previous[key][b] for key in (*keys, "run")
                if key != "run" or b in previous.get("run", {})}
            for b in previous["bits_finished"]}


def width_provenance(options: Lab3Options) -> dict[str, Any]:
    """Who made one bit width: its command and commit (under ``"run"``, by width), since the
    widths of one result may come from separate commands (--bits, --resume); the result's
    `_meta` names only the last."""
    meta = provenance(options, script=SCRIPT)
    return {"command": meta["command"], "commit": meta["commit"], "date": meta["date"]}


def sparse_start(options: Lab3Options, data: Cifar10
                 ) -> tuple[dict[str, np.ndarray], Masks, dict[str, Any]]:
    """The 80 %-sparse float model part (d) starts from.

    Lab 2 (c)'s best checkpoint; with --sparse-from a model file of it (e.g. the committed
    ``results/models/lab2_c.mtc``, whose float32 weights and batch-norm statistics are the
    checkpoint's bit for bit), masked by its zeros; with --sparse-from-pretrained the
    pretrained model pruned to 80 % per layer (no finetuning).

    Returns:
        (state, masks, info): the state_dict, {layer name: float32 0/1 mask of the weight's
        shape}, and {"source", "float_accuracy" (the unquantized sparse model on this test
        set), "sparsity" (of the masks)} for the result file.
    """
    check_sparse_start(options)
    if options.sparse_from_pretrained:
        model = pretrained(options)
        masks = prune_model_by_percentage(model, TARGET)
        source = ("pretrained model pruned to 80 % per layer, NOT finetuned "
                  "(--sparse-from-pretrained)")
    elif options.sparse_from is not None:
        model = load_pretrained(options.sparse_from)
        masks = mask_from_weights(model)  # a trained weight is never exactly 0.0
        source = f"{shown(options.sparse_from)} (--sparse-from: masked by its zeros)"
    else:
        model, masks = lab2.load_sparse_best(options.run_root, part="c")
        apply_masks(model, masks)  # a no-op for a masked run's checkpoint, a guarantee here
        _, meta = load_checkpoint(lab2_checkpoint(options))
        source = lab2_source(lab2_checkpoint(options), meta)
    accuracy = accuracy_on_test_set(model, data, options, "(d) sparse float")
    info = {"source": source, "float_accuracy": accuracy, "sparsity": sparsity_of_masks(masks)}
    print(f"  (d) start: {source}; float accuracy {accuracy:.4f}, sparsity "
          f"{info['sparsity']:.4f}", flush=True)
    return model.state_dict(), masks, info


def sparse_start_name(options: Lab3Options) -> str:
    """(d)'s start as the console heading names it: Lab 2 (c)'s model unless --sparse-from
    or --sparse-from-pretrained chose another."""
    if options.sparse_from_pretrained:
        return "the pretrained model pruned to 80 %"
    if options.sparse_from is not None:
        return f"the sparse model {shown(options.sparse_from)}"
    return "Lab 2 (c)'s 80 %-sparse model"


def lab2_source(path: Path, meta: dict[str, Any]) -> str:
    """How (d)'s start is described on its page: Lab 2 (c)'s checkpoint `path`, its best
    epoch and accuracy (from its metadata `meta`), the accuracy to 4 decimals (a smoke run's
    0.09333333333333334 was quoted raw)."""
    best = meta.get("accuracy")
    shown_best = f"{best:.4f}" if isinstance(best, float) else str(best)
    return (f"{shown(path)} (Lab 2 (c) best epoch {meta.get('epoch')}, test accuracy "
            f"{shown_best})")


def part_d(options: Lab3Options, data: Cifar10 | None = None) -> dict[str, Any]:
    """(d) The 80 %-sparse model quantized to 4/3/2 bits, before and after masked QAT.

    The mask-aware quantizer keeps the pruned zeros at 0 and the `MaskHook` keeps the float
    weights (and their momentum) at 0 after every step, so the result is both sparse and
    quantized. With --naive-quantizer the plain asymmetric quantizer is used instead (the
    mask still holds the float weights at 0, but the weights computed with are no longer
    sparse), and the result also records what the mask-aware quantizer scores before
    finetuning and how many zeros the plain one moves off 0.

    Returns:
        {"before": {bits: float}, "after": {bits: best accuracy}, "sparsity": {bits: fraction
        of zero float weights over the prunable layers}, "quantized_sparsity": {bits: the same
        for the weights the layers compute with}, "max_nonzero_levels", "history",
        "final_accuracy", "best_epoch", "wall_s" (each {bits: ...}), "start", "mode", ...};
        with --naive-quantizer also "masked_before", "zeros_destroyed" ({bits: ...}) and
        "zeros" (exact zeros in the quantized layers' float weights).
    """
    data = lab_data(options, data, trains=True)
    mode = quantizer_mode("d", options)
    state, masks, start = sparse_start(options, data)
    keys = PER_BIT_KEYS["d"] + (PER_BIT_KEYS["d_naive"] if options.naive_quantizer else ())

    def one_width(bits: str) -> dict[str, Any]:
        model = quantized_model(state, int(bits), mode)
        values: dict[str, Any] = {
            "before": accuracy_on_test_set(model, data, options, f"(d) {bits} bits before")}
        if options.naive_quantizer:
            values["zeros_destroyed"] = sum(
                zeros_destroyed(layer.weight.data, int(bits), mode)
                for layer in weight_layers(model).values() if layer.weight_transform is not None)
            values["masked_before"] = accuracy_on_test_set(
                quantized_model(state, int(bits), "masked"), data, options, f"(d) {bits} masked")
        result = finetune(model, data, options, run_name("d", options, bits), [MaskHook(masks)],
                          script=SCRIPT)
        values["after"] = result["best_accuracy"]
        values.update({key: result[key] for key in (
            "history", "final_accuracy", "best_epoch", "wall_s")})
        values["model_file"] = save_model_file(model, options, model_name("d", options, bits))
        # `finetune` left the best epoch's weights in the model: describe that model
        values["sparsity"] = sparsity_report(model)[1]
        values["quantized_sparsity"] = sparsity_report(model, effective=True)[1]
        values["max_nonzero_levels"] = max(nonzero_levels(model).values())
        print(f"  (d) {bits} bits ({mode}): before {values['before']:.4f}, after "
              f"{values['after']:.4f}, sparsity {values['sparsity']:.4f} (computed "
              f"with: {values['quantized_sparsity']:.4f})", flush=True)
        return values

    context = {"start": start, "mode": mode, "epochs": options.epochs,
               "train_images": len(data.y_train), "test_images": len(data.y_test),
               **run_settings(options)}
    if options.naive_quantizer:
        context["zeros"] = _quantized_layer_zeros(quantized_model(state, 4, mode))
    out = each_bit_width(options, "d", keys, context, one_width)
    return {**out, "wall_s_total": round(sum(out["wall_s"].values()), 1), **context}


def part_e(options: Lab3Options, data: Cifar10 | None = None) -> dict[str, Any]:
    """(e) Global iterative pruning to 80 % with 4-bit masked QAT of the body throughout.

    The schedule is Lab 2 (e)'s (`lab2.prune_epochs_for`): prune to 80 % * e / P before epoch
    e = 1..P, then the mask is fixed; the hook itself vetoes the earlier epochs as best.

    Returns:
        {"best_accuracy", "final_accuracy", "best_epoch", "history", "sparsity": {layer:
        fraction of zeros of the best model}, "total_sparsity", "quantized_total_sparsity",
        "max_nonzero_levels", "sparsity_per_epoch", "prune_epochs", "bits", "mode", ...}.
    """
    data = lab_data(options, data, trains=True)
    mode = quantizer_mode("e", options)
    prune_epochs = lab2.prune_epochs_for(options.epochs)
    pruning = IterativePruningHook(TARGET, prune_epochs, global_=True)
    model = pretrained(options)
    set_weight_quantization(model, BITS_E, QUANTIZED_LAYERS, mode)
    result = finetune(model, data, options, run_name("e", options), [pruning], script=SCRIPT)
    model_file = save_model_file(model, options, model_name("e", options))
    per_layer, total = sparsity_report(model)
    quantized_per_layer, quantized_total = sparsity_report(model, effective=True)
    payload = {key: result[key] for key in (
        "best_accuracy", "final_accuracy", "best_epoch", "history", "epochs", "wall_s")}
    print(f"  (e) best {result['best_accuracy']:.4f}, sparsity {total:.4f} (computed with: "
          f"{quantized_total:.4f})", flush=True)
    return {**payload, "sparsity": per_layer, "total_sparsity": total, "model_file": model_file,
            "quantized_sparsity": quantized_per_layer,
            "quantized_total_sparsity": quantized_total,
            "max_nonzero_levels": max(nonzero_levels(model).values()),
            "sparsity_per_epoch": [h.get("sparsity") for h in result["log"]],
            "prune_epochs": prune_epochs, "target": TARGET, "bits": BITS_E, "mode": mode,
            "train_images": len(data.y_train), "test_images": len(data.y_test)}


PART_FUNCTIONS = {"b": part_b, "c": part_c, "d": part_d, "e": part_e}


# ------------------------------------------------------------------------------ running
def is_evaluation(part: str, options: Lab3Options) -> bool:
    """Whether `part` only evaluates (only (b))."""
    return part == "b"


def run_part(part: str, options: Lab3Options, data: Cifar10) -> dict[str, Any]:
    """Run one part, write its JSON under --out-dir and return what was written.

    With --resume, a finished evaluation on the same test set is reused and the finetuning
    runs continue (or, when finished, only reload) from ``<run-root>/lab3_*``.

    Raises:
        MinitorchError: unknown part, a finetuning part without training images, or a
            missing Lab 2 (c) checkpoint for (d).
    """
    if part not in PART_FUNCTIONS:
        raise MinitorchError(f"unknown Lab 3 part {part!r}; choose from {', '.join(PARTS)}")
    evaluation = is_evaluation(part, options)
    if not evaluation and len(data.y_train) == 0:
        raise MinitorchError(f"part ({part}) finetunes: it needs training images (--subset > 0)")
    name = result_name(part, options)
    # every Lab 3 result records the weights it started from (Lab 2's evaluations only)
    title = TITLES.get(name.removeprefix("lab3_"), TITLES[part]).format(
        start=sparse_start_name(options))
    return run_and_write(options, name, part, title,
                         lambda: {**PART_FUNCTIONS[part](options, data),
                                  "weights": weights_id(options)},
                         trains=not evaluation, script=SCRIPT)


def run(options: Lab3Options,
        after_part: Callable[[], Any] | None = None) -> list[dict[str, Any]]:
    """Run the parts ``options.part`` names in order (every check first: `check_parts`,
    `preflight`), sharing one loaded data set between them.

    Args:
        options: the lab options.
        after_part: called after each part (the lab script re-renders the report there, so
            an interrupted `--part all` still leaves a page of what finished).

    Returns:
        What each part wrote.
    """
    check_parts(options)
    parts = options.parts()
    if "d" in parts:
        check_sparse_start(options)  # before minutes of (b)/(c), not after
    preflight(options, [(result_name(p, options), not is_evaluation(p, options))
                        for p in parts],
              [run for p in parts for run in run_names(p, options)])
    if all(is_evaluation(p, options) for p in parts):
        # nothing trains: skip reading the 50,000 training images
        options = replace(options, subset=0)
    data = load_data(options)
    written = []
    for part in parts:
        written.append(run_part(part, options, data))
        if after_part is not None:
            after_part()
    return written
