"""Lab 5 (a)'s section of ``lab5.md`` and its figures, from ``lab5_a.json``: mixed precision
against uniform bits at equal ``.mtc`` file size, and the verdict on the course's claim 1.10,
chosen by the numbers.

A pure function of the result file: it imports no kernel, model or training code.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from minitorch_compress import published as pub
from minitorch_compress.experiments.lab5_layout import TARGETS
from minitorch_compress.reports.format import SEED_NOISE, fmt, run_label, save_figure, table

#: what the kernels do with a layer's bit width (the latency side of the claim)
LATENCY = (
    "Latency does not depend on the widths here, so the latency side of the claim cannot "
    "favour mixed precision on these kernels: the float path computes with the dequantized "
    "float32 weights (the quantizer's levels), the same convolution at every width; the "
    "integer path (`models/int8_resnet.py`) stores each layer's weights on its grid of at "
    "most 8 bits as int8 codes and runs every such layer on the same int8 kernel, so 2, 3 or "
    "8 bits cost the same time. Fewer bits change the file, not the arithmetic.")


def comparison(record: dict[str, Any]) -> dict[str, Any]:
    """One target against its uniform model: {"gain" (mixed best - uniform accuracy),
    "bytes_saved" (uniform file - mixed file), "outcome": "better", "same" (within
    `SEED_NOISE`), "worse" or "larger" (the mixed file exceeds the budget: no comparison at
    equal size)}."""
    uniform = record["uniform"]
    gain = record["best_accuracy"] - uniform["accuracy"]
    saved = uniform["bytes"] - record["model_file"]["bytes"]
    if saved < 0:
        outcome = "larger"
    elif gain >= SEED_NOISE:
        outcome = "better"
    elif gain <= -SEED_NOISE:
        outcome = "worse"
    else:
        outcome = "same"
    return {"gain": gain, "bytes_saved": saved, "outcome": outcome}


def _describe(target: str, record: dict[str, Any]) -> str:
    uniform = record["uniform"]
    c = comparison(record)
    head = (f"{target}: the mixed model ({record['model_file']['bytes']:,} bytes) scores "
            f"{fmt(record['best_accuracy'])} against {fmt(uniform['accuracy'])} for uniform "
            f"{uniform['bits']} bits ({uniform['bytes']:,} bytes)")
    return head + {
        "better": f", {c['gain'] * 100:+.2f} points at a file {c['bytes_saved']:,} bytes smaller",
        "same": f", {c['gain'] * 100:+.2f} points: within {SEED_NOISE * 100:.1f} points, what "
                "a different seed moves a finetune",
        "worse": f", {c['gain'] * 100:+.2f} points: worse at equal size",
        "larger": f", but its file is {-c['bytes_saved']:,} bytes LARGER than the uniform "
                  "model's after finetuning: no comparison at equal size",
    }[c["outcome"]]


def claim_1_10(result: dict[str, Any] | None) -> tuple[str, str]:
    """(what we measured, verdict) for claim 1.10; the verdict is "agrees" (every finished
    target's mixed model beats its uniform model by at least `SEED_NOISE` at a file no
    larger), "in part" (some do), "disagrees" (none does) or "not measured" (no target
    finished). Latency is stated, not judged (`LATENCY`: it does not depend on the widths)."""
    targets = (result or {}).get("targets") or {}
    if not targets:
        return ("_Not measured yet: `python labs/lab5_claims.py --part a`._", "not measured")
    outcomes = {t: comparison(r)["outcome"] for t, r in targets.items()}
    text = "; ".join(_describe(t, r) for t, r in targets.items()) + ". "
    better = [t for t, o in outcomes.items() if o == "better"]
    if len(better) == len(outcomes):
        verdict, said = "agrees", "Mixed precision is better at equal file size at every size."
    elif better:
        verdict, said = "in part", (f"Better at equal size for {', '.join(better)} only.")
    else:
        verdict, said = "disagrees", "Mixed precision is not better at equal file size here."
    return text + said + " " + LATENCY, verdict


def moonshot_lines(result: dict[str, Any]) -> list[str]:
    """Issue #38's moonshot, per dense target: no larger than the uniform file, at or above
    the accuracy of the uniform model one bit wider."""
    lines = []
    for target, record in result.get("targets", {}).items():
        wider = record["uniform"].get("next")
        if wider is None:
            continue
        reached = record["model_file"]["bytes"] <= record["uniform"]["bytes"] and \
            record["best_accuracy"] >= wider["accuracy"]
        lines.append(
            f"* {target}: no larger than `{record['uniform']['name']}.mtc` "
            f"({record['uniform']['bytes']:,} bytes) at or above `{wider['name']}`'s "
            f"{fmt(wider['accuracy'])}: the mixed model has {record['model_file']['bytes']:,} "
            f"bytes and {fmt(record['best_accuracy'])}, so it "
            + ("**reaches** it." if reached else "does not reach it."))
    return lines


def _bits_table(result: dict[str, Any]) -> list[str]:
    targets = result["targets"]
    layers = list(next(iter(targets.values()))["bits"])
    rows = [[f"`{layer}`", *[str(targets[t]["bits"][layer]) for t in targets]]
            for layer in layers]
    rows.append(["mean (over layers)", *[f"{sum(targets[t]['bits'].values()) / len(layers):.2f}"
                                         for t in targets]])
    return table(["layer", *targets], "l" + "r" * len(targets), rows)


def _sensitivity_table(start: str, s: dict[str, Any]) -> list[str]:
    widths = s["bit_menu"]
    L = [f"Start: **{start}** ({s['mode']} quantizer); float loss {s['float']['loss']:.4f}, "
         f"accuracy {fmt(s['float']['accuracy'])} on {s['images']:,} training images. Cells: "
         "loss increase / accuracy with that layer alone at b bits, the others float.", ""]
    L += table(["layer", *[f"{b} bits" for b in widths]], "l" + "r" * len(widths),
               ([f"`{layer}`", *[f"{row[str(b)]['loss_increase']:+.3f} / "
                                 f"{row[str(b)]['accuracy']:.3f}" for b in widths]]
                for layer, row in s["layers"].items()))
    L += ["", f"Each layer's bytes in the `.mtc` file at each width ({start} start; the rest of "
          "the file: " + ", ".join(f"{s['rest_bytes'][str(b)]:,}" for b in widths)
          + " bytes at these widths):", ""]
    L += table(["layer", *[f"{b} bits" for b in widths]], "l" + "r" * len(widths),
               ([f"`{layer}`", *[f"{s['bytes'][layer][str(b)]:,}" for b in widths]]
                for layer in s["layers"]))
    return L


def section(result: dict[str, Any]) -> list[str]:
    """The markdown lines of lab5.md's part (a)."""
    meta = result["_meta"]
    protocol = result["protocol"]
    text, verdict = claim_1_10(result)
    claim, answer = pub.COURSE_CLAIMS["1.10"]
    targets = result.get("targets", {})
    settings = result["settings"]
    L = ["## (a) Mixed precision (claim 1.10)", ""]
    if meta.get("smoke"):
        L += [f"> **Smoke result**: {run_label(meta)}. Its numbers mean nothing.", ""]
    L += [f"> {claim} (the course's answer: {'True' if answer else 'False'})", "",
          f"{text} **Verdict: {verdict}.**", ""]
    if targets:
        L += ["### Mixed vs uniform at equal file size", "",
              *table(["target", "uniform model", "its bytes", "its accuracy (best)",
                      "mixed bytes", "within budget", "mixed before finetuning",
                      "mixed best (epoch)", "from the file", "difference"],
                     "llrrrlrrrr",
                     ([t, f"`{r['uniform']['name']}`", f"{r['uniform']['bytes']:,}",
                       fmt(r["uniform"]["accuracy"]), f"{r['model_file']['bytes']:,}",
                       "yes" if r["within_budget"] else "**no**", fmt(r["before"]),
                       f"{fmt(r['best_accuracy'])} ({r['best_epoch']})",
                       fmt(r["file_accuracy"]),
                       f"{(r['best_accuracy'] - r['uniform']['accuracy']) * 100:+.2f} pt"]
                      for t, r in targets.items())), "",
              "Bytes are the real `.mtc` files: the uniform models' committed files in "
              "`results/models/`, the mixed models' files written after their finetune "
              "(`results/models/lab5_a_<target>.mtc`), read back and evaluated from the file "
              "(\"from the file\"). Accuracies are best of run on the test set, as in Lab 3.",
              "", "### The moonshot (issue #38)", "", *moonshot_lines(result), "",
              "### The widths chosen", "", *_bits_table(result), "",
              *table(["target", "budget (bytes)", "aimed at (budget less margin)",
                      "layers' bytes (measured per layer)", "file before finetuning",
                      "file after", "summed loss increase"], "lrrrrrr",
                     ([t, f"{r['budget_bytes']:,}", f"{r['budget_bytes'] - r['margin_bytes']:,}",
                       f"{r['layer_bytes']:,}", f"{r['before_file_bytes']:,}",
                       f"{r['model_file']['bytes']:,}", f"{r['loss_increase_sum']:.3f}"]
                      for t, r in targets.items())), ""]
    L += ["### How it was measured", "",
          f"* **Layers.** {protocol['layers'][0].upper()}{protocol['layers'][1:]}.",
          f"* **Sensitivity.** {protocol['sensitivity'].capitalize()}: "
          f"{settings['sensitivity_images']:,} images (seed {settings['seed']}). These are "
          "images the pretrained model was trained on, so its losses there are low; what the "
          "allocation uses is how much each layer's quantization raises them.",
          "* **Bytes.** Each layer's bytes at each width are measured, not estimated: the "
          "start model saved with every body conv at b bits, each layer's section read from "
          "the file (a tensor is coded on its own, so its bytes do not depend on the others' "
          "widths). The rest of the file (header, batch norm, head conv, FC) is the file "
          "minus those sections.",
          f"* **Allocation.** Widths from {{{', '.join(map(str, protocol['bit_menu']))}}}; "
          f"{protocol['allocation']}, minimising {protocol['penalty']}. The budget is the "
          f"uniform model's committed file less {protocol['budget_margin']:.0%}: a finetune "
          "moves the Huffman-coded sizes (the uniform Lab 3 files moved by -0.1 % to +0.9 % "
          "from before to after theirs). The start model's file at the chosen widths is "
          "written and measured before finetuning; if it exceeds the aim the knapsack is "
          "rerun with that much less.",
          f"* **Finetune.** {protocol['finetune'][0].upper()}{protocol['finetune'][1:]}: "
          f"{settings['epochs']} epoch{'s' if settings['epochs'] != 1 else ''}, "
          f"{settings['train_images']:,} training and {settings['test_images']:,} test images.",
          ""]
    if result.get("sensitivity"):
        L += ["### Per-layer sensitivity", ""]
        for start, s in result["sensitivity"].items():
            L += [*_sensitivity_table(start, s), ""]
    return L


def write_figures(out_dir: Path, result: dict[str, Any]) -> list[Path]:
    """``lab5/sensitivity.png`` (loss increase, layers x widths, one panel per start) and
    ``lab5/mixed_vs_uniform.png`` (test accuracy vs file bytes, uniform and mixed models)."""
    import numpy as np
    from matplotlib.colors import LogNorm
    from matplotlib.figure import Figure  # bare Figure: no pyplot state

    smoke = "[SMOKE] " if result["_meta"].get("smoke") else ""
    paths = []
    starts = result.get("sensitivity", {})
    if starts:
        fig = Figure(figsize=(5 * len(starts), 6))
        axes = np.atleast_1d(fig.subplots(1, len(starts)))
        for ax, (start, s) in zip(axes, starts.items(), strict=True):
            layers = list(s["layers"])
            widths = s["bit_menu"]
            grid = np.array([[max(s["layers"][n][str(b)]["loss_increase"], 1e-4)
                              for b in widths] for n in layers])
            image = ax.imshow(grid, aspect="auto", cmap="viridis", norm=LogNorm(1e-4, None))
            ax.set_xticks(range(len(widths)), [str(b) for b in widths])
            ax.set_yticks(range(len(layers)), [n.removeprefix("body_op.").removesuffix(".0.conv")
                                               for n in layers], fontsize=7)
            ax.set_xlabel("bits (this layer alone)")
            ax.set_title(f"{smoke}{start} start: loss increase", fontsize=9)
            fig.colorbar(image, ax=ax, fraction=0.05)
        paths.append(save_figure(fig, Path(out_dir) / "lab5" / "sensitivity.png"))
    fig = Figure(figsize=(7, 4.5))
    ax = fig.subplots()
    for lab3, label, color in (("lab3_c", "uniform, dense (Lab 3 (c))", "C0"),
                               ("lab3_d", "uniform, 80 % sparse (Lab 3 (d))", "C1")):
        models = sorted((m for m in result.get("uniform_models", [])
                         if m["name"].startswith(lab3)), key=lambda m: m["bytes"])
        ax.plot([m["bytes"] / 1e3 for m in models], [m["accuracy"] for m in models],
                marker="o", color=color, label=label)
        for m in models:
            ax.annotate(f"{m['bits']} bits", (m["bytes"] / 1e3, m["accuracy"]), fontsize=7,
                        textcoords="offset points", xytext=(4, -10))
    for target, record in result.get("targets", {}).items():
        color = "C0" if TARGETS[target]["start"] == "dense" else "C1"
        ax.plot([record["model_file"]["bytes"] / 1e3], [record["best_accuracy"]], "*", ms=13,
                color=color, markeredgecolor="black")
        ax.annotate(f"mixed {target}", (record["model_file"]["bytes"] / 1e3,
                                        record["best_accuracy"]), fontsize=8,
                    textcoords="offset points", xytext=(5, 4))
    ax.plot([], [], "*", ms=10, color="gray", markeredgecolor="black", label="mixed precision")
    ax.set_xlabel(".mtc file (KB)")
    ax.set_ylabel("test accuracy (best of run)")
    ax.set_title(f"{smoke}Mixed vs uniform bits at equal file size")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    paths.append(save_figure(fig, Path(out_dir) / "lab5" / "mixed_vs_uniform.png"))
    return paths
