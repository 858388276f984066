"""Where unstructured sparsity pays: our direct sparse conv against our dense conv.

    python benchmarks/bench_sparse.py --json results/sparse.json --page results/sparse.md
    python benchmarks/bench_sparse.py --calibrate     # this CPU's break-evens, measured again

Measures, in one run and on the kernel threads this machine gives (``MINITORCH_NUM_THREADS``):

* per 3x3 conv shape of ResNet-20 at batch 100 (stride 1 and the two stride-2 convs), the
  inference time of the dense fused path (`conv2d_affine_forward`) and of the sparse one
  (`sparse_conv2d_forward`, same epilogue) at sparsity 0 .. 98 %, medians of alternating
  rounds, and the break-even sparsity from which sparse is faster (`break_even`);
* whole-model inference images/s at batch 100 for the pretrained model pruned to 80 % per
  layer (Lab 2 (b)'s rule) and globally (Lab 2 (e)'s rule), and for the committed Lab 2
  model files: dense path, sparse path (the convs `to_sparse` chooses from this CPU's
  calibrated break-evens, `kernels/sparse_break_even.py`), and their ratio; PyTorch's dense
  figure beside them when torch is importable.

``--calibrate`` measures the calibration of every ResNet-20 3x3 shape again (the one `to_sparse`
runs at a shape's first use and caches under the CPU's name) and prints it.

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

SPARSITIES = (0.0, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.98)
BATCH = 100


def conv_shapes() -> dict:
    """{label: ConvGeometry} of ResNet-20's 3x3 convs ("16x32x32": 16 -> 16 channels on
    32x32 inputs; "16->32x32x32 s2": 16 -> 32, stride 2)."""
    from minitorch_compress.kernels.dispatch import RESNET20_CONVS
    from minitorch_compress.kernels.sparse_break_even import ConvGeometry

    shapes = {}
    for shape in RESNET20_CONVS:
        if shape.kernel != 3:
            continue
        label = (f"{shape.k}x{shape.size}x{shape.size}" if shape.c == shape.k
                 else f"{shape.c}->{shape.k}x{shape.size}x{shape.size}")
        label += " s2" if shape.stride == 2 else ""
        shapes[label] = ConvGeometry(shape.c, shape.k, shape.size, shape.kernel, shape.stride,
                                     shape.padding)
    return shapes


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
    for label, (c, k, size, kernel, stride, padding) in conv_shapes().items():
        x = rng.standard_normal((BATCH, c, size, size)).astype(np.float32)
        coef = np.stack([np.ones(k), np.zeros(k)], 1).astype(np.float32)
        rows = []
        for s in SPARSITIES:
            w = rng.standard_normal((k, c, kernel, kernel)).astype(np.float32)
            w[rng.random(w.shape) < s] = 0
            sw = SparseWeights.from_dense(w)
            dense, sparse = _alternating([
                lambda x=x, w=w, coef=coef, st=stride, p=padding: conv2d_affine_forward(
                    x, w, st, p, coef, relu=True),
                lambda x=x, sw=sw, coef=coef, st=stride, p=padding: sparse_conv2d_forward(
                    x, sw, st, p, coef, True)], rounds)
            out_pixels = ((size + 2 * padding - kernel) // stride + 1) ** 2
            useful = 2 * sw.values.size * out_pixels * BATCH  # multiply-adds of the non-zeros
            rows.append({"sparsity": s, "dense_ms": dense * 1e3, "sparse_ms": sparse * 1e3,
                         "speedup": dense / sparse, "sparse_useful_gflops": useful / sparse / 1e9,
                         "dense_gflops": 2 * w.size * out_pixels * BATCH / dense / 1e9})
            print(f"{label} sparsity {s:.2f}: dense {dense * 1e3:7.2f} ms, sparse "
                  f"{sparse * 1e3:7.2f} ms ({dense / sparse:.2f}x)", flush=True)
        out["shapes"][label] = rows
        out["break_even"][label] = break_even(rows)
    return out


def break_even(rows: list[dict]) -> float | None:
    """The sparsity from which sparse is faster, fitted as the calibration does
    (`sparse_break_even.break_even_from_timings`: a least-squares line of sparse time against
    density over the rows from 30 % on, against the median dense time), so one noisy row
    cannot move it far; None where sparse never wins."""
    from minitorch_compress.kernels import sparse_break_even as sbe

    dense = statistics.median(r["dense_ms"] for r in rows)
    sparse = {r["sparsity"]: r["sparse_ms"] for r in rows if r["sparsity"] >= sbe.MIN_SPARSITY}
    value = sbe.break_even_from_timings(dense, sparse)
    return None if value > 1 else value


def calibrated_break_even(again: bool = False) -> dict:
    """{label: this CPU's calibrated break-even} of every ResNet-20 3x3 shape, as `to_sparse`
    uses it (`again`: measure now, replacing the cached figures). None where never."""
    from minitorch_compress.kernels import sparse_break_even as sbe

    out = {}
    for label, shape in conv_shapes().items():
        value = sbe.calibrate(shape) if again else sbe.break_even(shape)
        out[label] = None if value > 1 else value
        print(f"calibrated break-even {label}: "
              f"{'never' if value > 1 else f'{value:.0%}'}", flush=True)
    return out


def model_speed(rounds: int) -> dict:
    """Whole-model images/s at batch 100, dense and sparse, for two 80 %-sparse models (the
    sparse convs chosen by `to_sparse` from this CPU's calibrated break-evens)."""
    from minitorch_compress import Tensor, no_grad
    from minitorch_compress.compression import global_prune_by_percentage, prune_model_by_percentage
    from minitorch_compress.models.pretrained import load_pretrained
    from minitorch_compress.models.resnet import to_sparse

    x = Tensor(np.random.default_rng(1).standard_normal((BATCH, 3, 32, 32)).astype(np.float32))
    out = {}
    for name, prune in (("per_layer_80", lambda m: prune_model_by_percentage(m, 0.8)),
                        ("global_80", lambda m: global_prune_by_percentage(m, 0.8))):
        model, sparse_model = load_pretrained(), load_pretrained()
        prune(model)
        prune(sparse_model)
        with no_grad():
            chosen = to_sparse(sparse_model)
            dense, sparse = _alternating(
                [lambda m=model: m(x), lambda m=sparse_model: m(x)], rounds)
        out[name] = {"dense_img_s": BATCH / dense, "sparse_img_s": BATCH / sparse,
                     "speedup": dense / sparse, "sparse_layers": len(chosen)}
        print(f"{name}: dense {BATCH / dense:.0f} img/s, sparse {BATCH / sparse:.0f} img/s "
              f"({dense / sparse:.2f}x, {len(chosen)} convs on the sparse path)", flush=True)
    return out


def lab_model_speed(rounds: int) -> dict:
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
            chosen = to_sparse(sparse_model)
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
    parser.add_argument("--calibrate", action="store_true",
                        help="measure this CPU's break-even of every ResNet-20 3x3 shape again "
                             "(the cache to_sparse reads), print it and stop")
    parser.add_argument("--note", default="", help="measurement conditions, for the page")
    args = parser.parse_args()
    from minitorch_compress.kernels.memory import keep_freed_memory
    keep_freed_memory()  # the allocator setting the command line applies (kernels/memory.py)
    if args.calibrate:
        calibrated_break_even(again=True)
        return 0
    from minitorch_compress.experiments.common import git_commit
    from minitorch_compress.kernels.common import cpu_name
    from minitorch_compress.kernels.parallel import get_num_threads
    from minitorch_compress.kernels.sparse_conv import KERNEL_VERSION

    layers = layer_sweep(args.rounds)
    result = {"command": "python benchmarks/bench_sparse.py --json results/sparse.json "
                         "--page results/sparse.md", "commit": git_commit(), "cpu": cpu_name(),
              "sparse_kernel": KERNEL_VERSION,
              "threads": get_num_threads(), "rounds": args.rounds, "layers": layers,
              "break_even": layers["break_even"], "note": args.note}
    if not args.no_models:
        result["calibrated_break_even"] = calibrated_break_even()
        result["models"] = model_speed(args.rounds)
        result["lab_models"] = lab_model_speed(args.rounds)
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
