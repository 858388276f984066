"""Mixed precision (claim 1.10): each quantized layer gets its own bit width, chosen under a
budget of ``.mtc`` file bytes from how much each layer's quantization costs the model.

Three steps, one function each:

* `layer_sensitivity`: one layer at a time quantized to b bits, every other layer float;
  ``score(model) -> (loss, accuracy)`` (the caller's data: Lab 5 uses held-out training
  images, never the test set, so the choice of bits does not see the images it is judged on).
* `layer_bytes`: what each layer costs in the ``.mtc`` file at each width, measured: the model
  saved with every listed layer at b bits, each layer's bytes read from the file (a compressed
  tensor is one section, coded on its own, so its bytes do not depend on the other layers'
  widths); the rest of the file (batch norm, head conv, FC, header) is reported beside.
* `allocate`: the exact small knapsack. With ``cost[layer][b]`` bytes (rounded UP to whole
  units of `granularity` bytes, so the allocation never exceeds the budget it was given) and
  ``penalty[layer][b]`` (Lab 5: the loss increase), dynamic programming over the budget's
  units finds the widths minimising the summed penalty whose summed cost fits. Exact at that
  granularity: no other choice of widths with the same rounded costs has a smaller sum.

The penalties are treated as additive (the loss increases of layers quantized one at a time
summed), the usual simplification of sensitivity-based allocation; the finetune that follows
(QAT) is what the lab measures.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from minitorch_compress.compression.masks import weight_layers
from minitorch_compress.compression.quant import (
    QuantMode,
    bits_per_layer,
    clear_weight_quantization,
    set_bits_per_layer,
)
from minitorch_compress.errors import MinitorchError
from minitorch_compress.io import mtc
from minitorch_compress.nn import Module

#: the widths the allocation chooses from. 1 bit (two levels, the layer's min and max) is
#: there because at the size of a uniform 2-bit model nothing else can pay for a wider layer;
#: 7 bits is left out (it buys little over 6 and 8)
BIT_MENU = (1, 2, 3, 4, 5, 6, 8)

#: the widths a file of per-layer bits may give (the .mtc file stores codes of 1..8 bits)
FILE_BITS = range(1, 9)

Score = Callable[[Module], tuple[float, float]]


def read_bits_per_layer(path: str | Path, model: Module) -> dict[str, int]:
    """A JSON file of per-layer widths, checked against `model`'s layers.

    The file holds ``{"layer name": bits, ...}`` or an object with such a mapping under
    ``"bits"`` (a Lab 5 run's ``allocation.json``); a layer not named keeps what it has.

    Raises:
        MinitorchError: one line: a missing or unreadable file, not JSON, not a mapping, a
            name that is not a Conv2d/Linear layer of the model, a width outside 1..8.
    """
    path = Path(path)
    try:
        document: Any = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise MinitorchError(f"--bits-per-layer {path}: no such file") from None
    except (OSError, UnicodeDecodeError) as error:
        raise MinitorchError(f"--bits-per-layer {path}: cannot be read ({error})") from None
    except json.JSONDecodeError as error:
        raise MinitorchError(f"--bits-per-layer {path}: not JSON ({error.msg}, line "
                             f"{error.lineno})") from None
    if isinstance(document, dict) and isinstance(document.get("bits"), dict):
        document = document["bits"]
    if not isinstance(document, dict) or not document:
        raise MinitorchError(f"--bits-per-layer {path}: expected a JSON object "
                             '{"layer name": bits, ...}')
    layers = weight_layers(model)
    unknown = [name for name in document if name not in layers]
    if unknown:
        raise MinitorchError(f"--bits-per-layer {path}: no layer named "
                             f"{', '.join(map(repr, unknown))}; the model's layers are "
                             f"{', '.join(layers)}")
    bad = {name: b for name, b in document.items()
           if isinstance(b, bool) or not isinstance(b, int) or b not in FILE_BITS}
    if bad:
        name, value = next(iter(bad.items()))
        raise MinitorchError(f"--bits-per-layer {path}: {name} has {value!r} bits; a width is "
                             f"a whole number from {FILE_BITS[0]} to {FILE_BITS[-1]}")
    return dict(document)


def layer_sensitivity(model: Module, layers: Sequence[str], bit_menu: Sequence[int],
                      mode: QuantMode, score: Score,
                      progress: Callable[[str], None] | None = None
                      ) -> tuple[tuple[float, float], dict[str, dict[int, tuple[float, float]]]]:
    """Score `model` with one layer at a time quantized, every other layer float.

    Args:
        model: float weights (any quantizer it holds is removed first and not restored).
        layers: the dotted names of the layers to try, e.g. the 20 body convs of ResNet-20.
        bit_menu: the widths to try each layer at.
        mode: the quantizer ("asymmetric"; "masked" for a pruned model).
        score: model -> (loss, accuracy) on the caller's images.
        progress: called with a short line after each layer (None: silent).

    Returns:
        ((loss, accuracy) of the float model, {layer: {bits: (loss, accuracy)}}).
    """
    clear_weight_quantization(model)
    base = score(model)
    out: dict[str, dict[int, tuple[float, float]]] = {}
    for name in layers:
        out[name] = {}
        for bits in bit_menu:
            set_bits_per_layer(model, {name: bits}, mode)
            out[name][bits] = score(model)
        set_bits_per_layer(model, {name: None}, mode)  # float again
        if progress is not None:
            progress(f"{name}: " + ", ".join(f"{b} bits loss {out[name][b][0]:.4f}"
                                             for b in bit_menu))
    clear_weight_quantization(model)
    return base, out


def file_bytes_by_layer(path: str | Path, layers: Sequence[str]) -> tuple[int, dict[str, int]]:
    """(the file's bytes, {layer: bytes of its weight's section}) of an ``.mtc`` file."""
    loaded = mtc.load(path)
    tensors = loaded.header["tensors"]
    return loaded.file_bytes, {name: len(loaded.sections[tensors[f"{name}.weight"]["section"]])
                               for name in layers}


def layer_bytes(model: Module, layers: Sequence[str], bit_menu: Sequence[int],
                mode: QuantMode) -> tuple[dict[str, dict[int, int]], dict[int, int]]:
    """Measured ``.mtc`` bytes of each layer at each width.

    For each width b the model is saved (to a temporary file) with every listed layer at b
    bits; each layer's bytes are its weight's section in that file.

    Args:
        model: its quantizers are restored afterwards.
        layers, bit_menu, mode: as in `layer_sensitivity`.

    Returns:
        ({layer: {bits: bytes}}, {bits: bytes of the rest of the file at that uniform width}).
    """
    kept = bits_per_layer(model)
    costs: dict[str, dict[int, int]] = {name: {} for name in layers}
    rest: dict[int, int] = {}
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "uniform.mtc"
        for bits in bit_menu:
            set_bits_per_layer(model, dict.fromkeys(layers, bits), mode)
            mtc.save(path, model)
            total, by_layer = file_bytes_by_layer(path, layers)
            for name in layers:
                costs[name][bits] = by_layer[name]
            rest[bits] = total - sum(by_layer.values())
    clear_weight_quantization(model)
    for name, bits in kept.items():
        set_bits_per_layer(model, {name: bits}, mode)
    return costs, rest


def allocate(cost: Mapping[str, Mapping[int, int]], penalty: Mapping[str, Mapping[int, float]],
             budget: int, granularity: int = 1) -> dict[str, int]:
    """The widths minimising the summed penalty whose summed cost fits the budget (exact
    0/1 multiple-choice knapsack by dynamic programming).

    Args:
        cost: {layer: {bits: bytes}}; every layer must list the same widths as in `penalty`.
        penalty: {layer: {bits: what that width costs the model}} (e.g. the loss increase).
        budget: the bytes the layers may take together.
        granularity: bytes per unit of the table; each cost is rounded up to whole units,
            the budget down, so the result's true cost never exceeds `budget`.

    Returns:
        {layer: bits} in the order of `cost`; ties go to the first width found.

    Raises:
        MinitorchError: no choice fits (the budget is below every layer's cheapest width),
            or `cost` and `penalty` disagree on the layers or widths.
    """
    if granularity < 1:
        raise MinitorchError(f"granularity must be >= 1 byte, got {granularity}")
    names = list(cost)
    if set(names) != set(penalty) or any(set(cost[n]) != set(penalty[n]) for n in names):
        raise MinitorchError("allocate: cost and penalty must list the same layers and widths")
    units = max(budget, -1) // granularity
    cheapest = sum(min(-(-c // granularity) for c in cost[n].values()) for n in names)
    if budget < 0 or cheapest > units:
        raise MinitorchError(f"no allocation fits {budget:,} bytes: the cheapest width of every "
                             f"layer takes {cheapest * granularity:,}")
    # best[u]: the least summed penalty of the layers so far with total units <= u
    best = np.zeros(units + 1)
    choices = []
    for name in names:
        options = list(cost[name])
        new = np.full(units + 1, np.inf)
        pick = np.full(units + 1, -1, dtype=np.int64)
        for k, bits in enumerate(options):
            need = -(-cost[name][bits] // granularity)
            if need > units:
                continue
            candidate = np.full(units + 1, np.inf)
            candidate[need:] = best[:units + 1 - need] + penalty[name][bits]
            better = candidate < new
            new[better], pick[better] = candidate[better], k
        best = new
        choices.append((name, options, pick))
    chosen: dict[str, int] = {}
    u = units
    for name, options, pick in reversed(choices):
        bits = options[pick[u]]
        chosen[name] = bits
        u -= -(-cost[name][bits] // granularity)
    return {name: chosen[name] for name in names}


def allocation_cost(cost: Mapping[str, Mapping[int, int]], bits: Mapping[str, int]) -> int:
    """The summed bytes of the layers at the widths `bits` gives them."""
    return sum(cost[name][b] for name, b in bits.items())


def allocation_penalty(penalty: Mapping[str, Mapping[int, float]],
                       bits: Mapping[str, int]) -> float:
    """The summed penalty of the layers at the widths `bits` gives them."""
    return float(sum(penalty[name][b] for name, b in bits.items()))
