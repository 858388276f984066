"""Figures that more than one report draws: the per-layer sparsity bar chart.

The reports of Labs 2 and 3 draw it from the ``sparsity`` of their result files
(`compression.sparsity_report` computes it when the lab runs).
"""

from __future__ import annotations

from pathlib import Path


def plot_sparsity(per_layer: dict[str, float], path: str | Path, title: str) -> None:
    """Save a bar chart of per-layer sparsity (one bar per layer, in table order).

    Args:
        per_layer: {layer name: fraction of zeros}, as from `sparsity_report`.
        path: output image file (the format follows its suffix, e.g. .png).
        title: the figure's title.
    """
    # imported here: matplotlib is a heavy optional dependency that only drawing needs. A
    # bare Figure renders with Agg and leaves pyplot's global backend and state alone.
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
