"""The direct 3x3 kernels (the register-tiled forward of `kernels/direct_conv_tiled.py`,
the grad-weight of `kernels/direct_conv.py`) against the im2col + GEMM path, per layer.

    python benchmarks/bench_direct_conv.py [--batch 100] [--rounds 7] [--json PATH]
                                           [--baseline REV]

For each stride-1 3x3 shape of ResNet-20 (stage 1: 16 -> 16 at 32x32, stage 2: 32 -> 32 at
16x16, stage 3: 64 -> 64 at 8x8) times, in alternating rounds (median), the forward and the
weight gradient of one batch on the kernel threads (each thread its part of the batch, as
`conv._forward` and `conv._backward` split it) by im2col + GEMM and by the direct kernels,
and prints ms, GFLOP/s (2 flops per multiply-add) and the ratio. The grad-input of these
convs is the same forward on flipped weights, so the forward's figures apply to it. Checks
first that the paths agree (max relative difference). ``--baseline REV`` times, in the same
rounds, the direct grad-weight as it was at git revision REV too
(`kernels/direct_conv.py` read with ``git show``): the before and after of a kernel change,
measured in one run.

Speed is a benchmark's business, never a test's: nothing here asserts a time.

Like the command line, the script first applies the allocator setting of `kernels/memory.py`
(``MINITORCH_KEEP_FREED_MEMORY=0`` leaves malloc alone).
"""

from __future__ import annotations

import argparse
import importlib.util
import inspect
import json
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

# (name, channels, size): K = C for every stride-1 3x3 conv of ResNet-20's stages
SHAPES = [("stage 1 16->16 32x32", 16, 32), ("stage 2 32->32 16x16", 32, 16),
          ("stage 3 64->64 8x8", 64, 8)]


def module_at(rev: str):
    """`kernels/direct_conv.py` as it was at git revision `rev`, imported as a module of its
    own (from a temporary folder, which also holds its numba cache); exits with one line if
    git does not know `rev`."""
    source = "minitorch_compress/kernels/direct_conv.py"
    shown = subprocess.run(["git", "show", f"{rev}:{source}"], capture_output=True, text=True,
                           cwd=Path(__file__).resolve().parents[1])
    if shown.returncode != 0:
        print(f"bench_direct_conv: --baseline {rev!r}: git show found no {source} there "
              "(give a commit, branch or tag of this repository)", file=sys.stderr)
        raise SystemExit(2)
    path = Path(tempfile.mkdtemp(prefix="direct_conv_baseline_")) / (
        "direct_conv_" + re.sub(r"\W", "_", rev) + ".py")
    path.write_text(shown.stdout)
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def paths(baseline: str | None = None):
    """{op: {path name: fn}} of the forward (fn(x, w, y)) and grad-weight (fn(gy, x, out))
    paths, each run on the kernel threads; with `baseline`, also the direct grad-weight of
    that git revision."""
    from minitorch_compress.kernels import conv, direct_conv, direct_conv_tiled, dispatch
    from minitorch_compress.kernels.common import epilogue_args

    no_epilogue = epilogue_args(None, 4, np.dtype(np.float32))

    def gemm_grad_weight(gy, x):
        """grad_w (K, C*9) by im2col + GEMM: the table's direct grad-weight switched off."""
        saved = dispatch.grad_weight_kernel
        # (both threads set the same value)
        dispatch.grad_weight_kernel = lambda *_: dispatch.GEMM_GRAD_WEIGHT
        try:  # (the GEMM path returns grad_w transposed)
            return conv._backward_serial(gy, x, None, (gy.shape[1], x.shape[1], 3, 3), 1, 1,
                                         None, True).T
        finally:
            dispatch.grad_weight_kernel = saved

    def on_threads(serial):
        def run(x, w, y):
            conv._run_parts([(serial, (x[a:b], w, y[a:b])) for a, b in conv._batch_parts(len(x))])
        return run

    def summed(serial):
        def run(gy, x, out):
            parts = conv._run_parts([(serial, (gy[a:b], x[a:b]))
                                     for a, b in conv._batch_parts(len(x))])
            out[...] = sum(parts[1:], parts[0])
        return run

    def tiled(vectors):
        return on_threads(lambda x, w, y: direct_conv_tiled.tiled3x3_forward_serial(
            x, w, 1, y, no_epilogue, vectors))

    def direct_grad_weight(lanes):
        return summed(lambda gy, x: direct_conv.direct3x3_grad_weight_serial(
            gy, x, 1, lanes).reshape(gy.shape[1], -1))

    ops = {
        "forward": {
            "im2col": on_threads(lambda x, w, y: conv._forward_cols(x, w, 1, 1, y)),
            # both tiles, whichever this CPU takes by default (dispatch.TILE_VECTORS)
            "tiled, 4x4": tiled(4),
            "tiled, 4x3": tiled(3),
        },
        "grad-weight": {
            "im2col": summed(gemm_grad_weight),
            # both widths, whichever this CPU takes (dispatch.grad_weight_lanes)
            "direct, 16 lanes": direct_grad_weight(16),
            "direct, 8 lanes": direct_grad_weight(8),
        },
    }
    if baseline is not None:
        old = module_at(baseline)
        # its last argument: the vector width (`lanes`), or, before the channels-last
        # kernel, whether to take two output channels a pass (`pairs`; True on AVX-512)
        takes_lanes = "lanes" in inspect.signature(old.direct3x3_grad_weight_serial).parameters
        ops["grad-weight"][f"direct @ {baseline}"] = summed(
            lambda gy, x: old.direct3x3_grad_weight_serial(
                gy, x, 1, dispatch.grad_weight_lanes(x.shape[1]) if takes_lanes
                else dispatch.WIDE_VECTORS).reshape(gy.shape[1], -1))
    return ops


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--repeats", type=int, default=5, help="calls per round (median)")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--baseline", metavar="REV", default=None,
                        help="also time the direct grad-weight of this git revision "
                             "(before/after)")
    args = parser.parse_args()
    from minitorch_compress.kernels.memory import keep_freed_memory
    keep_freed_memory()  # the allocator setting the command line applies (kernels/memory.py)
    from minitorch_compress.kernels.parallel import get_num_threads as worker_count

    rng = np.random.default_rng(0)
    ops = paths(args.baseline)
    rows = []
    print(f"batch {args.batch}, {worker_count()} kernel thread(s), {args.rounds} alternating "
          f"rounds of {args.repeats} calls (median)")
    for name, c, size in SHAPES:
        x = rng.standard_normal((args.batch, c, size, size)).astype(np.float32)
        w = (rng.standard_normal((c, c, 3, 3)) * 0.1).astype(np.float32)
        gy = rng.standard_normal((args.batch, c, size, size)).astype(np.float32)
        for op, fns in ops.items():
            inputs = (x, w) if op == "forward" else (gy, x)
            shape = (args.batch, c, size, size) if op == "forward" else (c, c * 9)
            outs = {key: np.empty(shape, np.float32) for key in fns}
            for key, fn in fns.items():
                fn(*inputs, outs[key])  # compile / load the cache, check agreement
            ref = outs["im2col"]
            times = {key: [] for key in fns}
            for _ in range(args.rounds):
                for key, fn in fns.items():
                    calls = []
                    for _ in range(args.repeats):
                        t0 = time.perf_counter()
                        fn(*inputs, outs[key])
                        calls.append(time.perf_counter() - t0)
                    times[key].append(statistics.median(calls))
            flops = 2 * args.batch * c * c * 9 * size * size
            base = statistics.median(times["im2col"])
            for key in fns:
                med = statistics.median(times[key])
                err = float(np.abs(outs[key] - ref).max() / np.abs(ref).max())
                row = {"shape": name, "op": op, "path": key, "ms": med * 1e3,
                       "gflops": flops / med / 1e9, "speedup": base / med,
                       "range_ms": [min(times[key]) * 1e3, max(times[key]) * 1e3],
                       "max_rel_diff": err}
                rows.append(row)
                print(f"  {name:22s} {op:11s} {key:24s} {row['ms']:7.2f} ms "
                      f"({row['gflops']:5.1f} GFLOP/s)  x{row['speedup']:.2f} of im2col  "
                      f"(max rel diff {err:.1e})", flush=True)
    if args.json is not None:
        args.json.write_text(json.dumps({"batch": args.batch, "threads": worker_count(),
                                         "baseline": args.baseline, "rows": rows}, indent=1))
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
