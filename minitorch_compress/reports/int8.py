"""``int8.md`` from ``int8.json`` (`experiments.int8`) and ``bench_int8.json``
(`benchmarks/bench_int8.py`): accuracy of every model in integers against float, speed of
ours and PyTorch's float and int8 inference, where the integer model's time goes, and the
answer to "does fixed-point quantization make inference faster on an ordinary CPU?", each
sentence chosen by the numbers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from minitorch_compress.experiments.int8_layout import (
    BENCH_COMMAND,
    BENCH_RESULT,
    FLOAT_BOUND,
    GRID_BOUND,
    RESULT,
    SPEEDUP_FLOOR,
    TORCH_GOAL,
)
from minitorch_compress.reports.format import table
from minitorch_compress.results import read_result

BATCHES = ("batch_1", "batch_100")
ENGINES = (("ours_float", "ours float32"), ("ours_int8", "ours int8"),
           ("torch_float", "PyTorch float32"), ("torch_int8", "PyTorch int8"))


# ------------------------------------------------------------------ accuracy
def reference_of(row: dict[str, Any], full: bool) -> tuple[float, float, str]:
    """(the accuracy int8 is held to, the bound, what it is).

    A Lab 3 model (`GRID_BOUND`) is held to its lab table value when the run used the whole
    test set (`full`) and to its fake-quant accuracy on the same images otherwise (the
    table's figure is over all 10,000); the pretrained model to its float accuracy beside
    it (`FLOAT_BOUND`).
    """
    if row.get("table_accuracy") is not None:
        if full:
            return row["table_accuracy"], GRID_BOUND, "table"
        return row["float_accuracy"], GRID_BOUND, "float"
    return row["float_accuracy"], FLOAT_BOUND, "float"


def is_full(result: dict[str, Any]) -> bool:
    """Whether the result was measured on the whole test set (not a smoke run)."""
    return not result.get("_meta", {}).get("smoke", False)


def within_bound(row: dict[str, Any], full: bool) -> bool:
    """Whether a model's int8 accuracy is within its bound of its reference."""
    reference, bound, _ = reference_of(row, full)
    return abs(row["int8_accuracy"] - reference) <= bound + 1e-12


def accuracy_table(result: dict[str, Any]) -> list[str]:
    """One row per model: float, the lab's figure, int8, the difference and its bound."""
    rows, full = [], is_full(result)
    for name, row in result["models"].items():
        reference, bound, what = reference_of(row, full)
        kinds = ", ".join(f"{kind} x{count}" for kind, count in row["weight_kinds"].items())
        table_value = "" if row["table_accuracy"] is None else f"{row['table_accuracy']:.4f}"
        rows.append([name if row["file"] is None else f"{name} (`{row['file']}`)", kinds,
                     f"{row['float_accuracy']:.4f}", table_value, f"{row['int8_accuracy']:.4f}",
                     f"{(row['int8_accuracy'] - reference) * 100:+.2f} vs {what}",
                     f"{bound * 100:.1f}", "yes" if within_bound(row, full) else "**no**",
                     f"{row['predictions_differing']:,}"])
    return table(["model", "layers in integers", "float", "lab table", "int8",
                  "int8 - reference (points)", "bound (points)", "within", "predictions "
                  "changed"], "llrrrrrlr", rows)


def largest_change(result: dict[str, Any]) -> tuple[str, float]:
    """(model, int8 - reference in accuracy) of the model whose int8 accuracy moved most."""
    full = is_full(result)
    name, row = max(result["models"].items(), key=lambda item: abs(
        item[1]["int8_accuracy"] - reference_of(item[1], full)[0]))
    return name, row["int8_accuracy"] - reference_of(row, full)[0]


# ------------------------------------------------------------------ speed
def ratio(bench: dict[str, Any], batch: str, top: str, bottom: str) -> float | None:
    """bench[batch][top] / bench[batch][bottom], None when either is missing."""
    numbers = bench.get(batch) or {}
    a, b = numbers.get(top), numbers.get(bottom)
    return None if not a or not b else a / b


def _times(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def speed_table(bench: dict[str, Any]) -> list[str]:
    """Images/s of the four engines at batch 1 and 100, and the two ratios that matter."""
    rows = []
    for batch in BATCHES:
        numbers = bench.get(batch) or {}
        rows.append([batch.replace("_", " "),
                     *("-" if numbers.get(key) is None else f"{numbers[key]:,.0f}"
                       for key, _ in ENGINES),
                     _times(ratio(bench, batch, "ours_int8", "ours_float")),
                     _times(ratio(bench, batch, "torch_int8", "torch_float")),
                     _times(ratio(bench, batch, "ours_int8", "torch_int8"))])
    return table(["", *(label + " img/s" for _, label in ENGINES), "ours int8 / float",
                  "PyTorch int8 / float", "ours int8 / PyTorch int8"], "lrrrrrrr", rows)


def target_lines(bench: dict[str, Any]) -> list[str]:
    """Issue #35's two speed targets at batch 100, met or not."""
    ours = ratio(bench, "batch_100", "ours_int8", "ours_float")
    versus = ratio(bench, "batch_100", "ours_int8", "torch_int8")
    lines = []
    if ours is not None:
        lines.append(f"* Integer inference at batch 100 at least {SPEEDUP_FLOOR:.1f}x our "
                     f"float32 (the floor): {'met' if ours >= SPEEDUP_FLOOR else 'not met'} "
                     f"({ours:.2f}x).")
    if versus is not None:
        lines.append(f"* At least {TORCH_GOAL:.1f}x PyTorch's int8 at batch 100 (the goal): "
                     f"{'met' if versus >= TORCH_GOAL else 'not met'} ({versus:.2f}x).")
    else:
        lines.append("* Against PyTorch's int8: not measured (PyTorch was not importable).")
    return lines


# ------------------------------------------------------------------ time per layer
def _stage(layer: dict[str, Any]) -> str:
    """The stage a layer belongs to, by its output width (16, 32 or 64 channels at full
    width; a channel-pruned model's layers go by their output size instead)."""
    return f"{layer['output'][1]}x{layer['output'][2]}"


#: what each integer instruction the benchmark times does, for the page
INSTRUCTIONS = {
    "vpdpbusd": "512-bit AVX-512 VNNI: 64 u8 x s8 multiply-adds",
    "tdpbusd": "AMX tiles: up to 16 x 16 x 64 u8 x s8 multiply-adds",
}


def peak_per_thread(bench: dict[str, Any] | None) -> float | None:
    """The measured peak of the instruction our kernel is built on, G multiply-adds/s on
    one core (None when not measured)."""
    return (bench or {}).get("peak_gmacs_per_core") or None


def peak_instruction(bench: dict[str, Any] | None) -> str:
    """The instruction whose peak `peak_per_thread` is."""
    return (bench or {}).get("peak_instruction") or "vpdpbusd"


def profile_rows(result: dict[str, Any], bench: dict[str, Any] | None
                 ) -> list[dict[str, Any]]:
    """The integer layers of `result` joined with their measured milliseconds at batch 100
    (None where not measured): each row has "ms", "share" (of the measured total), "gops"
    (G int-ops/s: 2 ops per multiply-add) and "efficiency" (G multiply-adds/s per thread
    over the instruction's measured peak per core; None without a peak)."""
    measured = {row["layer"]: row["ms"]
                for row in (bench or {}).get("layers_batch_100", [])}
    total = sum(measured.values()) or None
    peak, threads = peak_per_thread(bench), (bench or {}).get("threads") or 1
    rows = []
    for layer in result["layers"]:
        ms = measured.get(layer["layer"])
        gmacs = None if not ms else layer["macs"] * 100 / (ms * 1e-3) / 1e9
        rows.append({**layer, "ms": ms,
                     "share": None if ms is None or total is None else ms / total,
                     "gops": None if gmacs is None else 2 * gmacs,
                     "efficiency": None if gmacs is None or peak is None
                     else gmacs / threads / peak})
    return rows


def profile_table(rows: list[dict[str, Any]], instruction: str = "vpdpbusd") -> list[str]:
    """Per layer: weights, output, multiply-adds, time at batch 100, share, int-ops/s, and
    the share of `instruction`'s peak reached (when measured)."""
    with_peak = any(row.get("efficiency") is not None for row in rows)
    return table(["layer", "weights", "output", "M MACs / image", "ms (batch 100)",
                  "share of time", "G int-ops/s"] + ([f"of {instruction} peak"] if with_peak
                                                     else []),
                 "llrrrrr" + ("r" if with_peak else ""),
                 ([row["layer"], "x".join(map(str, row["weights"]))
                   + ("" if row["stride"] == 1 else f" /{row['stride']}"),
                   "x".join(map(str, row["output"])), f"{row['macs'] / 1e6:.2f}",
                   "-" if row["ms"] is None else f"{row['ms']:.2f}",
                   "-" if row["share"] is None else f"{row['share']:.0%}",
                   "-" if row["gops"] is None else f"{row['gops']:.0f}"]
                  + (["-" if row["efficiency"] is None else f"{row['efficiency']:.0%}"]
                     if with_peak else []) for row in rows))


def stage_shares(rows: list[dict[str, Any]]) -> dict[str, tuple[float, float]]:
    """{stage (output size): (share of the time, share of the multiply-adds)} over the
    measured layers, in running order."""
    measured = [row for row in rows if row["ms"] is not None]
    time_total = sum(row["ms"] for row in measured)
    macs_total = sum(row["macs"] for row in measured)
    shares: dict[str, tuple[float, float]] = {}
    for row in measured:
        t, m = shares.get(_stage(row), (0.0, 0.0))
        shares[_stage(row)] = (t + row["ms"] / time_total, m + row["macs"] / macs_total)
    return shares


# ------------------------------------------------------------------ the bound
def bound(result: dict[str, Any], bench: dict[str, Any] | None,
          peak: float | None = None) -> float | None:
    """The most images/s a kernel built on the benchmark's instruction (or one of `peak` G
    multiply-adds/s per core) could reach on its machine: the model's multiply-adds per
    image / (peak per core x threads); None without a peak."""
    peak = peak or peak_per_thread(bench)
    macs = sum(layer["macs"] for layer in result["layers"])
    if peak is None or not macs:
        return None
    return peak * 1e9 * (bench.get("threads") or 1) / macs


def bound_lines(result: dict[str, Any], bench: dict[str, Any] | None) -> list[str]:
    """The paragraph on the design's bound: the measured peak of the instruction our kernel
    is built on, the images/s it allows, set beside PyTorch's int8 figure and ours, and the
    same bound for the other instructions measured; every clause chosen by the numbers
    (empty without a measured peak)."""
    most = bound(result, bench)
    if most is None:
        return []
    peak, threads = bench["peak_gmacs_per_core"], bench.get("threads") or 1
    name = peak_instruction(bench)
    measured = (bench.get("peaks") or {}).get(name, {})
    macs = sum(layer["macs"] for layer in result["layers"])
    together = measured.get("together")
    text = [f"The bound of the design: the instruction our kernel is built on, `{name}` "
            f"({INSTRUCTIONS.get(name, 'integer multiply-adds')}), peaks at {peak:.0f} G "
            f"multiply-adds/s on one core of this CPU ({measured.get('method', 'measured')}"
            + (f"; {together:.0f} summed over {threads} threads at once" if together else "")
            + f"). The integer model does {macs / 1e6:.1f} M multiply-adds per image, so even "
            f"at that peak on all {threads} threads a kernel built on `{name}` could reach at "
            f"most **{most:,.0f} images/s**."]
    theirs = (bench.get("batch_100") or {}).get("torch_int8")
    ours = (bench.get("batch_100") or {}).get("ours_int8")
    if theirs:
        if most < theirs:
            text.append(f"That is {most / theirs:.2f}x PyTorch's int8 figure "
                        f"({theirs:,.0f} images/s): no kernel on this instruction can reach "
                        "it here, whatever its blocking"
                        + ("; the goal needs a wider one (AMX tiles, where the CPU has them)."
                           if name != "tdpbusd" else "."))
        else:
            text.append(f"That is {most / theirs:.2f}x PyTorch's int8 figure "
                        f"({theirs:,.0f} images/s): the instruction does not rule the goal "
                        f"out, but a kernel must keep {theirs / most:.0%} of its peak over "
                        "the whole forward (requantization, borders and the work between "
                        "layers included) to reach it.")
    if ours:
        rows = [row for row in profile_rows(result, bench) if row["ms"] is not None]
        layers = ""
        if rows:
            rate = sum(row["macs"] for row in rows) * 100 / (
                sum(row["ms"] for row in rows) * 1e-3) / 1e9
            layers = (f"; its conv layers alone run at {rate / threads / peak:.0%} of the "
                      "peak (per layer in the table below)")
        text.append(f"Ours runs at {ours / most:.0%} of that bound{layers}.")
    text += epilogue_sentences(result, bench)
    for other, rate in (bench.get("peaks") or {}).items():
        if other == name or not rate.get("per_core"):
            continue
        other_most = bound(result, bench, rate["per_core"])
        text.append(f"On `{other}` ({rate['per_core']:.0f} G multiply-adds/s per core) the "
                    f"bound would be {other_most:,.0f} images/s"
                    + (f", {other_most / theirs:.2f}x PyTorch's int8 figure" if theirs else "")
                    + ".")
    return [" ".join(text)]


def epilogue_bound(result: dict[str, Any], bench: dict[str, Any] | None) -> float | None:
    """The most images/s with the sums at the instruction's peak and the measured epilogue
    per image on top: threads / (MACs / peak + epilogue seconds), per image; None without
    both measured."""
    seconds = (bench or {}).get("epilogue_seconds_per_image")
    peak = peak_per_thread(bench)
    macs = sum(layer["macs"] for layer in result["layers"])
    if not seconds or peak is None or not macs:
        return None
    return (bench.get("threads") or 1) / (seconds + macs / (peak * 1e9))


def epilogue_sentences(result: dict[str, Any], bench: dict[str, Any]) -> list[str]:
    """What the exact integer epilogue costs and the bound it sets with the sums at their
    peak, beside PyTorch's int8 figure (empty when not measured)."""
    most = epilogue_bound(result, bench)
    if most is None:
        return []
    cost, threads = bench["epilogue"], bench.get("threads") or 1
    seconds = bench["epilogue_seconds_per_image"]
    text = [f"Every output also needs the exact integer epilogue (`int8_epilogue.finish`: "
            f"requantization, residual, clamp), measured at {cost['plain']:.1f} ns per 16 "
            f"codes on one core ({cost['residual']:.1f} with a residual): "
            f"{seconds * 1e6:.0f} us per image on one core, which alone allows at most "
            f"{threads / seconds:,.0f} images/s on {threads} threads; with the sums at the "
            f"instruction's peak besides, at most **{most:,.0f} images/s**."]
    theirs = (bench.get("batch_100") or {}).get("torch_int8")
    if theirs:
        if most < theirs:
            text.append(f"That is {most / theirs:.2f}x PyTorch's int8 figure: with this "
                        "epilogue on the vector units no kernel reaches it here, whatever does "
                        "its multiply-adds; the epilogue, not the multiply-adds, is what "
                        "stands in the way.")
        else:
            text.append(f"That is {most / theirs:.2f}x PyTorch's int8 figure: a kernel must "
                        f"keep {theirs / most:.0%} of this bound over the whole forward to "
                        "reach it.")
    return text


# ------------------------------------------------------------------ the answer
def answer(result: dict[str, Any], bench: dict[str, Any] | None) -> str:
    """The one-paragraph answer to "does fixed-point quantization make inference faster on
    an ordinary CPU?", every clause chosen by the measured numbers."""
    name, change = largest_change(result)
    missed = [n for n, row in result["models"].items()
              if not within_bound(row, is_full(result))]
    accuracy = (f"The accuracy it costs is small: the largest change on this page is "
                f"{change * 100:+.2f} points ({name}), and every model is within its bound."
                if not missed else
                f"It is not free in accuracy: {len(missed)} of {len(result['models'])} models "
                f"miss their bound ({', '.join(missed)}; the largest change is "
                f"{change * 100:+.2f} points, {name}).")
    if bench is None:
        return ("Not answered yet for speed: the benchmark has not been run into this folder "
                f"(`{BENCH_COMMAND}` on a quiet machine, then `python -m minitorch_compress "
                f"report --all`). {accuracy}")
    ours100 = ratio(bench, "batch_100", "ours_int8", "ours_float")
    ours1 = ratio(bench, "batch_1", "ours_int8", "ours_float")
    torch100 = ratio(bench, "batch_100", "torch_int8", "torch_float")
    torch1 = ratio(bench, "batch_1", "torch_int8", "torch_float")
    isa = bench.get("isa", "an unnamed instruction set")
    where = f"this {bench.get('threads', '?')}-thread CPU ({isa})"
    if ours100 is None:
        return f"Not answered: the benchmark has no batch-100 figures for ours. {accuracy}"
    if ours100 >= SPEEDUP_FLOOR:
        verdict = (f"Yes: on {where} our integer ResNet-20 runs {ours100:.2f}x as fast as "
                   "our float32 one at batch 100")
    elif ours100 >= 1.1:
        verdict = (f"Yes, but modestly in our code: on {where} our integer ResNet-20 runs "
                   f"{ours100:.2f}x as fast as our float32 one at batch 100")
    elif ours100 >= 0.9:
        verdict = (f"Not in our code yet: on {where} our integer ResNet-20 runs at "
                   f"{ours100:.2f}x the speed of our float32 one at batch 100, no faster")
    else:
        verdict = (f"No, not in our code: on {where} our integer ResNet-20 is slower than our "
                   f"float32 one at batch 100 ({ours100:.2f}x)")
    verdict += "." if ours1 is None else f"; at batch 1 it runs {ours1:.2f}x as fast."
    sentences = [verdict]
    if torch100 is not None:
        if ours100 < 0.75 * torch100:
            sentences.append(
                f"The hardware does pay for fixed point: PyTorch's int8 model on the same "
                f"machine runs {torch100:.2f}x its float32 one at batch 100"
                + (f" ({torch1:.2f}x at batch 1)" if torch1 is not None else "")
                + ", so what is missing in ours is kernel work, not arithmetic.")
        else:
            sentences.append(
                f"PyTorch's int8 model gains about as much or less on the same machine "
                f"({torch100:.2f}x its float32 at batch 100), so ours is not behind the "
                "best the hardware gives here.")
    rows = profile_rows(result, bench)
    shares = stage_shares(rows)
    if shares:
        heavy = max(shares, key=lambda stage: shares[stage][0] - shares[stage][1])
        spent, work = shares[heavy]
        if spent > work + 0.05:
            sentences.append(
                f"Our integer time is not where the arithmetic is: the {heavy} layers take "
                f"{spent:.0%} of it for {work:.0%} of the multiply-adds.")
        else:
            sentences.append("Our integer time follows the arithmetic: no stage takes more "
                             "than 5 points above its share of the multiply-adds.")
    sentences.append(accuracy)
    return " ".join(sentences)


# ------------------------------------------------------------------ the page
def render(result: dict[str, Any], bench: dict[str, Any] | None) -> str:
    """results/int8.md from the JSON (numbers and sentences computed)."""
    meta = result.get("_meta", {})
    about = result["calibration"]
    method = about["method"] + (f" ({about['percentiles'][0]} / {about['percentiles'][1]} "
                                "percentiles)" if "percentiles" in about else "")
    L = ["# Fixed point for real: ResNet-20 in integer arithmetic", ""]
    if meta.get("smoke"):
        L += [f"> **Smoke run** on {result['test_images']:,} test images: the figures only "
              "show the pipeline works.", ""]
    L += [f"Measured by `{meta.get('command', '?')}` at `{meta.get('commit', '?')}` on "
          f"{result['test_images']:,} test images. Activations are u8 with one scale and zero "
          "point per tensor, calibrated by "
          f"{method} on {about['source']} (a file with stored ranges, `compress --int8`, uses "
          "its own); each conv sums u8 x int8 products in int32 and requantizes with an int32 "
          "multiplier and a shift. The input quantization and the final average pool + "
          "linear layer stay float.", "",
          "## Does fixed-point quantization make inference faster on an ordinary CPU?", "",
          answer(result, bench), "",
          "## Accuracy: float against integers", "",
          *accuracy_table(result), "",
          "*layers in integers*: `grid<b>` is a layer whose trained b-bit levels "
          "`beta + k step` are used exactly (integer codes k and the two-sum form "
          "`conv(x, w) = s conv(x, k m) + beta conv(x, m)`, m the mask), `s8` one re-quantized "
          "to symmetric int8 per output channel (a float layer: every layer of the pretrained "
          "model, and the head conv that Lab 3 keeps float). *float*: the model run in "
          "float32 (for a Lab 3 file, its fake-quant levels). *lab table*: the figure the "
          "lab's result file reports for that model (over all 10,000 test images). A Lab 3 "
          f"model is held to that value within {GRID_BOUND * 100:.1f} points ("
          + ("on this smoke run's test subset, to its float accuracy on the same images), "
             if not is_full(result) else "the issue's bound), ")
          + f"the pretrained model to its float accuracy within {FLOAT_BOUND * 100:.1f} "
          "points.", ""]
    L += ["## Speed", ""]
    if bench is None:
        L += [f"Not measured in this folder: run `{BENCH_COMMAND}` on a quiet machine, then "
              "`python -m minitorch_compress report --all`.", ""]
    else:
        made = "".join(f" at `{bench[key]}`" for key in ("commit",) if bench.get(key))
        L += [f"From `{BENCH_RESULT}.json` (`benchmarks/bench_int8.py`{made}): "
              f"{bench.get('cpu', '?')} "
              f"CPU, integer instructions **{bench.get('isa', '?')}**, "
              f"{bench.get('threads', '?')} threads, medians of {bench.get('rounds', '?')} "
              "alternating rounds; PyTorch "
              + (f"{bench['torch_version']}" if bench.get("torch_version") else "not importable")
              + f" (x86 backend, static per-channel int8, calibrated on "
              f"{bench.get('calibration', '?')} images).", "",
              *speed_table(bench), "", "Targets (issue #35):", "", *target_lines(bench), ""]
        bound_text = bound_lines(result, bench)
        L += [*bound_text, ""] if bound_text else []
    rows = profile_rows(result, bench)
    L += ["## Where the integer model's time goes", "",
          "The pretrained model's integer layers; milliseconds from the benchmark's "
          "per-layer timing at batch 100 (each layer's fast kernel, requantization "
          "included)." if bench is not None and bench.get("layers_batch_100") else
          "The pretrained model's integer layers (no per-layer timing in this folder).", "",
          *profile_table(rows, peak_instruction(bench)), ""]
    shares = stage_shares(rows)
    if shares:
        L += ["By output size: " + "; ".join(
            f"{stage}: {spent:.0%} of the time, {work:.0%} of the multiply-adds"
            for stage, (spent, work) in shares.items()) + "."]
        forward = (bench or {}).get("batch_100", {}).get("ours_int8")
        if forward:
            layers_ms = sum(row["ms"] for row in rows if row["ms"] is not None)
            L += ["", f"The layers add up to {layers_ms:.1f} ms of the {100e3 / forward:.1f} ms "
                  "that a whole batch-100 forward takes in the speed table (the rest: "
                  "quantizing the input, the average pool and the linear layer, and the "
                  "Python between layers; the two were timed in separate runs)."]
        L += [""]
    return "\n".join(L)


def write_report(out_dir: str | Path) -> Path | None:
    """Re-render ``out_dir/int8.md`` from ``int8.json`` (and ``bench_int8.json`` when
    present); None when there is no int8.json."""
    result = read_result(Path(out_dir), RESULT)
    if result is None:
        return None
    page = Path(out_dir) / f"{RESULT}.md"
    page.write_text(render(result, read_result(Path(out_dir), BENCH_RESULT)))
    return page
