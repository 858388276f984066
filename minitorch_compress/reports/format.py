"""What every report shares: markdown tables, number formats, run labels, page head and tail,
shortfall notes, and the per-epoch accuracy figure. Pure functions of result payloads: nothing
here runs an experiment.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from minitorch_compress import published as pub
from minitorch_compress.recipe import FinetuneConfig


def row(cells: Iterable[Any]) -> str:
    """One markdown table line, e.g. ``| a | 0.9151 |``: each cell as `str` gives it."""
    return "| " + " | ".join(str(cell) for cell in cells) + " |"


def table(header: Sequence[Any], align: str, rows: Iterable[Iterable[Any]] = ()) -> list[str]:
    """A markdown table's lines: `header`, the alignment line (one letter a column of
    `align`: "l" left, "r" right), then one line per row of cells."""
    rule = "|" + "".join("---:|" if a == "r" else "---|" for a in align)
    return [row(header), rule, *(row(cells) for cells in rows)]


def history_table(histories: dict[str, Sequence[float]]) -> list[str]:
    """Test accuracy per epoch, one column per run (named by the keys), blank after a run's
    last epoch."""
    epochs = max(len(history) for history in histories.values())
    return table(["epoch", *histories], "r" * (len(histories) + 1),
                 ([e + 1, *(fmt(h[e]) if e < len(h) else "" for h in histories.values())]
                  for e in range(epochs)))


def listing(items: Sequence[str]) -> str:
    """Items joined for a sentence: "a", "a and b", "a, b and c"."""
    return ", ".join(items[:-1]) + " and " + items[-1] if len(items) > 1 else items[0]


def parts_label(parts: Iterable[str]) -> str:
    """"part(s) (c), (d)" for the parts named, "" for none (`report_head`'s smoke_where)."""
    named = ", ".join(f"({p})" for p in parts)
    return f"part(s) {named}" if named else ""


def pyplot() -> Any:
    """``matplotlib.pyplot`` on the file-only Agg backend, imported when a figure is drawn,
    so that importing a report never pulls in matplotlib."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_histories(histories: dict[str, list[float]], path: Path, title: str,
                   published: dict[str, float] | None = None,
                   reportable: dict[str, list[bool]] | None = None) -> None:
    """Test accuracy per epoch, one line per run, dashed lines at the published figures.

    `reportable` (per run, per epoch) marks epochs that may not be reported, e.g. before an
    iterative pruning schedule reaches its final mask: they are drawn as hollow markers, so
    their higher accuracy of a still dense model is not mistaken for a result."""
    fig, ax = pyplot().subplots(figsize=(6.4, 4.0))
    any_hollow = False
    for i, (label, accuracies) in enumerate(histories.items()):
        color = f"C{i}"
        epochs = np.arange(1, len(accuracies) + 1)
        ax.plot(epochs, accuracies, color=color, label=label)
        given = list((reportable or {}).get(label) or [])[: len(accuracies)]
        flags = np.asarray(given + [True] * (len(accuracies) - len(given)), bool)
        values = np.asarray(accuracies)
        ax.plot(epochs[flags], values[flags], "o", ms=3, color=color)
        if not flags.all():
            any_hollow = True
            ax.plot(epochs[~flags], values[~flags], "o", ms=4, mfc="white", color=color)
        if published and label in published:
            ax.axhline(published[label], color=color, ls="--", lw=0.8)
    if any_hollow:
        ax.plot([], [], "o", ms=4, mfc="white", color="gray",
                label="hollow: final mask not yet in force (not reportable)")
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.set_xlabel("epoch")
    ax.set_ylabel("test accuracy")
    ax.set_title(title + ("  (dashed: published)" if published else ""))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    save_figure(fig, path)


def fmt(value: float | None) -> str:
    """An accuracy or fraction with 4 decimals; "—" for a missing one."""
    return "—" if value is None else f"{value:.4f}"


def fmt_diff(ours: float | None, published: float | None) -> str:
    """``ours - published`` with a sign and 4 decimals; "—" when either is missing."""
    return "—" if ours is None or published is None else f"{ours - published:+.4f}"


SEED_NOISE = 0.005  # a best-of-run gap below this we put down to the seed alone


@dataclass(frozen=True)
class FinetuneRun:
    """What a report's shortfall notes need of one full-size finetune.

    ``context`` holds sentences to append to the run's bullet (e.g. what it started from);
    a run with context always gets a bullet of its own.
    """

    label: str  # how the report names it, e.g. "(c)" or "(c) asymmetric 4 bits"
    best: float  # best test accuracy
    published: float
    history: Sequence[float]  # test accuracy per epoch
    best_epoch: int | None  # 1-based
    epochs: int  # the epoch budget
    context: str = ""


def shortfall_notes(runs: Sequence[FinetuneRun]) -> list[str]:
    """The bullets a report puts under its summary for the runs below their published figure.

    A run short by less than SEED_NOISE, not still rising and without context has nothing
    to say beyond the seed: all such runs share one bullet (first). Every other short run
    gets its own (:func:`shortfall_note`). Runs above their published figure are named in
    each bullet.
    """
    above = " and ".join(r.label for r in runs if r.best > r.published)
    short = [r for r in runs if r.best < r.published]
    noise = [r for r in short if r.published - r.best < SEED_NOISE and not r.context
             and not still_rising(r.history, r.best_epoch)]
    notes = [within_noise_note([r.label for r in noise],
                               [r.published - r.best for r in noise], above)] if noise else []
    return notes + [shortfall_note(r.label, r.best, r.published, r.history, r.best_epoch,
                                   r.epochs, above, r.context)
                    for r in short if r not in noise]


def shortfall_note(label: str, best: float, published: float, history: Sequence[float],
                   best_epoch: int | None, epochs: int, above: str = "",
                   context: str = "") -> str:
    """One bullet saying by how much a finetune's best falls short of the published figure and
    what its own history says about why (numbers from the run, not fixed text).

    Args:
        label: how the report names the run, e.g. "(c)" or "(c) 4 bits".
        best, published: best test accuracy of ours and the published one (``best < published``).
        history: test accuracy per epoch; best_epoch: 1-based epoch of ``best``.
        epochs: the epoch budget of the run.
        above: the runs of the same report that came out above the published figure, e.g.
            "(b) and (d)", or "" for none.
        context: sentences appended to the bullet, e.g. what the run started from.
    """
    gap = published - best
    rising = still_rising(history, best_epoch)
    trend = (f"its accuracy was still rising at the last epoch "
             f"({history[-3]:.4f} -> {history[-1]:.4f} over the last two), so the "
             f"{epochs}-epoch budget ends before it levels off; " if rising else "")
    return (f"* {label} is {gap:.4f} below the published figure ({gap * 10000:.0f} of 10,000 "
            f"test images): {trend}{_SEED_SENTENCE}" + _above(above)
            + ("" if gap < SEED_NOISE else
               "; a gap over half a percent is more than we would put down to that alone")
            + "." + (f" {context}" if context else ""))


def still_rising(history: Sequence[float], best_epoch: int | None) -> bool:
    """True when a run's best epoch is its last and it gained over the last two epochs."""
    return len(history) >= 3 and best_epoch == len(history) and history[-1] > history[-3]


def within_noise_note(labels: Sequence[str], gaps: Sequence[float], above: str = "") -> str:
    """One bullet for several finetunes each short of its published figure by less than
    SEED_NOISE and not still rising, e.g. "* (c) 4 bits and (c) 3 bits are 0.0006 and 0.0005
    below the published figures (6 and 5 of 10,000 test images): ..."."""
    return (f"* {listing(labels)} are {listing([f'{g:.4f}' for g in gaps])} below the "
            f"published figures ({listing([f'{g * 10000:.0f}' for g in gaps])} of 10,000 "
            f"test images): {_SEED_SENTENCE}" + _above(above) + ".")


_SEED_SENTENCE = ("a finetune is one stochastic run (our seed 0, fixed batch order and "
                  "augmentation), and the published figure is the best epoch of another run, "
                  "so differences of a few tenths of a percent either way are expected")


def _above(above: str) -> str:
    return f" (our {above} came out above theirs)" if above else ""


def fmt_wall(seconds: float | None) -> str:
    """A wall time in s, min or h; "—" for a missing one."""
    if seconds is None:
        return "—"
    if seconds < 120:
        return f"{seconds:.1f} s"
    return f"{seconds / 60:.1f} min" if seconds < 7200 else f"{seconds / 3600:.2f} h"


def run_label(meta: dict[str, Any]) -> str:
    """"full", or a loud SMOKE label listing what was cut, for a result's `_meta`."""
    if not meta.get("smoke"):
        return "full"
    cut = []
    if meta.get("epochs") is not None:
        cut.append(f"{meta['epochs']} ep")
    if meta.get("train_subset") not in (None, 0):
        cut.append(f"{meta['train_subset']} train img")
    if meta.get("test_subset") is not None:
        cut.append(f"{meta['test_subset']} test img")
    return f"**SMOKE** ({', '.join(cut)}), not a reproduction"


def smoke_tag(result: dict[str, Any]) -> str:
    """" [SMOKE]" for a smoke result (figure titles), else ""."""
    return " [SMOKE]" if result["_meta"].get("smoke") else ""


def report_head(title: str, script: str, prefix: str, any_results: bool,
                smoke_where: str) -> list[str]:
    """The opening lines of a lab report (markdown).

    Args:
        title: e.g. "Lab 2 — pruning ResNet-20".
        script: the lab script, e.g. ``labs/lab2_pruning.py``.
        prefix: the result files' prefix, e.g. "lab2".
        any_results: False: say that no part has been run yet.
        smoke_where: which results are smoke runs, e.g. "part(s) (c), (d)"; "" for none.
    """
    L = [f"# {title}", "",
         f"Generated by `python {script}` from the `{prefix}_*.json` files beside this "
         "report; every number comes with the command, commit and wall time that produced "
         "it (see *Provenance*). Published numbers: SPEC, \"Published numbers to match or "
         "beat\" (finetuning is stochastic: compare best-of-run).", ""]
    if not any_results:
        L += [f"No part has been run yet: `python {script} --part all`.", ""]
    if smoke_where:
        L += [f"> **Smoke results** in {smoke_where}: fewer epochs and/or a subset of the "
              "images, to check that the code runs. They are NOT reproductions of the "
              "published numbers and their differences mean nothing.", ""]
    return L


def report_tail(figures: Sequence[Path], figure_dir: str, first_column: str,
                rows: Sequence[tuple[str, dict[str, Any], float | None]],
                wall_note: str) -> list[str]:
    """The closing sections of a lab report: *Figures* and *Provenance* (when present).

    Args:
        figures: the figures written, in ``<out-dir>/<figure_dir>/``.
        figure_dir: e.g. "lab2".
        first_column: the heading of the provenance table's first column (e.g. "part").
        rows: (label, `_meta`, wall time in seconds) per result.
        wall_note: what the wall times count, printed under the table.
    """
    L: list[str] = []
    if figures:
        L += ["## Figures", "", *[f"![{f.stem}]({figure_dir}/{f.name})" for f in figures], ""]
    if rows:
        L += ["## Provenance", "", *table(
            [first_column, "command", "commit", "date", "wall time", "machine", "run"],
            "llllrll", [[label, f"`{m.get('command', '?')}`", f"`{m.get('commit', '?')}`",
                         m.get("date", "?"), fmt_wall(wall), m.get("machine", "?"),
                         run_label(m)] for label, m, wall in rows]), "", wall_note, ""]
    return L


def write_markdown(path: Path, lines: Sequence[str]) -> Path:
    """Write `lines` to `path` (creating its folder); returns the path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


# how the report names the layers the published global-pruning sparsity is quoted for
_LAYER_WORDS = {"final_fc.linear": "final FC", "head_conv.0.conv": "head conv",
                "body_op.8.conv2.0.conv": "last conv of stage 3"}


def published_global_spread() -> str:
    """"~0.16 (final FC) and ~0.31 (head conv) to ~0.98 (last conv of stage 3), total
    0.8000": the published per-layer sparsity of global pruning, from `published`."""
    (low, a), (mid, b), (high, c) = sorted(pub.LAB2_GLOBAL_SPARSITY.items(),
                                           key=lambda item: item[1])
    return (f"~{a:.2f} ({_LAYER_WORDS[low]}) and ~{b:.2f} ({_LAYER_WORDS[mid]}) to ~{c:.2f} "
            f"({_LAYER_WORDS[high]}), total {pub.LAB2_GLOBAL_TOTAL:.4f}")


def recipe() -> str:
    """"SGD, batch 256, lr 0.002, momentum 0.875, weight decay 1e-4": the finetuning recipe
    as `FinetuneConfig` holds it (not typed again)."""
    c = FinetuneConfig()
    return (f"SGD, batch {c.batch_size}, lr {c.lr:g}, momentum {c.momentum:g}, weight decay "
            f"{c.weight_decay:g}")


def save_figure(fig, path: Path) -> Path:
    """Lay out, write (creating the folder) and close a matplotlib figure; returns `path`."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
