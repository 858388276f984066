"""``sparse.md`` and its figure from ``sparse.json`` (written by ``benchmarks/bench_sparse.py``):
where the direct sparse convolution beats the dense path, and issue 18's targets, each met
or not as the numbers say."""

from __future__ import annotations

import json
from pathlib import Path
from typing import NamedTuple

from minitorch_compress.reports.format import pyplot, save_figure, table

#: the benchmark's batch and sparsities (the page's columns come from the JSON rows)
BATCH = 100


class _Kernel(NamedTuple):
    """What a run measured, and its break-even target (its issue's)."""

    break_even_target: float
    fitted: bool  # break-evens from a least-squares fit (else the first crossing)
    how: str


#: A JSON that names its ``sparse_kernel`` (`sparse_conv.KERNEL_VERSION`) measured the
#: register-tiled kernel of issue 36 (``tiled-1``: 8-lane vectors only; later versions: 16
#: lanes on AVX-512, `TILED_WIDE`); one that does not, the batched kernel of issue 18.
TILED = _Kernel(0.60, True,
                "a tile of 8 position vectors (8 neighbouring outputs each) of one output "
                "channel keeps its sums in vector registers across all the channel's "
                "non-zeros, one broadcast weight and 8 vector loads per non-zero; input rows "
                "split by column phase make stride 2 the same loop, so every pruned 3x3 conv "
                "can run sparse; the 1x1 shortcuts stay dense.")
TILED_WIDE = TILED._replace(
    how="a tile of 8 position vectors (8 neighbouring outputs each, 16 on AVX-512 CPUs where "
        "the output width is a multiple of 16) of one output channel keeps its sums in "
        "vector registers across all the channel's non-zeros, one broadcast weight and 8 "
        "vector loads per non-zero; input rows split by column phase make stride 2 the same "
        "loop, so every pruned 3x3 conv can run sparse; the 1x1 shortcuts stay dense.")
BATCHED = _Kernel(0.70, False,
                  "for stride 1 a block of images is laid out (C, Hp, nb, Wp) so that each "
                  "non-zero's window over the whole block is one contiguous run, and four "
                  "non-zeros share each pass over an L1-sized accumulator; the stride-2 convs "
                  "(two of the nineteen pruned convs) and the 1x1 shortcuts still run the "
                  "per-image kernel or dense.")


def _kernel(result: dict) -> _Kernel:
    version = result.get("sparse_kernel")
    if not version:
        return BATCHED
    return TILED if version == "tiled-1" else TILED_WIDE


def _speedup_table(result: dict, sparsities: list[float], speedup: str,
                   break_even: str) -> list[str]:
    """Shape x sparsity table of one kernel's speedup over dense, with its break-even."""
    ends = result["layers"][break_even]
    return table(["shape", *(f"{s:.0%}" for s in sparsities), "break-even"],
                 "l" + "r" * (len(sparsities) + 1),
                 ([label, *(f"{r[speedup]:.2f}x" for r in rows),
                   "never" if ends[label] is None else f"{ends[label]:.0%}"]
                  for label, rows in result["layers"]["shapes"].items()))


def render(result: dict) -> str:
    """results/sparse.md from the JSON (numbers and conclusions computed)."""
    sparsities = [r["sparsity"] for r in next(iter(result["layers"]["shapes"].values()))]
    L = ["# Sparse inference: where unstructured sparsity pays", "",
         f"Measured by `{result['command']}` at `{result['commit']}`"
         + (f" on `{result['cpu']}`" if result.get("cpu") else "")
         + f", {result['threads']} kernel thread(s), batch {BATCH}, medians of "
         f"{result['rounds']} rounds"
         + ("; the dense path is the one of the same commit." if _kernel(result).fitted
            else "."), "",
         *_speedup_table(result, sparsities, "speedup", "break_even")]
    L += ["", "Cells: dense time / sparse time of one 3x3 conv with its epilogue (above 1: the "
          "sparse kernel is faster)."
          + (" Break-even: where a least-squares line of the sparse times from 30 % on, "
             "against density, meets the median dense time." if _kernel(result).fitted
             else ""), ""]
    if "break_even_per_image" in result["layers"]:
        L += ["The per-image kernel that the batched one replaced, same run:", "",
              *_speedup_table(result, sparsities, "per_image_speedup", "break_even_per_image"),
              ""]
    best = max((r for rows in result["layers"]["shapes"].values() for r in rows),
               key=lambda r: r["sparse_useful_gflops"])
    dense_peak = max(r["dense_gflops"] for rows in result["layers"]["shapes"].values()
                     for r in rows)
    L += [f"What limits the kernel: at best it does {best['sparse_useful_gflops']:.1f} useful "
          f"GFLOP/s (multiply-adds of non-zeros only), against {dense_peak:.1f} GFLOP/s for the "
          "dense path (every weight); sparse pays once the fraction of weights it skips "
          "outweighs that ratio.", ""]
    calibrated = result.get("calibrated_break_even")
    if calibrated:
        L += ["Which convs of a model take the sparse path is decided by the break-even this "
              "CPU's calibration measured (`kernels/sparse_break_even.py`, cached per CPU): "
              + ", ".join(f"{label} {'never' if v is None else f'{v:.0%}'}"
                          for label, v in calibrated.items()) + ".", ""]
    models = [*result.get("models", {}).items(),
              *((f"{name} (`{m['file']}`)", m) for name, m in result.get("lab_models", {}).items())]
    L += table(["model", "dense img/s", "sparse img/s", "speedup", "sparse convs"], "lrrrr",
               ([name, f"{m['dense_img_s']:.0f}", f"{m['sparse_img_s']:.0f}",
                 f"{m['speedup']:.2f}x", m["sparse_layers"]] for name, m in models))
    torch = result.get("torch_dense_img_s")
    if torch:
        fastest = max(m["sparse_img_s"] for m in result.get("models", {}).values())
        L += ["", f"PyTorch dense on the same machine and threads: {torch:.0f} img/s; our "
              f"fastest sparse model runs at {fastest / torch:.2f}x of it."]
    elif "torch_dense_img_s" in result:
        L += ["", "PyTorch was not importable when this ran, so its dense figure is missing "
              "(`pip install -e \".[bench]\"`)."]
    L += ["", "![speed against sparsity](sparse/speedup.png)", ""]
    L += ["## Targets", "", *target_lines(result), ""]
    if result.get("note"):
        L += [f"Conditions: {result['note']}", ""]
    return "\n".join(L)


def target_lines(result: dict) -> list[str]:
    """Each target of the issue the run was made for, met or not, from the numbers."""
    kernel = _kernel(result)
    be = result["layers"]["break_even"]
    worst = max((v if v is not None else 1.0) for v in be.values())
    models = result.get("models", {})
    at95 = {label: next(r["speedup"] for r in rows if r["sparsity"] == 0.95)
            for label, rows in result["layers"]["shapes"].items()}
    limit = kernel.break_even_target
    lines = [f"* Break-even at or below {limit * 100:.0f} % for every shape: "
             f"{'met' if worst <= limit else 'not met'} (worst {worst:.0%})."]
    if models:
        slowest = min(m["speedup"] for m in models.values())
        lines.append(f"* 80 %-sparse models at least 1.5x faster than our dense path: "
                     f"{'met' if slowest >= 1.5 else 'not met'} (measured "
                     + ", ".join(f"{n} {m['speedup']:.2f}x" for n, m in models.items()) + ").")
    # the table of 95 % speedups lists the stride-1 body shapes (CxHxW); the stride-2
    # convs and the 3-channel head conv are shown beside, judged on their own
    body = {k: v for k, v in at95.items() if "->" not in k}
    judged = body or at95
    others = {k: v for k, v in at95.items() if k not in judged}
    slowest95 = min(judged.values())
    line = (f"* At 95 % at least 3x faster than dense, every stride-1 body shape: "
            f"{'met' if slowest95 >= 3 else 'not met'} ("
            + ", ".join(f"{k} {v:.2f}x" for k, v in judged.items()) + ")")
    if others:
        reached = [k for k, v in others.items() if v >= 3]
        line += ("; the other shapes " + ("also reach it" if len(reached) == len(others)
                                          else "reach " + ", ".join(
                                              f"{k} {v:.2f}x" for k, v in others.items())))
    lines.append(line + ".")
    lines.append(f"* How it works: {kernel.how}")
    return lines


def write_figure(result: dict, path: Path) -> None:
    """Speed of the sparse kernel over dense against sparsity, one line per shape."""
    fig, ax = pyplot().subplots(figsize=(6.4, 4.0))
    for label, rows in result["layers"]["shapes"].items():
        ax.plot([r["sparsity"] for r in rows], [r["speedup"] for r in rows], "o-", label=label)
    ax.axhline(1, color="black", lw=0.8, ls=":")
    ax.set_xlabel("sparsity of the 3x3 conv")
    ax.set_ylabel("speedup of the sparse kernel over dense")
    ax.set_title(f"Direct sparse conv, batch {BATCH}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    save_figure(fig, path)


def write_report(out_dir: str | Path) -> Path | None:
    """Re-render ``out_dir/sparse.md`` and ``sparse/speedup.png`` from ``sparse.json``;
    None when there is none."""
    path = Path(out_dir) / "sparse.json"
    if not path.is_file():
        return None
    result = json.loads(path.read_text())
    write_figure(result, Path(out_dir) / "sparse" / "speedup.png")
    page = Path(out_dir) / "sparse.md"
    page.write_text(render(result))
    return page
