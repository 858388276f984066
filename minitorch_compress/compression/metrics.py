"""Sparsity and quantization-level reports: numbers and a markdown table (the bar chart of
per-layer sparsity is drawn by `reports.figures.plot_sparsity`)."""

from __future__ import annotations

import numpy as np

from minitorch_compress.autograd.engine import no_grad
from minitorch_compress.compression.masks import layers_by_name, prunable_layers
from minitorch_compress.nn import Module


def sparsity_report(model: Module, layers: list[str] | None = None,
                    effective: bool = False) -> tuple[dict[str, float], float]:
    """Fraction of exactly-zero weights per layer and in total.

    Args:
        model: e.g. ResNet-20.
        layers: dotted names of Conv2d/Linear layers; default: every prunable layer (the
            shortcut convs are left out, as in the course's tables).
        effective: count zeros of the weights the layers compute with (the quantized ones
            when a weight_transform is installed) instead of the float parameters.

    Returns:
        (per_layer, total): {name: fraction of zeros}, and the fraction over all the chosen
        weights together (so large layers weigh more).
    """
    chosen = prunable_layers(model) if layers is None else layers_by_name(model, layers)
    per_layer: dict[str, float] = {}
    zeros = size = 0
    with no_grad():
        for name, layer in chosen.items():
            w = layer.effective_weight().data if effective else layer.weight.data
            n_zero = int(w.size - np.count_nonzero(w))
            per_layer[name] = n_zero / w.size
            zeros += n_zero
            size += w.size
    return per_layer, (zeros / size if size else 0.0)


def count_levels(weights: dict[str, np.ndarray]) -> dict[str, int]:
    """Number of distinct values in each array (e.g. of `quantized_state(model)`).

    Returns:
        {name: number of distinct values, 0 included if present}.
    """
    return {name: int(np.unique(w).size) for name, w in weights.items()}


def format_sparsity_table(per_layer: dict[str, float], total: float) -> str:
    """A markdown table: one row per layer, then the total.

    Args:
        per_layer, total: as returned by `sparsity_report`.

    Returns:
        The table as a string (no trailing newline).
    """
    width = max([len("**total**"), *map(len, per_layer)])
    lines = [f"| {'layer':<{width}} | sparsity |", f"|{'-' * (width + 2)}|---------:|"]
    lines += [f"| {name:<{width}} | {value:8.4f} |" for name, value in per_layer.items()]
    lines.append(f"| {'**total**':<{width}} | {total:8.4f} |")
    return "\n".join(lines)
