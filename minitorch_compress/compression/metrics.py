"""Sparsity and quantization-level reports: numbers, a markdown table and a bar chart."""

from __future__ import annotations

from pathlib import Path

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


def plot_sparsity(per_layer: dict[str, float], path: str | Path, title: str) -> None:
    """Save a bar chart of per-layer sparsity (one bar per layer, in table order).

    Args:
        per_layer: {layer name: fraction of zeros}, as from `sparsity_report`.
        path: output image file (the format follows its suffix, e.g. .png).
        title: the figure's title.
    """
    # imported here: matplotlib is slow to import and only the lab scripts draw. A bare
    # Figure renders with Agg and leaves pyplot's global backend and state alone.
    from matplotlib.figure import Figure

    names = list(per_layer)
    fig = Figure(figsize=(max(6.0, 0.45 * len(names) + 2.0), 4.5))
    ax = fig.subplots()
    ax.bar(range(len(names)), [per_layer[n] for n in names], color="tab:blue")
    ax.set_xticks(range(len(names)))
    ax.set_xticklabels(names, rotation=75, ha="right", fontsize=8)
    ax.set_ylim(0.0, 1.0)
    ax.set_ylabel("fraction of zero weights")
    ax.set_title(title)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
