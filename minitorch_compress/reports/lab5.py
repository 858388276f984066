"""Renders ``lab5.md`` and its figures from ``lab5_a.json`` (mixed precision, claim 1.10:
`reports.lab5_mixed`) and ``lab5_b.json`` (early exit on ResNet-20, claim 1.8), each verdict
chosen by the numbers.

A pure function of the result file: it imports no kernel, model or training code.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from minitorch_compress import published as pub
from minitorch_compress.experiments.lab5_layout import SCRIPT
from minitorch_compress.reports import lab5_mixed
from minitorch_compress.reports.format import (
    fmt,
    report_tail,
    run_label,
    save_figure,
    table,
    write_markdown,
)
from minitorch_compress.results import read_result

#: an operating point must save at least this fraction of the MACs to count as "effective"
EFFECTIVE_SAVING = 0.10
#: ... and, where its speed was measured, run at least this much faster than the full model
#: at batch 100 (the claim is about cost: MACs saved but not time saved do not count)
EFFECTIVE_SPEEDUP = 1.05
#: the first stage's exits (after blocks 0..2, 16 channels at 32x32): "an early stage"
EARLY_EXITS = (0, 1, 2)
#: at least this fraction of the images must leave there for early exit to "identify easy
#: data at an early stage" (a handful of images does not)
EARLY_SHARE = 0.05
#: issue #38's moonshot: the operating point saves at least this fraction of the MACs
MOONSHOT_SAVING = 0.40


def _early_share(point: dict[str, Any]) -> tuple[float, float | None]:
    """(fraction of the images leaving at the first stage, their accuracy) at a point."""
    share = sum(point["exit_fractions"][e] for e in EARLY_EXITS)
    if share == 0:
        return 0.0, None
    right = sum(point["exit_fractions"][e] * (point["exit_accuracy"][e] or 0.0)
                for e in EARLY_EXITS)
    return share, right / share


def claim_1_8(result: dict[str, Any] | None) -> tuple[str, str]:
    """(what we measured, verdict) for claim 1.8; the verdict is "agrees", "in part",
    "disagrees" or "not measured", from three measured parts of the claim: effective (the
    operating point saves >= `EFFECTIVE_SAVING` of the MACs within the tolerance and, where
    its speed was measured, runs >= `EFFECTIVE_SPEEDUP` the full model at batch 100), overcomes
    overthinking (the policy rescues images the final head gets wrong) and identifies easy
    data early (at least `EARLY_SHARE` of the images leave in the first stage, classified
    better than average). Overfitting is not judged (see `_overfitting`).
    """
    if result is None:
        return ("_Not measured yet: `python labs/lab5_claims.py --part b`._", "not measured")
    tolerance = result["protocol"]["tolerance"]
    last = result["exits"][-1]
    point = result["operating_point"]
    overthinking = (f"{last['destructive']:.2%} of the test images are right at an earlier "
                    f"exit and wrong at the final head (SDN's destructive overthinking; "
                    f"{result['destructive_errors']} of its {result['final_errors']} errors)")
    if point is None:
        return (f"No threshold stays within {tolerance * 100:.1f} points of the full model "
                f"({fmt(result['float_accuracy'])}); {overthinking}. Early exit is not "
                "effective here.", "disagrees")
    share, early_accuracy = _early_share(point)
    timed = (result.get("speed") or {}).get("100")
    effective = point["saving"] >= EFFECTIVE_SAVING and (
        timed is None or timed["speedup"] >= EFFECTIVE_SPEEDUP)
    rescues = point["rescued"] > 0
    easy_first = (share >= EARLY_SHARE and early_accuracy is not None
                  and early_accuracy > point["accuracy"])
    text = (f"At threshold {point['threshold']:g} the early-exit model keeps "
            f"{fmt(point['accuracy'])} (full model {fmt(result['float_accuracy'])}) at "
            f"{point['mean_macs'] / 1e6:.1f} M MACs per image, {point['saving']:.1%} fewer; "
            f"{overthinking}, and the policy rescues {point['rescued']:.2%} of the images "
            f"(loses {point['lost']:.2%}); {share:.1%} of the images leave in the first stage, ")
    text += ("none of them" if early_accuracy is None else
             f"classified at {fmt(early_accuracy)}") + ". "
    if timed is not None:
        text += (f"Measured at batch 100 it runs {timed['speedup']:.2f}x the full model's "
                 "speed. ")
    parts = {"effective": effective, "overcomes overthinking": rescues,
             "identifies easy data early": easy_first}
    held = [name for name, ok in parts.items() if ok]
    if len(held) == len(parts):
        return text + "Effective, overcomes overthinking, finds easy images early.", "agrees"
    if not held:
        return text + "None of the three parts of the claim holds here.", "disagrees"
    missing = [name for name, ok in parts.items() if not ok]
    reasons = {"effective": (f"a MAC saving below {EFFECTIVE_SAVING:.0%}, or a measured "
                             f"speedup below {EFFECTIVE_SPEEDUP:.2f}x, does not count"),
               "overcomes overthinking": "no image is rescued",
               "identifies easy data early": f"that needs at least {EARLY_SHARE:.0%} of the "
                                             "images leaving in the first stage, classified "
                                             "better than average"}
    return (text + f"Holds in part: {', '.join(held)}; not "
            + "; not ".join(f"{name} ({reasons[name]})" for name in missing) + ".", "in part")


def _moonshot(result: dict[str, Any]) -> str:
    """Where the operating point stands against issue #38's moonshot and SDN's figure."""
    point = result["operating_point"]
    saving = 0.0 if point is None else point["saving"]
    reached = "reaches" if saving >= MOONSHOT_SAVING else "does not reach"
    return (f"The operating point saves {saving:.1%} of the MACs: it {reached} issue #38's "
            f"moonshot of {MOONSHOT_SAVING:.0%} (Shallow-Deep Networks report more than 50 % "
            "on the deeper ResNet-56).")


def _overfitting(result: dict[str, Any]) -> str:
    """What the train/test accuracies say about overfitting (not part of the verdict)."""
    gaps = [e["train_accuracy"] - e["accuracy"] for e in result["exits"]]
    return (f"Overfitting is not judged: the backbone is frozen and was trained before. Its own "
            f"head is {gaps[-1] * 100:.1f} points better on the training images than on the "
            f"test images; the internal exits differ by {min(gaps[:-1]) * 100:+.1f} to "
            f"{max(gaps[:-1]) * 100:+.1f} points.")


def write_figure(out_dir: Path, result: dict[str, Any]) -> Path:
    """``out_dir/lab5/early_exit.png``: accuracy vs average MACs of the threshold sweep (the
    operating point and the full model marked), and each exit's accuracy alone."""
    from matplotlib.figure import Figure  # bare Figure: no pyplot state

    fig = Figure(figsize=(10, 4))
    left, right = fig.subplots(1, 2)
    curve = result["curve"]
    full_macs = result["full_model_macs"] / 1e6
    left.plot([c["mean_macs"] / 1e6 for c in curve], [c["accuracy"] for c in curve],
              marker="o", ms=3, label="max-softmax threshold sweep")
    left.plot([full_macs], [result["float_accuracy"]], "s", color="black", label="full model")
    left.axhline(result["float_accuracy"] - result["protocol"]["tolerance"], color="gray",
                 ls="--", lw=0.8, label="full model - 0.5 points")
    point = result["operating_point"]
    if point is not None:
        left.plot([point["mean_macs"] / 1e6], [point["accuracy"]], "*", ms=14, color="C3",
                  label=f"operating point (t = {point['threshold']:g}, "
                        f"{point['saving']:.0%} fewer MACs)")
    left.set_xlabel("average MACs per image (M)")
    left.set_ylabel("test accuracy")
    left.set_title("Early exit: accuracy vs cost")
    left.grid(alpha=0.3)
    left.legend(fontsize=7)
    exits = result["exits"]
    right.plot([e["macs"] / 1e6 for e in exits], [e["accuracy"] for e in exits], marker="o",
               label="test")
    right.plot([e["macs"] / 1e6 for e in exits], [e["train_accuracy"] for e in exits],
               marker=".", ls=":", label="train")
    for e in exits:
        right.annotate(str(e["exit"]), (e["macs"] / 1e6, e["accuracy"]), fontsize=7,
                       textcoords="offset points", xytext=(3, -9))
    right.set_xlabel("MACs per image up to the exit (M)")
    right.set_ylabel("accuracy of the exit alone")
    right.set_title("Each exit alone (8 = the network's head)")
    right.grid(alpha=0.3)
    right.legend(fontsize=7)
    if result["_meta"].get("smoke"):
        fig.suptitle("[SMOKE]")
    return save_figure(fig, Path(out_dir) / "lab5" / "early_exit.png")


def _speed_lines(result: dict[str, Any]) -> list[str]:
    speed = result.get("speed")
    if not speed:
        return ["Speed not measured in this run (`--speed-rounds 0`); "
                "`--speed-rounds N` times both models in N alternating rounds.", ""]
    L = table(["batch", "images per round", "rounds", "full model (img/s)",
               "early exit (img/s)", "ratio"], "rrrrrr",
              ([batch, s["images"], s["rounds"], f"{s['full_img_s']:.0f}",
                f"{s['early_exit_img_s']:.0f}", f"{s['speedup']:.2f}x"]
               for batch, s in speed.items()))
    L += ["", "Medians over alternating rounds (full model, then early exit, on the same "
          f"images); at batch 100 the images that exit leave the batch and the rest go on "
          f"through the next block together. Machine: {result['_meta'].get('machine', '?')}.",
          ""]
    return L


def _curve_row(c: dict[str, Any], point: dict[str, Any] | None) -> list[str]:
    """One threshold of the sweep as a table row (the operating point marked)."""
    mark = " **(operating point)**" if point and c["threshold"] == point["threshold"] else ""
    return [f"{c['threshold']:g}{mark}", fmt(c["accuracy"]), f"{c['mean_macs'] / 1e6:.1f}",
            f"{c['saving']:.1%}", f"{c['rescued']:.2%}", f"{c['lost']:.2%}",
            " / ".join(f"{f:.0%}" for f in c["exit_fractions"])]


def page(result: dict[str, Any]) -> list[str]:
    """The markdown lines of lab5.md's part (b) for one (b) result."""
    meta = result["_meta"]
    protocol = result["protocol"]
    recipe = protocol["recipe"]
    full = result["full_model_macs"]
    text, verdict = claim_1_8(result)
    claim, answer = pub.COURSE_CLAIMS["1.8"]
    point = result["operating_point"]
    L = ["## (b) Early exit (claim 1.8)", ""]
    if meta.get("smoke"):
        L += [f"> **Smoke result**: {run_label(meta)}. Its numbers mean nothing.", ""]
    L += [f"> {claim} (the course's answer: {'True' if answer else 'False'})", "",
          f"{text} **Verdict: {verdict}.** {_overfitting(result)}", "",
          _moonshot(result), "",
          "### How it was measured", "",
          f"* **Classifiers.** {protocol['classifiers']}; each is a global average pool and "
          "a linear layer, like the network's head. As in Shallow-Deep Networks they were "
          f"trained on {protocol['features']}, of {result['train_images']:,} training "
          f"images. Recipe: {recipe['epochs']} epochs, batch "
          f"{recipe['batch']}, SGD lr {recipe['lr']:g} ({recipe['schedule']}), momentum "
          f"{recipe['momentum']:g}, weight decay {recipe['weight_decay']:g}, seed "
          f"{recipe['seed']}; the loss is the sum of the eight cross-entropies. They are "
          f"stored in `{result['classifiers_file']}` ({result['classifiers_bytes']:,} bytes).",
          f"* **Policy.** An image {protocol['policy'].replace('leave', 'leaves')}; the "
          "last exit takes every image left.",
          f"* **Cost.** Multiply-accumulates counted from the layer shapes: the full model "
          f"does {full:,} per image; leaving at exit e costs the head conv, blocks 0..e and "
          "the classifiers consulted on the way (batch norm, ReLU, adds and pooling are not "
          "counted).",
          "* **Wasteful** at exit e: the fraction of the test images that some exit before e "
          "already classifies right. **Destructive** at exit e: the fraction that some exit "
          "before e classifies right and exit e gets wrong (at exit 8, SDN's overthinking). "
          "Both are fractions of all test images; both are 0 at exit 0.",
          f"* **Operating point.** The threshold with the fewest average MACs whose accuracy "
          f"is at most {protocol['tolerance'] * 100:.1f} points below the full model's "
          f"({fmt(result['float_accuracy'])}, measured in this run on "
          f"{result['test_images']:,} test images).", "",
          "### Each exit alone", "",
          *table(["exit", "after", "MACs (M)", "of the full model", "test accuracy",
                  "train accuracy", "wasteful", "destructive"], "rlrrrrrr",
                 ([e["exit"], f"`{e['after']}`", f"{e['macs'] / 1e6:.2f}",
                   f"{e['macs'] / full:.1%}", fmt(e["accuracy"]), fmt(e["train_accuracy"]),
                   f"{e['wasteful']:.2%}", f"{e['destructive']:.2%}"]
                  for e in result["exits"])),
          "", "### The exit policy, swept", "",
          *table(["threshold", "accuracy", "MACs per image (M)", "saved", "rescued", "lost",
                  "leaving at exits 0..8"], "rrrrrrl",
                 (_curve_row(c, point) for c in result["curve"]))]
    L += ["", "Rescued: images the policy classifies right and the final head wrong; lost: "
          "the other way round (fractions of all test images).", "",
          "### Measured speed", "", *_speed_lines(result)]
    return L


def write_report(out_dir: str | Path) -> Path | None:
    """Regenerate ``out_dir/lab5.md`` and its figures from ``lab5_a.json`` and
    ``lab5_b.json`` (whichever exist); None when neither part has been run there."""
    out_dir = Path(out_dir)
    a = read_result(out_dir, "lab5_a")
    b = read_result(out_dir, "lab5_b")
    if a is None and b is None:
        return None
    L = ["# Lab 5 — mixed precision (claim 1.10) and early exit (claim 1.8) on ResNet-20", "",
         f"Generated by `python {SCRIPT}` from `lab5_a.json` and `lab5_b.json` beside this "
         "page; every number comes with the command, commit and wall time that produced it "
         "(see *Provenance*).", ""]
    figures, runs = [], []
    if a is not None:
        figures += lab5_mixed.write_figures(out_dir, a)
        L += lab5_mixed.section(a)
        runs.append(("(a)", a["_meta"], a["_meta"].get("wall_s")))
    else:
        L += ["## (a) Mixed precision (claim 1.10)", "",
              f"Not run here yet: `python {SCRIPT} --part a`.", ""]
    if b is not None:
        figures.append(write_figure(out_dir, b))
        L += page(b)
        runs.append(("(b)", b["_meta"], b["_meta"].get("wall_s")))
    else:
        L += ["## (b) Early exit (claim 1.8)", "", f"Not run here yet: `python {SCRIPT} "
              "--part b`.", ""]
    L += report_tail(figures, "lab5", "part", runs,
                     "Wall time: (a) the finetunes (training and testing, summed over "
                     "epochs and targets); (b) features, classifier training, evaluation and "
                     "timing.")
    return write_markdown(out_dir / "lab5.md", L)
