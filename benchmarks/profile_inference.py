"""Profile: where one ResNet-20 inference batch goes, ours beside PyTorch, layer by layer, and
the bound our conv kernels put on the inference ratio.

Usage::

    python benchmarks/profile_inference.py [--threads 2] [--batch 100] [--rounds 5]
                                           [--repeats 7] [--json PATH]
    python benchmarks/profile_inference.py --from-json PATH   # the tables of a saved profile

Each round times, on the same random input batch, in eval mode:

* **ours, in the model**: every conv call of one forward (`kernels.conv.conv2d_affine_forward`,
  which runs conv -> batch norm (-> residual add) (-> ReLU) as one fused kernel), by a timing
  wrapper, and the whole forward; what the convs do not account for is "the rest" (pooling,
  FC, glue);
* **ours, each conv alone, on every path** the kernels have for it ("default": what
  `kernels/dispatch.py` picks, the register-tiled kernel for every 3x3 conv; "im2col":
  im2col + GEMM), called with that conv's own inputs from the model: the fastest path per
  layer says what the current kernels can do at best;
* **PyTorch** (in a child process, as `bench_resnet20.py` runs it, after one training step
  as there): the same network, each `Conv2d` and each conv + batch norm (+ ReLU) module
  timed by forward hooks, and the whole forward.

Layers are grouped by shape (e.g. the five 3x3 32 -> 32 convs at 16x16) and the medians over
the rounds are printed per group, with GFLOP/s (2 flops per multiply-add). The bound: our
forward takes at least the sum of its convs at their fastest path, so ours / PyTorch in
images/s is at most PyTorch's whole forward divided by that sum, whatever the rest costs.
Nothing is asserted; speed is a benchmark's business.

Like the command line, the script first applies the allocator setting of `kernels/memory.py`
(``MINITORCH_KEEP_FREED_MEMORY=0`` leaves malloc alone).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from collections import defaultdict

# first: bench_resnet20 fixes the thread counts from --threads before numpy starts its pools
from bench_resnet20 import median_time, torch_resnet20
from sweep_inference import (
    apply,
    check_counts,
    print_and_save,
    print_saved,
    random_inference,
    timing_parser,
)

# path name -> kernel constants it overrides (`sweep_inference.apply`); each one is only
# timed on the 3x3 convs, the others have one path
PATHS: dict[str, dict[tuple[str, str], object]] = {
    "default": {},
    "im2col": {("dispatch", "forward_kernel"): lambda *_: "im2col_gemm"},
}


def layer_key(cin: int, cout: int, k: int, stride: int, size: int) -> str:
    """The group a conv belongs to, e.g. '3x3 32->32 s1 @16x16' (size: input height)."""
    return f"{k}x{k} {cin}->{cout} s{stride} @{size}x{size}"


def macs(cin: int, cout: int, k: int, stride: int, size: int) -> int:
    """Multiply-adds of one image through this conv (padding k // 2)."""
    out = (size + 2 * (k // 2) - k) // stride + 1
    return cin * cout * k * k * out * out


# ----------------------------------------------------------------------------- ours
def profile_ours(batch: int, repeats: int) -> dict:
    """{"layers": [{key, macs, in_model_s, paths: {name: s}}], "forward_s": s} for one round."""
    from minitorch_compress.kernels.sets import FAST  # what the fused op calls

    infer = random_inference(batch)
    original = FAST.conv2d_affine_forward
    calls: list[tuple] = []  # each conv's arguments, from the first forward
    spent: list[list[float]] = []  # per conv, its times over the timed forwards
    index = [0]

    def timed(*args, **kwargs):
        start = time.perf_counter()
        out = original(*args, **kwargs)
        elapsed = time.perf_counter() - start
        i = index[0]
        index[0] += 1
        if len(calls) <= i:
            calls.append((args, kwargs))
            spent.append([])
        else:
            spent[i].append(elapsed)
        return out

    FAST.conv2d_affine_forward = timed
    try:
        infer()  # records the calls (and compiles); not timed
        for _ in range(repeats):
            index[0] = 0
            infer()
    finally:
        FAST.conv2d_affine_forward = original
    forward_s = median_time(infer, repeats, warmup=1)

    layers = []
    for (args, kwargs), times in zip(calls, spent, strict=True):
        xa, w, stride = args[0], args[1], args[2]
        cin, cout, k, size = w.shape[1], w.shape[0], w.shape[2], xa.shape[2]
        paths = {}
        names = list(PATHS) if k == 3 else ["default"]
        for name in names:
            restore = apply(PATHS[name])
            try:
                paths[name] = median_time(lambda a=args, kw=kwargs: original(*a, **kw), repeats)
            finally:
                restore()
        layers.append({"key": layer_key(cin, cout, k, stride, size),
                       "macs": macs(cin, cout, k, stride, size),
                       "in_model_s": statistics.median(times), "paths": paths})
    return {"layers": layers, "forward_s": forward_s}


# ----------------------------------------------------------------------------- PyTorch
def profile_torch(batch: int, repeats: int, threads: int) -> dict | None:
    """PyTorch's figures for one round ({"layers": [...], "forward_s": s}), None without torch.

    Each conv + batch norm (+ ReLU) `Sequential` and each `Conv2d` in it is timed by a
    pre- and post-forward hook (PyTorch runs CPU ops synchronously, so the wall time between
    them is the module's)."""
    try:
        import torch
        from torch import nn
    except ImportError:
        return None
    model = torch_resnet20(threads)
    # One training step first, as in `bench_resnet20.py`, whose PyTorch infers after its
    # training steps. It matters: glibc raises its mmap threshold once large blocks have been
    # freed, and until then every large activation is a fresh mmap whose pages fault in (a
    # fresh process that only infers ran at about half the speed here; ours sets the
    # threshold at import, `kernels/memory.py`).
    optimizer = torch.optim.SGD(model.parameters(), lr=0.002, momentum=0.875)
    nn.functional.cross_entropy(model(torch.randn(256, 3, 32, 32)),
                                torch.randint(0, 10, (256,))).backward()
    optimizer.step()
    model.eval()
    x = torch.randn(batch, 3, 32, 32)
    started: dict[int, float] = {}
    spent: dict[int, list[float]] = defaultdict(list)
    units = [m for m in model.modules()
             if isinstance(m, nn.Sequential) and m is not model and isinstance(m[0], nn.Conv2d)]
    sizes: dict[int, int] = {}

    def pre(module, inputs):
        sizes[id(module)] = inputs[0].shape[2]
        started[id(module)] = time.perf_counter()

    def post(module, inputs, output):
        spent[id(module)].append(time.perf_counter() - started[id(module)])

    handles = [hook for unit in units for module in (unit, unit[0])
               for hook in (module.register_forward_pre_hook(pre),
                            module.register_forward_hook(post))]

    def infer() -> None:
        with torch.no_grad():
            model(x)

    infer()
    spent.clear()
    for _ in range(repeats):
        infer()
    layers = []
    for unit in units:
        c = unit[0]
        cin, cout, k, stride = c.in_channels, c.out_channels, c.kernel_size[0], c.stride[0]
        size = sizes[id(unit)]
        layers.append({"key": layer_key(cin, cout, k, stride, size),
                       "macs": macs(cin, cout, k, stride, size),
                       "unit_s": statistics.median(spent[id(unit)]),
                       "conv_s": statistics.median(spent[id(c)])})
    for handle in handles:  # time the whole forward without the hooks' overhead
        handle.remove()
    return {"version": torch.__version__, "layers": layers,
            "forward_s": median_time(infer, repeats, warmup=1)}


def profile_torch_in_child(batch: int, repeats: int, threads: int) -> dict | None:
    """`profile_torch` in a fresh interpreter (as `bench_resnet20.py` runs PyTorch)."""
    env = dict(os.environ)
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env[var] = str(threads)
    cmd = [sys.executable, os.path.abspath(__file__), "--torch-child", "--threads",
           str(threads), "--batch", str(batch), "--repeats", str(repeats)]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        sys.stderr.write(out.stderr)
        raise SystemExit(f"the PyTorch profile child failed (exit {out.returncode})")
    return json.loads(out.stdout.strip().splitlines()[-1])


# ----------------------------------------------------------------------------- summary
def summarise(result: dict) -> dict:
    """Medians over the rounds, grouped by layer key, and the bound (see the module notes)."""
    ours_rounds, torch_rounds = result["ours"], result["pytorch"]
    groups: dict[str, dict] = {}
    for i, layer in enumerate(ours_rounds[0]["layers"]):
        g = groups.setdefault(layer["key"], {"convs": 0, "macs": 0, "in_model_s": 0.0,
                                             "paths": defaultdict(float), "best_s": 0.0,
                                             "best_paths": []})
        g["convs"] += 1
        g["macs"] += layer["macs"]
        g["in_model_s"] += statistics.median(r["layers"][i]["in_model_s"] for r in ours_rounds)
        medians = {name: statistics.median(r["layers"][i]["paths"][name] for r in ours_rounds)
                   for name in layer["paths"]}
        for name, s in medians.items():
            g["paths"][name] += s
        best = min(medians, key=medians.get)
        g["best_s"] += medians[best]
        g["best_paths"].append(best)
    if torch_rounds:
        for i, layer in enumerate(torch_rounds[0]["layers"]):
            g = groups[layer["key"]]
            for field in ("unit_s", "conv_s"):
                g["pytorch_" + field] = g.get("pytorch_" + field, 0.0) + statistics.median(
                    r["layers"][i][field] for r in torch_rounds)
    ours_forward = statistics.median(r["forward_s"] for r in ours_rounds)
    summary = {"groups": {k: {**g, "paths": dict(g["paths"])} for k, g in groups.items()},
               "ours_forward_s": ours_forward,
               "ours_convs_in_model_s": sum(g["in_model_s"] for g in groups.values()),
               "ours_best_convs_s": sum(g["best_s"] for g in groups.values())}
    if torch_rounds:
        pt_forward = statistics.median(r["forward_s"] for r in torch_rounds)
        summary.update(
            pytorch_forward_s=pt_forward,
            pytorch_units_s=sum(g["pytorch_unit_s"] for g in groups.values()),
            pytorch_convs_s=sum(g["pytorch_conv_s"] for g in groups.values()),
            ratio=pt_forward / ours_forward,
            ratio_bound=pt_forward / summary["ours_best_convs_s"])
    return summary


def _ms(seconds: float) -> str:
    return f"{seconds * 1e3:.2f}"


def render(result: dict) -> str:
    """Markdown tables of a profile (its JSON), and the bound in words, from the numbers."""
    s = summarise(result)
    batch, has_pt = result["batch"], "pytorch_forward_s" in s
    path_names = list(PATHS)
    lines = [f"inference, batch {batch}, {result['threads']} threads, host {result['cpu']}, "
             f"median of {result['rounds']} alternating rounds (each the median of "
             f"{result['repeats']} calls); ms per batch:", "",
             "| layers | convs | ours in the model (fused) | PyTorch conv + BN (+ReLU) | "
             "PyTorch conv alone | " + " | ".join(f"ours alone: {p}" for p in path_names)
             + " | speed: ours at the fastest path / PyTorch conv + BN |",
             "|---|---:|---:|---:|---:|" + "---:|" * len(path_names) + "---:|"]
    for key, g in s["groups"].items():
        gflops = 2 * g["macs"] * batch / 1e9
        cells = [f"`{key}`", str(g["convs"]), f"{_ms(g['in_model_s'])} "
                 f"({gflops / g['in_model_s']:.0f} GFLOP/s)"]
        if has_pt:
            cells += [_ms(g["pytorch_unit_s"]),
                      f"{_ms(g['pytorch_conv_s'])} ({gflops / g['pytorch_conv_s']:.0f} GFLOP/s)"]
        else:
            cells += ["", ""]
        cells += [_ms(g["paths"][p]) if p in g["paths"] else "" for p in path_names]
        cells.append(f"{g['pytorch_unit_s'] / g['best_s']:.2f}x" if has_pt else "")
        lines.append("| " + " | ".join(cells) + " |")
    rest = s["ours_forward_s"] - s["ours_convs_in_model_s"]
    lines += ["", f"Ours: the whole forward {_ms(s['ours_forward_s'])} ms, of which the convs "
              f"(fused with batch norm, residual add and ReLU) {_ms(s['ours_convs_in_model_s'])}"
              f" ms and the rest (pooling, FC, glue) {_ms(rest)} ms. Each conv at its fastest "
              f"path, timed alone: {_ms(s['ours_best_convs_s'])} ms in all."]
    if has_pt:
        pt_rest = s["pytorch_forward_s"] - s["pytorch_units_s"]
        lines += ["", f"PyTorch {result['pytorch'][0]['version']}: the whole forward "
                  f"{_ms(s['pytorch_forward_s'])} ms, of which conv + batch norm (+ ReLU) "
                  f"{_ms(s['pytorch_units_s'])} ms (the convs alone "
                  f"{_ms(s['pytorch_convs_s'])} ms) and the rest (residual add + ReLU, "
                  f"pooling, FC, glue) {_ms(pt_rest)} ms.", "",
                  f"Ours / PyTorch in images/s in this profile: {s['ratio']:.2f}. "]
        bound = s["ratio_bound"]
        if bound < 1:
            lines[-1] += (
                f"**The bound: at most {bound:.2f}** with these kernels, even if everything "
                "but the convs cost nothing, since our convs at their fastest paths alone "
                f"take {_ms(s['ours_best_convs_s'])} ms, more than PyTorch's whole forward "
                f"({_ms(s['pytorch_forward_s'])} ms). Reaching 1.0 needs conv kernels "
                f"{1 / bound:.2f}x faster than the best we have, on these layers as a whole.")
        else:
            where = ("so what is left of the gap is in the path choices and the rest, not in "
                     "the kernels" if s["ratio"] < 1 else "and ours is ahead in this profile")
            lines[-1] += (
                f"Our convs at their fastest paths ({_ms(s['ours_best_convs_s'])} ms) fit in "
                f"PyTorch's whole forward ({_ms(s['pytorch_forward_s'])} ms): with these "
                f"kernels the ratio is bounded only at {bound:.2f}, {where}.")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = timing_parser(__doc__.split("\n\n")[0], "profile")
    parser.add_argument("--no-torch", action="store_true", help="skip the PyTorch side")
    parser.add_argument("--torch-child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    check_counts(parser, args)
    if args.torch_child:  # internal: the PyTorch side, printed as one JSON line
        print(json.dumps(profile_torch(args.batch, args.repeats, args.threads)))
        return 0
    from minitorch_compress.kernels.memory import keep_freed_memory
    keep_freed_memory()  # the allocator setting the command line applies (kernels/memory.py)
    if args.from_json:
        return print_saved(args.from_json, render, "profile")

    import llvmlite.binding as llvm

    result = {"cpu": llvm.get_host_cpu_name(), "threads": args.threads, "batch": args.batch,
              "rounds": args.rounds, "repeats": args.repeats, "ours": [], "pytorch": []}
    for r in range(args.rounds):
        result["ours"].append(profile_ours(args.batch, args.repeats))
        if not args.no_torch:
            theirs = profile_torch_in_child(args.batch, args.repeats, args.threads)
            if theirs is None:
                print("(PyTorch not importable: `pip install -e .[bench]` for its side)")
                args.no_torch = True
            else:
                result["pytorch"].append(theirs)
        ours_ips = args.batch / result["ours"][-1]["forward_s"]
        line = f"round {r + 1}/{args.rounds}: ours {ours_ips:.0f}"
        if result["pytorch"]:
            line += f", PyTorch {args.batch / result['pytorch'][-1]['forward_s']:.0f}"
        print(line + " img/s", flush=True)
    return print_and_save(result, render, args.json)


if __name__ == "__main__":
    raise SystemExit(main())
