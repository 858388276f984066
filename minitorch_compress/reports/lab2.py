"""Renders ``lab2.md`` and its figures from the ``lab2_*.json`` result files."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from minitorch_compress import published as pub
from minitorch_compress.experiments.lab2_layout import FINETUNE_PARTS, PARTS, SCRIPT, TITLES
from minitorch_compress.reports.figures import plot_sparsity
from minitorch_compress.reports.format import (
    FinetuneRun,
    fmt,
    fmt_diff,
    history_table,
    parts_label,
    plot_histories,
    published_global_spread,
    recipe,
    report_head,
    report_tail,
    run_label,
    shortfall_notes,
    smoke_tag,
    table,
    write_markdown,
)
from minitorch_compress.results import read_result


def _headline(part: str, result: dict[str, Any]) -> float | None:
    """The number compared with the published one (best-of-run for the finetuning parts)."""
    if part == "a":
        return result["accuracy"]
    if part in FINETUNE_PARTS:
        return result["best_accuracy"]
    return None


def write_figures(out_dir: Path, results: dict[str, dict[str, Any]]) -> list[Path]:
    """Figures in ``out_dir/lab2/`` from the results present.

    Writes ``accuracy_per_epoch.png`` (test accuracy per epoch of (c)-(e), published numbers
    dashed), ``sparsity_<part>.png`` (per-layer sparsity bars of each best model) and
    ``pruning_fraction.png`` (accuracy vs pruned fraction, (b) with (a) at 0).

    Returns:
        The paths written.
    """
    fig_dir = out_dir / "lab2"
    fig_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    smoke = any(r["_meta"].get("smoke") for p, r in results.items() if p in FINETUNE_PARTS)
    histories = {f"({p})": results[p]["history"] for p in FINETUNE_PARTS if p in results}
    if histories:
        path = fig_dir / "accuracy_per_epoch.png"
        plot_histories(histories, path,
                       "Lab 2: test accuracy per epoch" + (" [SMOKE]" if smoke else ""),
                       published={f"({p})": pub.LAB2[p] for p in FINETUNE_PARTS},
                       reportable={f"({p})": [e.get("eligible_for_best", True)
                                              for e in results[p].get("log", [])]
                                   for p in FINETUNE_PARTS if p in results})
        written.append(path)
    for p in FINETUNE_PARTS:
        if p in results:
            path = fig_dir / f"sparsity_{p}.png"
            title = (f"Lab 2 {TITLES[p]}: best model, total {results[p]['total_sparsity']:.4f}"
                     + smoke_tag(results[p]))
            plot_sparsity(results[p]["sparsity"], path, title)
            written.append(path)
    if "b" in results:
        written.append(_plot_fractions(results, fig_dir / "pruning_fraction.png"))
    return written


def _plot_fractions(results: dict[str, dict[str, Any]], path: Path) -> Path:
    from matplotlib.figure import Figure  # bare Figure: no pyplot state (see plot_sparsity)

    fractions = [float(q) for q in results["b"]["accuracy"]]
    accuracies = list(results["b"]["accuracy"].values())
    if "a" in results:
        fractions, accuracies = [0.0, *fractions], [results["a"]["accuracy"], *accuracies]
    fig = Figure(figsize=(5.5, 3.8))
    ax = fig.subplots()
    ax.plot(fractions, accuracies, marker="o")
    ax.set_xlabel("fraction pruned in every layer (no finetuning)")
    ax.set_ylabel("test accuracy")
    smoke = any(results[p]["_meta"].get("smoke") for p in ("a", "b") if p in results)
    ax.set_title("Lab 2 (b): one-shot per-layer pruning" + (" [SMOKE]" if smoke else ""))
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return path


def _sparsity_table(results: dict[str, dict[str, Any]]) -> list[str]:
    parts = [p for p in FINETUNE_PARTS if p in results]
    return table(["layer", *(f"({p})" for p in parts)], "l" + "r" * len(parts), [
        *([f"`{name}`", *(fmt(results[p]["sparsity"].get(name)) for p in parts)]
          for name in results[parts[0]]["sparsity"]),
        ["**total**", *(f"**{results[p]['total_sparsity']:.4f}**" for p in parts)]])


def _sparse_speed(out_dir: Path, results: dict[str, dict[str, Any]]) -> list[str]:
    """What the sparse kernel makes of this lab's own models: measured inference speed on the
    dense and the sparse path (``sparse.json``, `benchmarks/bench_sparse.py`) beside their
    accuracy; nothing when the benchmark has not measured them."""
    measured = (read_result(out_dir, "sparse") or {}).get("lab_models", {})
    rows = [(name, m, results[name[len("lab2_"):]]) for name, m in measured.items()
            if name[len("lab2_"):] in results]
    if not rows:
        return []
    return ["Speed of these models' files at inference (batch 100, `sparse.md`): the sparse "
            "kernel runs their pruned convs, the dense path multiplies the zeros.", "",
            *table(["model", "best accuracy", "dense img/s", "sparse img/s", "speedup"],
                   "lrrrr", ([f"`{m['file']}`", fmt(r["best_accuracy"]),
                              f"{m['dense_img_s']:.0f}", f"{m['sparse_img_s']:.0f}",
                              f"{m['speedup']:.2f}x"] for _, m, r in rows)), ""]


def write_report(out_dir: str | Path) -> Path:
    """Regenerate ``out_dir/lab2.md`` and the figures from the ``lab2_*.json`` present.

    Returns:
        The path of the report.
    """
    out_dir = Path(out_dir)
    results = {p: r for p in PARTS if (r := read_result(out_dir, f"lab2_{p}")) is not None}
    figures = write_figures(out_dir, results) if results else []
    L = report_head("Lab 2 — pruning ResNet-20", SCRIPT, "lab2", bool(results),
                    parts_label(p for p, r in results.items() if r["_meta"].get("smoke")))
    summary = []
    for p, r in results.items():
        if p == "b":
            summary += [["(b)", f"prune {float(q):.0%} per layer, no finetuning", fmt(acc), "—",
                         "—", run_label(r["_meta"])] for q, acc in r["accuracy"].items()]
        else:
            ours, theirs = _headline(p, r), pub.LAB2.get(p)
            summary.append([f"({p})", TITLES[p][4:] + ("" if p == "a" else " (best epoch)"),
                            fmt(ours), fmt(theirs), fmt_diff(ours, theirs),
                            run_label(r["_meta"])])
    L += ["## Summary", "", *table(["part", "experiment", "ours", "published", "difference",
                                    "run"], "llrrrl", summary), ""]
    L += _sparse_speed(out_dir, results)

    if "b" in results:
        r = results["b"]
        L += ["## (b) one-shot per-layer percentile pruning", "",
              "Threshold per layer = q-th percentile of |w| (numpy's linear interpolation), "
              "keep |w| >= threshold; the pretrained weights are reloaded before each q. "
              "The spec publishes no number for (b); chance level for 10 classes is 0.10, "
              "so a collapse at 80 % is what the finetuning of (c)-(e) has to repair.", "",
              *table(["q", "test accuracy", "sparsity of the prunable layers"], "rrr",
                     ([q, fmt(acc), fmt(r.get("total_sparsity", {}).get(q))]
                      for q, acc in r["accuracy"].items())), ""]

    finetuned = {p: results[p] for p in FINETUNE_PARTS if p in results}
    if finetuned:
        L += ["## (c)-(e) finetuning to 80 % sparsity", "",
              f"Recipe: {recipe()}, test "
              "after every epoch, keep the best. (c) prunes 80 % of every layer once and "
              "masks the weights (and their momentum) after every step. (d)/(e) prune to "
              "80 % * e / P before epoch e = 1..P (P = 10 in the recipe; a smoke run of "
              "N < 20 epochs uses P = max(1, N // 2)); pruned weights may regrow until the "
              "last pruning step, then the mask is fixed. Only epochs with the final mask in "
              "force can be the best one, so every reported model is 80 % sparse.", "",
              *table(["part", "best", "best epoch", "final", "epochs", "P", "published",
                      "difference", "run"], "lrrrrrrrl",
                     ([f"({p})", fmt(r["best_accuracy"]), r.get("best_epoch") or "—",
                       fmt(r["final_accuracy"]), r["epochs"], r.get("prune_epochs", "—"),
                       fmt(pub.LAB2[p]), fmt_diff(r["best_accuracy"], pub.LAB2[p]),
                       run_label(r["_meta"])] for p, r in finetuned.items())),
              "", *_shortfall_notes(results), "", "Test accuracy per epoch:", "",
              *history_table({f"({p})": r["history"] for p, r in finetuned.items()})]
        L += ["", "### Per-layer sparsity of the best models", "",
              "Fraction of exactly-zero weights; shortcut (`id_mapping`) convs are never "
              "pruned and not listed.", "", *_sparsity_table(results), ""]
        if "e" in results:
            r = results["e"]
            L += ["### Global pruning: per-layer spread", "",
                  "One threshold over all prunable layers prunes layers with small weights "
                  "much more than layers with large ones. Published: per-layer sparsity from "
                  f"{published_global_spread()}.", "",
                  *table(["layer", "ours (e)", "published (approx.)"], "lrr", [
                      *([f"`{name}`", fmt(r["sparsity"].get(name)), f"~{value:.2f}"]
                        for name, value in pub.LAB2_GLOBAL_SPARSITY.items()),
                      ["**total**", fmt(r["total_sparsity"]), f"{pub.LAB2_GLOBAL_TOTAL:.4f}"],
                      ["range over layers", f"{min(r['sparsity'].values()):.4f} – "
                       f"{max(r['sparsity'].values()):.4f}",
                       f"~{min(pub.LAB2_GLOBAL_SPARSITY.values()):.2f} – "
                       f"~{max(pub.LAB2_GLOBAL_SPARSITY.values()):.2f}"]]), ""]

    L += report_tail(figures, "lab2", "part", [
        (f"({p})", r["_meta"], r["_meta"].get("wall_s", r.get("wall_s")))
        for p, r in results.items()],
        "Wall time: (a)/(b) the whole evaluation; (c)-(e) training plus testing summed over "
        "epochs (a resumed run counts each epoch once)." + throughput_note(results))
    return write_markdown(out_dir / "lab2.md", L)


def _shortfall_notes(results: dict[str, dict]) -> list[str]:
    """The shortfall bullets (:func:`~minitorch_compress.experiments.common.shortfall_notes`)
    of the full-size finetunes (c)-(e)."""
    return shortfall_notes([
        FinetuneRun(f"({p})", r["best_accuracy"], pub.LAB2[p], r["history"],
                    r.get("best_epoch"), r["epochs"])
        for p in FINETUNE_PARTS
        if (r := results.get(p)) is not None and not r["_meta"].get("smoke")])


def throughput_note(results: dict[str, dict]) -> str:
    """The sentence "Training speed over the epochs: (c) 44-331 img/s (median 236), ..."
    built from the JSON logs.

    A run's wall time depends on what else shared the machine and on the engine's version
    when each epoch ran (a resumed run may span both), so the spread is shown beside it."""
    spans = []
    for part, r in results.items():
        speeds = [e["train_img_per_s"] for e in r.get("log", []) if "train_img_per_s" in e]
        if speeds:
            spans.append(f"({part}) {min(speeds):.0f}–{max(speeds):.0f} img/s "
                         f"(median {float(np.median(speeds)):.0f})")
    if not spans:
        return ""
    return (" Training speed over the epochs, from each JSON's `log`: " + ", ".join(spans)
            + "; slow epochs shared the cores with other heavy processes, were paused while a "
              "benchmark ran, or predate the engine's speed-ups.")
