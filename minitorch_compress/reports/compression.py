"""Renders ``compression.md`` (Deep Compression's stage table for each lab model, where the
bytes go, and accuracy against file size) from ``compression.json``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from minitorch_compress.published import LAB3_D_AFTER
from minitorch_compress.reports.format import (
    fmt,
    pyplot,
    run_label,
    save_figure,
    table,
    write_markdown,
)
from minitorch_compress.results import read_result

TARGET_RATIO = 20.0  # issue 17: the 80 %-sparse 4-bit Lab 3 (d) model, at least 20x
TARGET_MODEL = "lab3_d_4bit"
TARGET_PUBLISHED = LAB3_D_AFTER["4"]  # the course's accuracy for that model
USABLE_POINTS = 0.02  # SPEC: a verdict quotes models within 2 points of their lab's figure
STAGES = ("float32", "sparse", "sparse+quantized", "sparse+quantized+huffman",
          "lzma_of_float32")


def _kb(n: int) -> str:
    return f"{n / 1000:,.1f} KB"


# Which lab a model comes from, by name prefix (first match), for the figure's colours.
FAMILIES = (("lab2_", "pruned, float32 (Lab 2)"), ("lab3_c_", "quantized, dense (Lab 3 c)"),
            ("lab3_", "pruned + quantized (Lab 3 d, e)"), ("lab4_", "L1 / group Lasso (Lab 4)"),
            ("lab5_", "mixed precision (Lab 5 a)"))
# A model this far below the median accuracy is drawn on the axis floor with its value
# written beside it, instead of stretching the axis until the usable models overlap.
OUTLIER_DROP = 0.2


def _outlier_cut(accuracies: list[float]) -> float:
    """Below this accuracy a model is drawn on the figure's floor (`OUTLIER_DROP`)."""
    import statistics

    return statistics.median(accuracies) - OUTLIER_DROP if accuracies else 0.0


def off_scale(models: dict[str, dict[str, Any]]) -> bool:
    """Whether the figure draws some model on its floor."""
    accuracies = [m["accuracy"] for m in models.values()]
    return any(a < _outlier_cut(accuracies) for a in accuracies)


def _family(name: str) -> int:
    """The index in `FAMILIES` of the first prefix `name` starts with (-1: none)."""
    return next((i for i, (prefix, _) in enumerate(FAMILIES) if name.startswith(prefix)), -1)


def write_figure(models: dict[str, dict[str, Any]], path: Path) -> Path:
    """Test accuracy (from each file) against file size, coloured by lab, with the Pareto
    front; only the front's models are named (the tables name every one)."""
    fig, ax = pyplot().subplots(figsize=(7.2, 4.6))
    points = sorted((m["bytes"] / 1000, m["accuracy"], name) for name, m in models.items())
    front, best = [], -1.0
    for size, accuracy, name in points:  # smallest first: a point is on the front if it
        if accuracy > best:              # beats every smaller file
            front.append((size, accuracy, name))
            best = accuracy
    accuracies = [a for _, a, _ in points]
    cut = _outlier_cut(accuracies)
    usable = [a for a in accuracies if a >= cut]
    floor = min(usable) - 0.02 if len(usable) < len(accuracies) else None

    def shown(accuracy: float) -> float:
        return accuracy if floor is None or accuracy >= cut else floor + 0.002

    for i, (_, label) in enumerate(FAMILIES):
        mine = [(s, a) for s, a, n in points if _family(n) == i]
        if mine:
            ax.plot([s for s, _ in mine], [shown(a) for _, a in mine], "o", ms=5,
                    color=f"C{i}", label=label, alpha=0.85)
    if len(front) > 1:
        ax.step([s for s, _, _ in front], [shown(a) for _, a, _ in front], where="post",
                color="0.35", lw=1, label="Pareto front")
    for j, (size, accuracy, name) in enumerate(front):
        y = shown(accuracy)
        if y != accuracy:  # on the floor: its value beside its name, above the axis
            text, left, dy = f"{name} ({accuracy:.4f}, off scale)", False, 4
        else:  # labels alternate sides: the front's models are close in size
            text, left, dy = name, j % 2 == 1, 4 if j % 2 == 1 else -10
        ax.annotate(text, (size, y), fontsize=7, ha="right" if left else "left",
                    xytext=(-4 if left else 4, dy), textcoords="offset points")
    if floor is not None:
        ax.set_ylim(bottom=floor)
    ax.set_xscale("log")
    ax.set_xlabel("file size (KB, log scale)")
    ax.set_ylabel("test accuracy, evaluated from the file")
    ax.set_title("Lab models as .mtc files: accuracy against size")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    return save_figure(fig, path)


def _verdict(m: dict[str, Any]) -> str:
    excess = m["bytes"] - m["float32_bytes"] / TARGET_RATIO
    return "is met." if excess <= 0 else f"is not met, by {excess:,.0f} bytes."


def _usable_verdict(m: dict[str, Any]) -> str:
    """`_verdict`, for a model whose accuracy is within `USABLE_POINTS` of the published
    figure of its kind; a model below that (a smoke run, a collapsed one) is not evidence."""
    floor = TARGET_PUBLISHED - USABLE_POINTS
    if m["accuracy"] < floor:
        return (f"is not judged: at accuracy {m['accuracy']:.4f} the model is not one anyone "
                f"would use (the target counts at {floor:.4f} or more, "
                f"{USABLE_POINTS * 100:.0f} points below the published {TARGET_PUBLISHED}).")
    return _verdict(m)


def target_sentence(models: dict[str, dict[str, Any]],
                    proxy: dict[str, Any] | None = None) -> str:
    """Whether the 80 %-sparse 4-bit (d) model meets the 20x target (computed); while it has
    no file, what the proxy (same pruning and quantizer, not finetuned) shows."""
    m = models.get(TARGET_MODEL)
    if m is None:
        text = (f"The target model, `{TARGET_MODEL}` (Lab 3 (d), 80 % sparse, 4 bits), has no "
                f"file yet: its finetune has to be run (`python labs/lab3_quantization.py "
                f"--part d --sparse-from results/models/lab2_c.mtc --out-dir results`), then "
                f"this page rebuilt.")
        if proxy:
            text += (f" Its stand-in, {proxy['about']} (`{proxy['command']}`), is "
                     f"{proxy['ratio']:.2f}x smaller than float32 ({_kb(proxy['float32_bytes'])}"
                     f" -> {_kb(proxy['bytes'])}): on it the {TARGET_RATIO:.0f}x target "
                     + _verdict(proxy) + " Its accuracy from the file, "
                     f"{proxy['accuracy']:.4f}, is that of a model never finetuned.")
        return text
    table = m.get("table_accuracy")
    if table is None:
        accuracy = f"accuracy {m['accuracy']:.4f} from the file (no table figure to compare)"
    elif round(m["accuracy"], 4) == round(table, 4):
        accuracy = f"accuracy {m['accuracy']:.4f} from the file, the table's figure exactly"
    else:
        accuracy = (f"accuracy {m['accuracy']:.4f} from the file against the table's "
                    f"{table:.4f}")
    text = (f"`{TARGET_MODEL}` is {m['ratio']:.2f}x smaller than its float32 size "
            f"({_kb(m['float32_bytes'])} -> {_kb(m['bytes'])}), at {accuracy}: the "
            f"{TARGET_RATIO:.0f}x target " + _usable_verdict(m))
    folded = m.get("inference_file")
    if folded:
        differing = folded["predictions_differing"]
        text += (f" Its inference-only file, `{folded['file']}` (each batch norm stored as its "
                 f"eval-mode scale and shift, `compress --fold-batch-norm`; the full file keeps "
                 f"the batch statistics for finetuning and PyTorch export), is "
                 f"{folded['bytes']:,} bytes, {folded['ratio']:.2f}x, at accuracy "
                 f"{folded['accuracy']:.4f} from the file, "
                 + ("every prediction the full file's" if differing == 0 else
                    f"{differing:,} predictions differing from the full file's")
                 + f": there the {TARGET_RATIO:.0f}x target "
                 + _usable_verdict({**folded, "float32_bytes": m["float32_bytes"]}))
    return text


def entropy_lines(rows: dict[str, dict[str, Any]]) -> list[str]:
    """Each file's coded index and codes against their order-0 entropy (computed)."""
    rows = {n: m for n, m in rows.items() if "entropy" in m}
    if not rows:
        return []
    cells = []
    for name, m in rows.items():
        parts, bound = m["parts"], m["entropy"]
        ideal = m["bytes"] - (parts["index"] - bound["index"]) - (parts["codes"] - bound["codes"])
        cells.append([f"`{name}`", f"{parts['index']:,}", f"{bound['index']:,}",
                      f"{parts['codes']:,}", f"{bound['codes']:,}", f"{ideal:,}",
                      f"{m['float32_bytes'] / ideal:.2f}x"])
    return ["## Against the entropy", "", *table(
        ["model", "index (file)", "index (entropy)", "codes (file)", "codes (entropy)",
         "file at the entropy", "ratio there"], "lrrrrrr", cells), "",
            "*entropy*: the order-0 empirical entropy of each tensor's gaps between non-zeros "
            "and of its codes, summed over tensors: what any code that sends one symbol at a "
            "time from a per-tensor table would need at best, tables not counted. The file's "
            "figures include the Huffman tables. *file at the entropy*: the file with both "
            "streams at that bound and every other byte (float tensors, codebooks, header) as "
            "it is.", ""]


def lzma_beats_lines(rows: dict[str, dict[str, Any]]) -> list[str]:
    """A sentence for each file that stdlib lzma on the float32 bytes beats, saying from the
    measured streams why, and the size with its codes at their entropy (all computed)."""
    L = []
    for name, m in rows.items():
        lzma = m["stages"]["lzma_of_float32"]
        if lzma >= m["bytes"]:
            continue
        sentence = (f"`{name}`: stdlib lzma on the float32 bytes ({lzma:,} bytes) is smaller "
                    f"than the file ({m['bytes']:,}).")
        codes, bound = m["parts"]["codes"], m.get("entropy", {}).get("codes")
        if bound and codes > bound:
            smaller = m["bytes"] - (codes - bound)  # as "file at the entropy", codes only
            sentence += (f" Its codes take {codes:,} bytes against an order-0 entropy of "
                         f"{bound:,} ({codes / bound:.1f}x): Huffman spends a whole number of "
                         "bits, at least one, on every kept weight, where lzma's range coder "
                         "spends a fraction of a bit on a likely symbol. With the codes at "
                         f"their entropy (an arithmetic/ANS coder) the file would be "
                         f"{smaller:,} bytes, "
                         + ("below lzma's." if smaller < lzma else "still above lzma's."))
        L += [sentence, ""]
    return L


def what_if_lines(rows: dict[str, dict[str, Any]]) -> list[str]:
    """What would shrink each file further (`compression.what_if`), all figures computed."""
    rows = {n: m for n, m in rows.items() if "what_if" in m}
    if not rows:
        return []
    first = next(iter(rows.values()))["what_if"]["options"]
    exact = [o["option"] for o in first if o["exact"]]
    lossy = [o["option"] for o in first if not o["exact"]]
    L = ["## What would shrink it further", "",
         "Each option measured on the file, alone, against the file as it is (bytes saved); "
         "*all exact* is their sum (they touch different parts of the file) and the ratio "
         "the file would then reach. `python -m minitorch_compress models` measures them "
         "(`compression/what_if.py`).", ""]
    cells, checks = [], []
    for name, m in rows.items():
        w = m["what_if"]
        by = {o["option"]: o for o in w["options"]}
        total = sum(by[o]["saved"] for o in exact)
        cells.append([f"`{name}`", f"{m['bytes']:,}", *(f"{by[o]['saved']:,}" for o in exact),
                      f"{total:,}", f"{m['float32_bytes'] / (m['bytes'] - total):.2f}x",
                      *(f"{by[o]['saved']:,}, {by[o]['accuracy']:.4f} "
                        f"({by[o]['accuracy'] - w['accuracy']:+.4f})" for o in lossy)])
        checks += [f"`{name}`" for o in w["options"] if o.get("same_predictions") is False]
    L += table(["model", "file", *exact, "all exact", "ratio then",
                *(f"{o}: saved, accuracy" for o in lossy)],
               "lr" + "r" * (len(exact) + 2 + len(lossy)), cells)
    fold = next((o for o in first if "same_predictions" in o), None)
    if fold is not None:
        L += ["", ("The folded batch norm gave exactly the file's predictions on every model."
                   if not checks else "The folded batch norm changed predictions on "
                   + ", ".join(checks) + ": it is not exact there.")]
        if fold.get("file"):
            L[-1] += (f" It is a file mode, `{fold['file']}` (inference only: the file "
                      "cannot be finetuned or exported), and its saving is that real file's "
                      "size against this one's.")
    L += ["", "(The accuracy in brackets is the change from the file's own.)"]
    if "proxy (not finetuned)" in rows:
        L[-1] += (" The proxy was never finetuned, so its accuracy "
                  f"({rows['proxy (not finetuned)']['what_if']['accuracy']:.4f}) says nothing "
                  "about what rounding costs a usable model.")
    return L + [""]


def _same(m: dict[str, Any]) -> str:
    """Whether the accuracy from the file is the lab table's, on the same test images: "yes",
    "**no** (+0.0012)", "yes (first 2,000 images)" when the table was tested on fewer images
    than the file, and "—" without a table figure or when it was tested on more."""
    table = m.get("table_accuracy")
    if table is None or ("table_test_images" in m and "accuracy_on_table_images" not in m):
        return "—"
    ours = m.get("accuracy_on_table_images", m["accuracy"])
    where = f" (first {m['table_test_images']:,} images)" if "table_test_images" in m else ""
    return f"yes{where}" if round(ours, 4) == round(table, 4) else \
        f"**no** ({ours - table:+.4f}{where.replace(' (', ', ').rstrip(')')})"


def render(result: dict[str, Any], figure: str | None) -> list[str]:
    """The page's lines (a pure function of compression.json)."""
    models = result.get("models", {})
    L = ["# Model files: Deep Compression for real", "",
         "Generated by `python -m minitorch_compress models` from `compression.json`. Every lab "
         "model whose best checkpoint was on disk is stored as an `.mtc` file in `models/` "
         "(format: `minitorch_compress/io/mtc.py`) and evaluated *from the file* on "
         f"{result.get('test_images', '?')} test images; `python -m minitorch_compress "
         "evaluate --weights results/models/<name>.mtc` prints the same number.", "",
         target_sentence(models, result.get("proxy")), ""]
    if not models:
        return L + ["_No lab model on disk yet._", ""]
    proxy = result.get("proxy")
    with_proxy = {**models, **({"proxy (not finetuned)": proxy} if proxy else {})}
    L += table(["model", "accuracy (file)", "table", "same", "file", "ratio", *STAGES],
               "lrrlrr" + "r" * len(STAGES),
               ([f"`{name}`", fmt(m["accuracy"]), fmt(m.get("table_accuracy")), _same(m),
                 _kb(m["bytes"]), f"{m['ratio']:.1f}x", *(_kb(m["stages"][s]) for s in STAGES)]
                for name, m in with_proxy.items()))
    fewer = sorted({m["table_test_images"] for m in models.values()
                    if "table_test_images" in m})
    if fewer:
        L += ["", f"*same* compares the file and the lab's table on the same images: a lab "
              f"table tested on other than these {result.get('test_images', '?')} images "
              f"({', '.join(f'{n:,}' for n in fewer)}) is compared on the first that many, "
              "and shows — where it was tested on more than this page evaluates."]
    L += ["", "Stages as in Deep Compression's table: *sparse* = the best fixed-width relative "
          "index per layer plus float32 non-zeros; *+quantized* = the same index plus b-bit "
          "codes and each layer's levels; *+huffman* = the file itself (Huffman-coded index "
          "and codes, header and CRCs included); *lzma* = stdlib lzma on the float32 bytes, "
          "the general-purpose baseline.", ""]
    L += lzma_beats_lines(with_proxy)
    parts = list(next(iter(models.values()))["parts"])
    L += ["## Where the bytes go", "", *table(
        ["model", *parts], "l" + "r" * len(parts),
        ([f"`{name}`", *(f"{v:,}" for v in m["parts"].values())]
         for name, m in with_proxy.items())), "",
        "*index*: positions of the non-zeros; *codes*: each kept weight's level "
        "(Huffman tables included); *codebook*: the levels (8 bytes per layer when they are "
        "the quantizer's evenly spaced ones); *float32 non-zeros*: unquantized pruned "
        "layers (the head conv and final FC stay float); *dense tensors*: batch norm and "
        "biases, lossless (the smallest of raw, lzma, byte planes + LZMA2, and byte planes "
        "grouped by kind: every gamma, then every beta, mean, variance); *header*: "
        "architecture and section table (JSON, raw LZMA2).",
        ""]
    L += entropy_lines(with_proxy)
    L += what_if_lines(with_proxy)
    sparse = {n: m["sparse_path"] for n, m in models.items() if "sparse_path" in m}
    if sparse:
        L += ["## The same files on the sparse kernel", "", *table(
            ["model", "convs on the sparse path", "accuracy",
             "predictions differing from the dense path"], "lrrr",
            ([f"`{n}`", s["convs"], fmt(s["accuracy"]), s["predictions_differing"]]
             for n, s in sparse.items())), "",
            "(`evaluate --weights FILE --sparse`; the sparse kernel sums in another "
            "order, so logits agree to float rounding and a prediction can differ only on a "
            "near tie.)", ""]
    if figure:
        L += [f"![accuracy against size]({figure})", "",
              "(Colour: the lab a model comes from. Only the Pareto front's models are named; "
              "the tables above name every one."
              + (" A model far below the others is drawn on the axis floor, its accuracy "
                 "beside its name." if off_scale(models) else "") + ")", ""]
    missing = result.get("missing") or []
    if missing:
        L += ["Not on disk when this page was made (their finetunes have to be rerun): "
              + ", ".join(f"`{n}`" for n in missing) + ".", ""]
    meta = result.get("_meta", {})
    L += ["## Provenance", "", f"`{meta.get('command', '?')}` at `{meta.get('commit', '?')}`, "
          f"{meta.get('date', '?')} ({run_label(meta)}).", ""]
    return L


def write_report(out_dir: str | Path) -> Path | None:
    """``out_dir/compression.md`` and its figure from ``compression.json`` (None if absent)."""
    out_dir = Path(out_dir)
    result = read_result(out_dir, "compression")
    if result is None:
        return None
    figure = None
    if result.get("models"):
        write_figure(result["models"], out_dir / "compression" / "accuracy_vs_size.png")
        figure = "compression/accuracy_vs_size.png"
    return write_markdown(out_dir / "compression.md", render(result, figure))
