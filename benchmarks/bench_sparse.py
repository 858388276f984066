"""Where unstructured sparsity pays: our direct sparse conv against our dense conv.

    python benchmarks/bench_sparse.py --json results/sparse.json --page results/sparse.md

Measures, in one run and on the kernel threads this machine gives (``MINITORCH_NUM_THREADS``):

* per 3x3 layer shape of ResNet-20 at batch 100 (16x32x32, 32x16x16, 64x8x8, stride 1), the
  inference time of the dense fused path (`conv2d_affine_forward`: im2col + GEMM + epilogue)
  and of the sparse one (`sparse_conv2d_forward`, same epilogue; its default batched kernel
  and the per-image kernel it replaced) at sparsity 0 .. 98 %, medians of rounds, and the
  break-even sparsity from which sparse is faster;
* whole-model inference images/s at batch 100 for the pretrained model pruned to 80 % per
  layer (Lab 2 (b)'s rule) and globally (Lab 2 (e)'s rule): dense path, sparse path (every
  conv at or above its shape's break-even), and their ratio; PyTorch's dense figure beside
  them when torch is importable.

Speed is a benchmark's business, never a test's: nothing here asserts a time.

Like the command line, the script first applies the allocator setting of `kernels/memory.py`
(``MINITORCH_KEEP_FREED_MEMORY=0`` leaves malloc alone).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np

SHAPES = {"16x32x32": (16, 32), "32x16x16": (32, 16), "64x8x8": (64, 8)}
SPARSITIES = (0.0, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.98)
BATCH = 100


def _alternating(fns, rounds: int) -> list[float]:
    """Median seconds of each of `fns`, timed in alternating rounds (fn 1, fn 2, ..., fn 1,
    ...), so that the machine's drift (its dense speed moved by 1.5x between runs 10 minutes
    apart) falls on all of them alike and their ratios hold."""
    for fn in fns:
        fn()  # compile / warm
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(rounds):
        for fn, spent in zip(fns, times, strict=True):
            start = time.perf_counter()
            fn()
            spent.append(time.perf_counter() - start)
    return [statistics.median(t) for t in times]


def layer_sweep(rounds: int) -> dict:
    """Dense and sparse time per shape and sparsity, and each shape's break-even."""
    from minitorch_compress.kernels.conv import conv2d_affine_forward
    from minitorch_compress.kernels.sparse_conv import SparseWeights, sparse_conv2d_forward

    rng = np.random.default_rng(0)
    out: dict = {"shapes": {}, "break_even": {}}
    for label, (c, hw) in SHAPES.items():
        x = rng.standard_normal((BATCH, c, hw, hw)).astype(np.float32)
        coef = np.stack([np.ones(c), np.zeros(c)], 1).astype(np.float32)
        rows = []
        for s in SPARSITIES:
            w = rng.standard_normal((c, c, 3, 3)).astype(np.float32)
            w[rng.random(w.shape) < s] = 0
            sw = SparseWeights.from_dense(w)
            dense, sparse, per_image = _alternating([
                lambda x=x, w=w, coef=coef: conv2d_affine_forward(x, w, 1, 1, coef, relu=True),
                lambda x=x, sw=sw, coef=coef: sparse_conv2d_forward(x, sw, 1, 1, coef, True),
                lambda x=x, sw=sw, coef=coef: sparse_conv2d_forward(
                    x, sw, 1, 1, coef, True, batched=False)], rounds)
            useful = 2 * sw.values.size * hw * hw * BATCH  # multiply-adds of the non-zeros
            rows.append({"sparsity": s, "dense_ms": dense * 1e3, "sparse_ms": sparse * 1e3,
                         "speedup": dense / sparse, "sparse_useful_gflops": useful / sparse / 1e9,
                         "per_image_ms": per_image * 1e3, "per_image_speedup": dense / per_image,
                         "dense_gflops": 2 * w.size * hw * hw * BATCH / dense / 1e9})
            print(f"{label} sparsity {s:.2f}: dense {dense * 1e3:7.2f} ms, sparse "
                  f"{sparse * 1e3:7.2f} ms ({dense / sparse:.2f}x), per-image kernel "
                  f"{per_image * 1e3:7.2f} ms ({dense / per_image:.2f}x)", flush=True)
        out["shapes"][label] = rows
        out["break_even"][label] = break_even(rows)
        out.setdefault("break_even_per_image", {})[label] = break_even(
            [{**r, "speedup": r["per_image_speedup"]} for r in rows])
    return out


def break_even(rows: list[dict]) -> float | None:
    """The sparsity where sparse becomes faster (linear between measured points), or None."""
    for before, after in zip(rows, rows[1:], strict=False):
        if before["speedup"] < 1 <= after["speedup"]:
            t = (1 - before["speedup"]) / (after["speedup"] - before["speedup"])
            return before["sparsity"] + t * (after["sparsity"] - before["sparsity"])
    return rows[0]["sparsity"] if rows[0]["speedup"] >= 1 else None


def model_speed(break_even_by_shape: dict, rounds: int) -> dict:
    """Whole-model images/s at batch 100, dense and sparse, for two 80 %-sparse models."""
    from minitorch_compress import Tensor, no_grad
    from minitorch_compress.compression import global_prune_by_percentage, prune_model_by_percentage
    from minitorch_compress.models.pretrained import load_pretrained
    from minitorch_compress.models.resnet import to_sparse

    table = {}
    for label, (c, _) in SHAPES.items():
        if break_even_by_shape.get(label) is not None:
            table[(c, 3, 1)] = break_even_by_shape[label]
    x = Tensor(np.random.default_rng(1).standard_normal((BATCH, 3, 32, 32)).astype(np.float32))
    out = {}
    for name, prune in (("per_layer_80", lambda m: prune_model_by_percentage(m, 0.8)),
                        ("global_80", lambda m: global_prune_by_percentage(m, 0.8))):
        model, sparse_model = load_pretrained(), load_pretrained()
        prune(model)
        prune(sparse_model)
        with no_grad():
            chosen = to_sparse(sparse_model, break_even=table)
            dense, sparse = _alternating(
                [lambda m=model: m(x), lambda m=sparse_model: m(x)], rounds)
        out[name] = {"dense_img_s": BATCH / dense, "sparse_img_s": BATCH / sparse,
                     "speedup": dense / sparse, "sparse_layers": len(chosen)}
        print(f"{name}: dense {BATCH / dense:.0f} img/s, sparse {BATCH / sparse:.0f} img/s "
              f"({dense / sparse:.2f}x, {len(chosen)} convs on the sparse path)", flush=True)
    return out


def lab_model_speed(table: dict, rounds: int) -> dict:
    """The same for the committed Lab 2 model files (``results/models/lab2_*.mtc``): the
    speedup Lab 2's own sparse models get, for its report."""
    from minitorch_compress import Tensor, no_grad
    from minitorch_compress.models.pretrained import load_pretrained
    from minitorch_compress.models.resnet import to_sparse
    from minitorch_compress.paths import RESULTS_DIR, shown

    x = Tensor(np.random.default_rng(1).standard_normal((BATCH, 3, 32, 32)).astype(np.float32))
    out = {}
    for path in sorted((RESULTS_DIR / "models").glob("lab2_*.mtc")):
        model, sparse_model = load_pretrained(path), load_pretrained(path)
        with no_grad():
            chosen = to_sparse(sparse_model, break_even=table)
            dense, sparse = _alternating(
                [lambda m=model: m(x), lambda m=sparse_model: m(x)], rounds)
        out[path.stem] = {"file": shown(path), "dense_img_s": BATCH / dense,
                          "sparse_img_s": BATCH / sparse, "speedup": dense / sparse,
                          "sparse_layers": len(chosen)}
        print(f"{path.stem}: dense {BATCH / dense:.0f} img/s, sparse {BATCH / sparse:.0f} "
              f"img/s ({dense / sparse:.2f}x)", flush=True)
    return out


def torch_dense_img_s(rounds: int) -> float | None:
    """PyTorch's dense inference images/s at batch 100 on this machine and thread count (the
    ResNet-20 of bench_resnet20.py, in a child process), or None without torch."""
    import importlib.util
    import sys

    if importlib.util.find_spec("torch") is None:
        return None
    from minitorch_compress.kernels.parallel import get_num_threads

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from bench_resnet20 import bench_torch_in_child

    figures = bench_torch_in_child(rounds, get_num_threads(), False)
    return None if figures is None else figures["infer_img_per_s_b100"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path, default=None, help="write the figures here")
    parser.add_argument("--page", type=Path, default=None, help="write results/sparse.md")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--no-models", action="store_true", help="layer sweep only")
    parser.add_argument("--note", default="", help="measurement conditions, for the page")
    args = parser.parse_args()
    from minitorch_compress.kernels.memory import keep_freed_memory
    keep_freed_memory()  # the allocator setting the command line applies (kernels/memory.py)
    from minitorch_compress.experiments.common import git_commit
    from minitorch_compress.kernels.parallel import get_num_threads

    layers = layer_sweep(args.rounds)
    result = {"command": "python benchmarks/bench_sparse.py --json results/sparse.json "
                         "--page results/sparse.md", "commit": git_commit(),
              "threads": get_num_threads(), "rounds": args.rounds, "layers": layers,
              "break_even": layers["break_even"], "note": args.note}
    if not args.no_models:
        result["models"] = model_speed(layers["break_even"], args.rounds)
        table = {(c, 3, 1): layers["break_even"][label] for label, (c, _) in SHAPES.items()
                 if layers["break_even"].get(label) is not None}
        result["lab_models"] = lab_model_speed(table, args.rounds)
        result["torch_dense_img_s"] = torch_dense_img_s(args.rounds)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    if args.page:
        from minitorch_compress.reports.sparse import render, write_figure

        write_figure(result, args.page.parent / "sparse" / "speedup.png")
        args.page.write_text(render(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
