"""Renders ``lab3.md`` and its figures from the ``lab3_*.json`` result files."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from minitorch_compress import published as pub
from minitorch_compress.experiments.lab3_layout import BITS_B, BITS_QAT, SCRIPT
from minitorch_compress.reports.figures import plot_sparsity
from minitorch_compress.reports.format import (
    FinetuneRun,
    fmt,
    fmt_diff,
    history_table,
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

RESULT_NAMES = ("lab3_b", "lab3_b_symmetric", "lab3_c", "lab3_c_symmetric", "lab3_d",
                "lab3_d_symmetric", "lab3_d_naive", "lab3_e", "lab3_e_symmetric", "lab3_e_naive")


def _present(results: dict[str, dict[str, Any]], *names: str) -> list[tuple[str, dict]]:
    """(name, result) for each of `names` that has a result, in that order."""
    return [(name, results[name]) for name in names if name in results]


def _variant(name: str, result: dict[str, Any]) -> str:
    """Short label of a result file, e.g. "(c) asymmetric"."""
    part = name.split("_")[1]
    mode = "plain asymmetric" if name.endswith("_naive") else result.get("mode", "?")
    return f"({part}) {mode}"


def write_figures(out_dir: Path, results: dict[str, dict[str, Any]]) -> list[Path]:
    """Figures in ``out_dir/lab3/`` from the results present.

    Writes ``accuracy_vs_bits.png`` (test accuracy against bit width: (b) without finetuning,
    (d) before finetuning, (c)/(d) after, published dashed), ``per_epoch_<result>.png`` (test
    accuracy per epoch of each finetuning result) and ``sparsity_<result>.png`` for (e).

    Returns:
        The paths written.
    """
    fig_dir = out_dir / "lab3"
    fig_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    if any(n in results for n in RESULT_NAMES if not n.startswith("lab3_e")):
        written.append(_plot_bits(results, fig_dir / "accuracy_vs_bits.png"))
    for name, r in _present(results, "lab3_c", "lab3_c_symmetric", "lab3_d", "lab3_d_symmetric"):
        published = pub.LAB3_C if name.startswith("lab3_c") else pub.LAB3_D_AFTER
        path = fig_dir / f"per_epoch_{name[5:]}.png"
        plot_histories({f"{b} bits": r["history"][b] for b in r["history"]}, path,
                       f"Lab 3 {_variant(name, r)} QAT{smoke_tag(r)}",
                       published={f"{b} bits": v for b, v in published.items()})
        written.append(path)
    for name, r in _present(results, "lab3_e", "lab3_e_symmetric"):
        path = fig_dir / f"per_epoch_{name[5:]}.png"
        plot_histories({"4 bits, 80 % global": r["history"]}, path,
                       f"Lab 3 {_variant(name, r)}: prune + QAT{smoke_tag(r)}",
                       published={"4 bits, 80 % global": pub.LAB3_E},
                       reportable={"4 bits, 80 % global": [
                           e.get("eligible_for_best", True) for e in r.get("log", [])]})
        written.append(path)
        path = fig_dir / f"sparsity_{name[5:]}.png"
        plot_sparsity(r["sparsity"], path, f"Lab 3 {_variant(name, r)}: best model, total "
                      f"{r['total_sparsity']:.4f}{smoke_tag(r)}")
        written.append(path)
    return written


def _plot_bits(results: dict[str, dict[str, Any]], path: Path) -> Path:
    from matplotlib.figure import Figure  # bare Figure: no pyplot state (see plot_sparsity)

    fig = Figure(figsize=(9.5, 4.5))
    ax = fig.subplots()
    lines = [  # (label, {bits: accuracy}, style)
        *((f"{_variant(name, r)}, no finetuning{smoke_tag(r)}",
           {b: r["accuracy"][b] for b in BITS_B}, "o-")
          for name, r in _present(results, "lab3_b", "lab3_b_symmetric")),
        *((f"{_variant(name, r)}, before finetuning{smoke_tag(r)}", r["before"], "v:")
          for name, r in _present(results, "lab3_d", "lab3_d_symmetric")),
        *((f"(d) plain asymmetric on the sparse model{smoke_tag(r)}", r["before"], "x:")
          for _, r in _present(results, "lab3_d_naive")),
        *((f"{_variant(name, r)}, best after QAT{smoke_tag(r)}",
           r["best_accuracy" if name.startswith("lab3_c") else "after"], "s-")
          for name, r in _present(results, "lab3_c", "lab3_c_symmetric", "lab3_d",
                                  "lab3_d_symmetric"))]
    for label, accuracy, style in lines:
        bits = sorted(accuracy, key=int)
        ax.plot([int(b) for b in bits], [accuracy[b] for b in bits], style, label=label)
    for label, published in (("(c) published", pub.LAB3_C),
                             ("(d) published, after", pub.LAB3_D_AFTER)):
        bits = sorted(published, key=int)
        ax.plot([int(b) for b in bits], [published[b] for b in bits], "--", color="grey",
                marker="*" if label.startswith("(c)") else "d", lw=0.8, label=label)
    ax.axhline(pub.LAB3_FLOAT, color="black", lw=0.8, ls=":", label="float, published")
    if "lab3_b" in results:
        r = results["lab3_b"]
        ax.axhline(r["accuracy"]["float"], color="black", lw=0.8,
                   label=f"float, ours{smoke_tag(r)}")
    ax.set_xticks([2, 3, 4, 5, 6])
    ax.set_xlabel("bits of the body's weights")
    ax.set_ylabel("test accuracy")
    ax.set_ylim(0.0, 1.0)
    ax.set_title("Lab 3: test accuracy vs bit width")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return path


def _summary(results: dict[str, dict[str, Any]]) -> list[str]:
    rows = []  # (what, ours, published, result)
    for name, r in _present(results, "lab3_b", "lab3_b_symmetric"):
        rows.append((f"{_variant(name, r)}: float model", r["accuracy"]["float"],
                     pub.LAB3_FLOAT, r))
        rows += [(f"{_variant(name, r)}: body at {b} bits, no finetuning", r["accuracy"][b],
                  None, r) for b in BITS_B]
    for name, r in _present(results, "lab3_c", "lab3_c_symmetric"):
        rows += [(f"{_variant(name, r)}: QAT {b} bits (best)", r["best_accuracy"][b],
                  pub.LAB3_C[b], r) for b in finished(r)]
    for name, r in _present(results, "lab3_d", "lab3_d_symmetric"):
        rows += [(f"{_variant(name, r)}: sparse + {b} bits, after finetuning (best)",
                  r["after"][b], pub.LAB3_D_AFTER[b], r) for b in finished(r)]
    rows += [(f"{_variant(name, r)}: global 80 % + 4-bit QAT (best)", r["best_accuracy"],
              pub.LAB3_E, r) for name, r in _present(results, "lab3_e", "lab3_e_symmetric")]
    return table(["experiment", "ours", "published", "difference", "run"], "lrrrl",
                 ([what, fmt(ours), fmt(theirs), fmt_diff(ours, theirs), run_label(r["_meta"])]
                  for what, ours, theirs, r in rows))


def _shortfall_notes(results: dict[str, dict[str, Any]]) -> list[str]:
    """The shortfall bullets (:func:`~minitorch_compress.experiments.common.shortfall_notes`)
    of the full-size finetunes: (c) and (d) once per bit width, (e) once."""
    runs = []
    for part, published in (("c", pub.LAB3_C), ("d", pub.LAB3_D_AFTER)):
        for name, r in _present(results, f"lab3_{part}", f"lab3_{part}_symmetric"):
            if r["_meta"].get("smoke"):
                continue
            best = r["best_accuracy"] if part == "c" else r["after"]
            runs += [FinetuneRun(f"{_variant(name, r)} {b} bits", best[b], published[b],
                                 r["history"][b], r.get("best_epoch", {}).get(b), r["epochs"],
                                 _start_context(r, best[b], published[b]) if part == "d"
                                 else "")
                     for b in BITS_QAT if b in best]
    runs += [FinetuneRun(_variant(name, r), r["best_accuracy"], pub.LAB3_E, r["history"],
                         r.get("best_epoch"), r["epochs"])
             for name, r in _present(results, "lab3_e", "lab3_e_symmetric")
             if not r["_meta"].get("smoke")]
    return shortfall_notes(runs)


def _start_context(r: dict[str, Any], best: float, published: float) -> str:
    """For a (d) result `r`: its gain over the float sparse model it started from, beside the
    published gain over the published start (Lab 2 (c)); "" when the start is not recorded."""
    start = r.get("start", {}).get("float_accuracy")
    if start is None:
        return ""
    published_start = pub.LAB2["c"]
    ours, theirs = best - start, published - published_start
    comparison = ("so their quantized sparse model beats their float one by more than ours "
                  "does" if theirs > ours else
                  "so ours gains at least as much over its start as theirs does")
    return (f"Measured from where each run starts: ours is {ours:+.4f} over the float "
            f"80 %-sparse model it finetunes ({start:.4f}); the published figure is "
            f"{theirs:+.4f} over the published start (Lab 2 (c), "
            f"{published_start:.4f}), {comparison}. The published numbers do not say whether "
            "their 80 % mask stayed fixed through (d), as the spec asks and as ours did "
            "(sparsity of the best model in the (d) table)"
            + ("; a mask that regrows would explain a larger gain, but that is a reading, not "
               "a measurement." if theirs > ours else "."))


def _section_b(results: dict[str, dict[str, Any]]) -> list[str]:
    names = [n for n in ("lab3_b", "lab3_b_symmetric") if n in results]
    L = ["## (b) quantizing the body, no finetuning", ""]
    if not names:
        return L + ["_Not run yet: `python labs/lab3_quantization.py --part b` (and "
                    "`--symmetric`)._", ""]
    L += ["The 20 convs of the 9 residual blocks (shortcut convs included) compute with b-bit "
          "weights, one scale per weight tensor; the head conv and the final FC stay float. "
          "Asymmetric: 2^b levels from min(w) to max(w) (the course's formula). Symmetric: "
          "2^b - 1 levels k * max|w| / (2^(b-1) - 1) around an exact 0. The spec publishes "
          "no number for (b) except the float model.", "",
          *table(["bits", *(_variant(n, results[n]) for n in names), "published",
                  "max non-zero levels per layer"], "l" + "r" * (len(names) + 1) + "l",
                 ([b, *(fmt(results[n]["accuracy"][b]) for n in names),
                   fmt(pub.LAB3_FLOAT) if b == "float" else "—",
                   " / ".join(str(results[n].get("max_nonzero_levels", {}).get(b, "—"))
                              for n in names) if b != "float" else "—"]
                  for b in ("float", *BITS_B))), ""]
    for n in names:
        L += [f"{_variant(n, results[n])}: {run_label(results[n]['_meta'])}, "
              f"{results[n].get('test_images', '?')} test images.", ""]
    L += ["Reading the table: the asymmetric quantizer has 2^b levels spread over [min(w), "
          "max(w)]; the symmetric one has 2^b - 1 levels over [-max|w|, max|w|], so at the "
          "same b it has one level fewer and wastes part of its range when min(w) != "
          "-max(w). At 2 bits the symmetric levels are -s, 0, s with s = max|w|: every weight "
          "below max|w| / 2 in magnitude computes as 0. The asymmetric 2-bit levels are "
          "min(w), min(w) + alpha/3, min(w) + 2 alpha/3, max(w): in general none of them is 0, "
          "and every weight moves by up to alpha / 6. \"max non-zero levels\" is the largest "
          "number of distinct non-zero values in one layer (at most 2^b, resp. 2^b - 1); (c) "
          "shows how much finetuning with the quantizer in the loop recovers.", ""]
    return L


def finished(r: dict[str, Any]) -> tuple[str, ...]:
    """The bit widths a (c)/(d) result holds: all three, or those a partial file finished."""
    return tuple(r.get("bits_finished", BITS_QAT))


def partial_note(r: dict[str, Any]) -> list[str]:
    """A line saying a (c)/(d) result is partial, or nothing."""
    if not r.get("partial"):
        return []
    pending = [b for b in BITS_QAT if b not in finished(r)]
    return [f"**Partial:** {', '.join(finished(r))} bits finished, {', '.join(pending)} bits "
            "still to run (the same command with `--resume` and without `--bits` runs them).", ""]


def _history_table(r: dict[str, Any], keys: tuple[str, ...]) -> list[str]:
    """"Test accuracy per epoch:" and its table, one column per bit width in `keys`."""
    return ["", "Test accuracy per epoch:", "",
            *history_table({f"{k} bits": r["history"][k] for k in keys}), ""]


def _section(results: dict[str, dict[str, Any]], part: str, heading: str, not_run: str,
             intro: str, per_variant: Callable[[str, dict[str, Any]], list[str]]) -> list[str]:
    """The report section of a finetuning part: "Not run yet" (saying how to run it), or the
    intro and, for each quantizer variant present, a sub-heading with its run label followed
    by ``per_variant(name, result)``."""
    L = [f"## {heading}", ""]
    names = [n for n in (f"lab3_{part}", f"lab3_{part}_symmetric") if n in results]
    if not names:
        return L + [f"_Not run yet: {not_run}._", ""]
    L += [intro, ""]
    for n in names:
        r = results[n]
        L += [f"### {_variant(n, r)} — {run_label(r['_meta'])}", "", *partial_note(r),
              *per_variant(n, r)]
    return L


def _section_c(results: dict[str, dict[str, Any]]) -> list[str]:
    def variant(name: str, r: dict[str, Any]) -> list[str]:
        b_result = results.get("lab3_b_symmetric" if name.endswith("symmetric") else "lab3_b")
        return table(
            ["bits", "before (b)", "best", "best epoch", "final", "published", "difference"],
            "lrrrrrr", ([b, fmt(b_result["accuracy"][b] if b_result else None),
                         fmt(r["best_accuracy"][b]), r.get("best_epoch", {}).get(b, "—"),
                         fmt(r.get("final_accuracy", {}).get(b)), fmt(pub.LAB3_C[b]),
                         fmt_diff(r["best_accuracy"][b], pub.LAB3_C[b])]
                        for b in finished(r))) + _history_table(r, finished(r))

    return _section(
        results, "c", "(c) quantization-aware finetuning",
        "`python labs/lab3_quantization.py --part c` (20 epochs per bit width)",
        f"The recipe ({recipe()}, test "
        "after every epoch, keep the best) with the STE quantizer in the forward: every test "
        "accuracy below is that of the quantized weights; the float weights receive the "
        "gradient unchanged. \"before\" is (b)'s number for the same quantizer.", variant)


def _section_d(results: dict[str, dict[str, Any]]) -> list[str]:
    def variant(_: str, r: dict[str, Any]) -> list[str]:
        start = r.get("start", {})
        L = [f"Started from {start.get('source', '?')}: float accuracy "
             f"{fmt(start.get('float_accuracy'))}, sparsity {fmt(start.get('sparsity'))}.", "",
             *table(["bits", "before", "published before", "after (best)", "published after",
                     "difference", "final", "sparsity", "quantized", "max non-zero levels"],
                    "l" + "r" * 9,
                    ([b, fmt(r["before"][b]), f"~{pub.LAB3_D_BEFORE_APPROX:.2f}",
                      fmt(r["after"][b]), fmt(pub.LAB3_D_AFTER[b]),
                      fmt_diff(r["after"][b], pub.LAB3_D_AFTER[b]),
                      fmt(r.get("final_accuracy", {}).get(b)), fmt(r["sparsity"][b]),
                      fmt(r.get("quantized_sparsity", {}).get(b)),
                      r.get("max_nonzero_levels", {}).get(b, "—")] for b in finished(r)))]
        return L + _history_table(r, finished(r))

    return _section(
        results, "d", "(d) 80 %-sparse and quantized",
        "`python labs/lab2_pruning.py --part c`, then `python labs/lab3_quantization.py "
        "--part d`",
        "Start: Lab 2 (c)'s best 80 %-sparse model. The quantizer treats exact zeros as "
        "pruned (mode \"masked\": min/max and the levels come from the non-zero weights, "
        "zeros stay exactly 0; the symmetric quantizer keeps zeros by construction) and the "
        "80 % mask is fixed during the finetuning (pruned float weights and their momentum "
        "are zeroed after every step). \"sparsity\" is the fraction of exactly-zero float "
        "weights over the prunable layers of the best model; \"quantized\" counts the "
        "weights the layers compute with (a non-zero weight may round to a level that is "
        "exactly 0, so it can only be higher).", variant)


def _section_naive(results: dict[str, dict[str, Any]]) -> list[str]:
    L = [f"## Why the published (d) starts at ~{pub.LAB3_D_BEFORE_APPROX:.2f} and (e) ends at "
         f"{fmt(pub.LAB3_E)}", "",
         f"The published solution reports about {pub.LAB3_D_BEFORE_APPROX:.2f} — chance on 10 "
         "classes — for the 80 %-"
         f"sparse model right after quantization, and {fmt(pub.LAB3_E)} for (e), well below "
         f"the float sparse models of Lab 2 ({fmt(pub.LAB2['c'])} / {fmt(pub.LAB2['e'])}). "
         + _naive_reading(results) + " The plain asymmetric quantizer takes alpha = max(w) - "
         "min(w) and beta = min(w) over *all* entries, zeros included, and rounds every entry "
         "to the nearest of the 2^b levels beta + k alpha / (2^b - 1). A level falls exactly "
         "on 0 only by accident, so the 80 % pruned weights of a layer all become the same "
         "non-zero value, the level nearest 0, up to half a step alpha / (2 (2^b - 1)) away: "
         "for a range near [-m, m] that is about m / 15 at 4 bits, m / 7 at 3 bits and m / 3 "
         "at 2 bits, where m is the layer's largest weight. The pruned model keeps only its "
         "largest 20 % of weights, so this offset is of the order of the surviving weights "
         "themselves, added to four fifths of every kernel: the quantized model is no longer "
         "sparse and no longer the trained network. The fix is the mask-aware quantizer: "
         "scale over the non-zero weights only and keep zeros at 0.", ""]
    if "lab3_d_naive" not in results:
        L += ["_Our numbers for both quantizers: run `python labs/lab3_quantization.py "
              "--part d --naive-quantizer` (evaluation only)._", ""]
        return L + _naive_e(results)
    r = results["lab3_d_naive"]
    start = r.get("start", {})
    if "after" in r:
        L += partial_note(r) + _naive_finetune_table(results)
    L += [f"Our measurement — {run_label(r['_meta'])}, {r.get('test_images', '?')} test "
          f"images, start: {start.get('source', '?')} (float accuracy "
          f"{fmt(start.get('float_accuracy'))}, sparsity {fmt(start.get('sparsity'))}), no "
          "finetuning:", ""]
    L += table(["bits", "plain asymmetric (the mistake)", "mask-aware", "published",
                "zeros destroyed", "sparsity computed with, plain asymmetric"], "lrrrrr",
               ([b, fmt(r["before"][b]), fmt(r["masked_before"][b]),
                 f"~{pub.LAB3_D_BEFORE_APPROX:.2f}",
                 _destroyed(r, b), fmt(r["quantized_sparsity"][b])] for b in finished(r)))
    L += ["", "(\"zeros destroyed\": exact zeros of the quantized (body) layers that the "
          "quantizer moves to a non-zero level, `zeros_destroyed`; the sparsity column counts "
          "the weights the prunable layers compute with.)", ""]
    return L + _naive_e(results)


def _destroyed(r: dict[str, Any], b: str) -> str:
    """"1,234 of 5,678 (21.7%)": the exact zeros the plain quantizer moves off 0 at `b` bits."""
    zeros, gone = r.get("zeros") or 0, r["zeros_destroyed"][b]
    return f"{gone:,} of {zeros:,}" + (f" ({gone / zeros:.1%})" if zeros else "")


def _naive_reading(results: dict[str, dict[str, Any]]) -> str:
    """Which of the two published figures the plain asymmetric quantizer reproduces, as far
    as our measurements go (the tables below)."""
    d, e = results.get("lab3_d_naive"), results.get("lab3_e_naive")
    d_chance = (d is not None and all(abs(d["before"][b] - pub.LAB3_D_BEFORE_APPROX)
                                      <= 2 * REPRODUCES for b in finished(d)))
    e_match = e is not None and abs(e["best_accuracy"] - pub.LAB3_E) <= REPRODUCES
    first = ("The first is what the plain asymmetric quantizer gives when it is applied to "
             "pruned weights (measured below)." if d_chance else
             "Whether the plain asymmetric quantizer explains the first is measured below.")
    if e is None:
        return first + " The second may be the same mistake (not measured yet)."
    return first + (" So is the second (measured below)." if e_match else
                    f" The second is not: rerun with that quantizer, (e) ends at "
                    f"{fmt(e['best_accuracy'])}, {fmt_diff(e['best_accuracy'], pub.LAB3_E)} "
                    "from it (measured below).")


#: the plain-quantizer rerun "reproduces" a published figure when it lands this close to it
REPRODUCES = 0.01


def share_explained(naive: float, masked: float, published: float) -> float | None:
    """How much of the gap between our mask-aware result and the published figure the
    plain-quantizer rerun covers: 1 when it lands on the published figure, 0 when it lands
    on ours, negative when it moves away; None when there is no gap to explain."""
    gap = published - masked
    return None if abs(gap) < 1e-12 else (naive - masked) / gap


def naive_verdict(naive: float, masked: float, published: float) -> str:
    """What the plain-quantizer rerun says about a published figure, from the numbers."""
    share = share_explained(naive, masked, published)
    if abs(naive - published) <= REPRODUCES:
        return (f"it reproduces the published {fmt(published)} (within {REPRODUCES:g}), "
                "which supports reading the published figure as that mistake")
    if share is None:
        return "ours already matches the published figure"
    if share < 0:
        return (f"it lands at {fmt(naive)}, on the other side of our mask-aware {fmt(masked)} "
                f"from the published {fmt(published)}, so that mistake does not explain it")
    if share > 1:  # moved the published figure's way, but past it
        past = (f"it lands at {fmt(naive)}, past the published {fmt(published)} by "
                f"{abs(naive - published):.4f}, ")
        if abs(naive - published) < abs(masked - published):
            return past + (f"closer to it than our mask-aware {fmt(masked)} "
                           f"({abs(masked - published):.4f} away): the mistake explains "
                           "most of that gap, overshooting it")
        return past + (f"further from it than our mask-aware {fmt(masked)} "
                       f"({abs(masked - published):.4f} away), so that mistake does not "
                       "explain it either")
    return (f"it covers {share:.0%} of the gap from our mask-aware {fmt(masked)} to the "
            f"published {fmt(published)}, so that mistake alone does not explain it")


def _naive_finetune_table(results: dict[str, dict[str, Any]]) -> list[str]:
    """(d) finetuned with the plain asymmetric quantizer, beside the published figures and
    our mask-aware runs, with what the comparison shows (computed)."""
    naive, masked = results["lab3_d_naive"], results.get("lab3_d")
    L = [f"Measured: the same (d) finetuning with the plain asymmetric quantizer "
         f"({run_label(naive['_meta'])}; mask on the float weights fixed as before):", ""]
    ours = {b: masked["after"].get(b) if masked else None for b in finished(naive)}
    L += table(["bits", "published before", "plain before", "published after", "plain after",
                "mask-aware after (ours)", "computed-with sparsity, plain"], "lrrrrrr",
               ([b, f"~{pub.LAB3_D_BEFORE_APPROX:.2f}", fmt(naive["before"][b]),
                 fmt(pub.LAB3_D_AFTER[b]), fmt(naive["after"][b]), fmt(ours[b]),
                 fmt(naive["quantized_sparsity"][b])] for b in ours))
    verdicts = [f"at {b} bits " + naive_verdict(naive["after"][b], mine, pub.LAB3_D_AFTER[b])
                for b, mine in ours.items() if mine is not None]
    if verdicts:
        L += ["", "For (d) after finetuning, the plain-quantizer rerun: " + "; ".join(verdicts)
              + "."]
    return L + [""]


def _naive_e(results: dict[str, dict[str, Any]]) -> list[str]:
    """(e) with the plain asymmetric quantizer: the rerun beside ours and the published
    figure, with what it shows (computed); without the rerun, the reading it would test."""
    e_naive = results.get("lab3_e_naive")
    if e_naive is None:
        return ["In (e) the same mistake would act on every forward of the QAT run: the pruned "
                "float weights stay 0 but the network computes with them at that non-zero "
                "level, a fixed offset on 80 % of the weights that the training has to work "
                f"against; we read the published {fmt(pub.LAB3_E)} as that, but until "
                "`python labs/lab3_quantization.py --part e --naive-quantizer` has run this is "
                "an interpretation of its figures, not a measurement.", ""]
    e_ours = results.get("lab3_e", {}).get("best_accuracy")
    L = [f"Measured: (e) rerun with the plain asymmetric quantizer ({run_label(e_naive['_meta'])}"
         "; the same global iterative pruning schedule):", "",
         *table(["(e)", "published", "plain asymmetric (rerun)", "mask-aware (ours)",
                 "computed-with sparsity, plain"], "lrrrr",
                [["best", fmt(pub.LAB3_E), fmt(e_naive["best_accuracy"]), fmt(e_ours),
                  fmt(e_naive.get("quantized_total_sparsity"))]])]
    if e_ours is not None:
        L += ["", "For (e), the plain-quantizer rerun: "
              + naive_verdict(e_naive["best_accuracy"], e_ours, pub.LAB3_E) + "."]
    return L + [""]


def _section_e(results: dict[str, dict[str, Any]]) -> list[str]:
    def variant(_: str, r: dict[str, Any]) -> list[str]:
        published = {layer: pub.LAB2_GLOBAL_SPARSITY.get(layer) for layer in r["sparsity"]}
        per_epoch = r.get("sparsity_per_epoch") or [None] * len(r["history"])
        return [
            *table(["best", "best epoch", "final", "published", "difference", "total sparsity",
                    "quantized", "P"], "r" * 8,
                   [[fmt(r["best_accuracy"]), r.get("best_epoch", "—"),
                     fmt(r["final_accuracy"]), fmt(pub.LAB3_E),
                     fmt_diff(r["best_accuracy"], pub.LAB3_E), fmt(r["total_sparsity"]),
                     fmt(r.get("quantized_total_sparsity")), r.get("prune_epochs", "—")]]),
            "", f"Per-layer sparsity of the best model (published: from "
            f"{published_global_spread()}):", "",
            *table(["layer", "sparsity", "published (approx.)"], "lrr", [
                *([f"`{layer}`", fmt(value), "—" if published[layer] is None
                   else f"~{published[layer]:.2f}"] for layer, value in r["sparsity"].items()),
                ["**total**", f"**{fmt(r['total_sparsity'])}**",
                 f"{pub.LAB2_GLOBAL_TOTAL:.4f}"]]),
            "", "Test accuracy and sparsity per epoch:", "",
            *table(["epoch", "accuracy", "sparsity"], "rrr",
                   ([e + 1, fmt(acc), fmt(s)] for e, (acc, s)
                    in enumerate(zip(r["history"], per_epoch, strict=False)))), ""]

    return _section(
        results, "e", "(e) global iterative pruning to 80 % with 4-bit QAT",
        "`python labs/lab3_quantization.py --part e` (20 epochs)",
        "From the pretrained model: before epoch e = 1..P the prunable layers are pruned "
        "with one global threshold to 80 % * e / P (P = 10 in the recipe, max(1, N // 2) "
        "for a smoke run of N < 20 epochs), pruned weights may regrow until the last "
        "pruning step, then the mask is fixed; the body computes with 4-bit weights "
        "throughout. Only epochs with the final mask in force can be the best one. Note "
        "that while weights regrow the mask-aware quantizer sees them as kept: a regrown "
        "weight, however small, rounds to the level nearest 0 of the non-zero range; from "
        "the last pruning step on, pruned weights are exactly 0 and stay 0.", variant)


def write_report(out_dir: str | Path) -> Path:
    """Regenerate ``out_dir/lab3.md`` and the figures from the ``lab3_*.json`` present.

    Returns:
        The path of the report.
    """
    out_dir = Path(out_dir)
    results = {n: r for n in RESULT_NAMES if (r := read_result(out_dir, n)) is not None}
    figures = write_figures(out_dir, results) if results else []
    smoke = [n for n, r in results.items() if r["_meta"].get("smoke")]
    L = report_head("Lab 3 — fixed-point quantization with a straight-through estimator",
                    SCRIPT, "lab3", bool(results), ", ".join(f"`{n}.json`" for n in smoke))
    if results:
        L += ["## Summary", "", *_summary(results), ""]
        if notes := _shortfall_notes(results):
            L += [*notes, ""]
    L += _section_b(results) + _section_c(results) + _section_d(results)
    L += _section_naive(results) + _section_e(results)
    L += report_tail(figures, "lab3", "result", [
        (f"`{n}.json`", r["_meta"], r["_meta"].get("wall_s")) for n, r in results.items()],
        "Wall time: evaluations, the whole part; finetuning, training plus testing summed "
        "over epochs and bit widths (a resumed run counts each epoch once).")
    return write_markdown(out_dir / "lab3.md", L)
