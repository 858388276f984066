"""Figures that more than one report draws: the per-layer sparsity bar chart, and labels
for the points of a scatter plot that do not overlap.

The reports of Labs 2 and 3 draw it from the ``sparsity`` of their result files
(`compression.sparsity_report` computes it when the lab runs).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any


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


def label_points_apart(ax: Any, labels: Sequence[tuple[str, float, float]],
                       fontsize: float = 7, color: str | None = None) -> list[Any]:
    """Name each point (text, x, y) of `ax` beside it, moving a label down below any label it
    would overlap, with a thin line back to its point when moved (a plain `annotate` per
    point piled the names of nearby models on top of each other). Call it when every other
    artist and the titles are in place: positions are worked out in pixels, from each
    label's measured size.

    Returns:
        The annotations, in the order of `labels`.
    """
    fig = ax.figure
    fig.tight_layout()
    ax.autoscale_view()
    renderer = fig.canvas.get_renderer()
    pixels_per_point = fig.dpi / 72
    boxes = []  # each label's box where a plain annotation puts it
    for text, x, y in labels:
        probe = ax.annotate(text, (x, y), xytext=(4, 2), textcoords="offset points",
                            fontsize=fontsize)
        boxes.append(probe.get_window_extent(renderer))
        probe.remove()
    placed: list[tuple[float, float, float, float]] = []  # x0, x1, y0, y1 in pixels
    drop = [0.0] * len(labels)  # how far each label moves down, in pixels
    for i in sorted(range(len(labels)), key=lambda i: -boxes[i].y1):  # top label first
        x0, x1, y0, y1 = boxes[i].x0, boxes[i].x1, boxes[i].y0, boxes[i].y1
        moved = True
        while moved:  # each move lowers the label, so this ends
            moved = False
            for px0, px1, py0, py1 in placed:
                if x0 < px1 and px0 < x1 and y0 < py1 and py0 < y1:
                    y0, y1 = py0 - (y1 - y0) - 1, py0 - 1
                    moved = True
        placed.append((x0, x1, y0, y1))
        drop[i] = boxes[i].y0 - y0
    return [ax.annotate(text, (x, y), xytext=(4, 2 - d / pixels_per_point),
                        textcoords="offset points", fontsize=fontsize, color=color,
                        arrowprops={"arrowstyle": "-", "lw": 0.4, "color": "gray"} if d else None)
            for (text, x, y), d in zip(labels, drop, strict=True)]
