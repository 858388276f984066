"""Benchmark: ResNet-20 training and inference throughput, ours beside PyTorch.

Usage::

    python benchmarks/bench_resnet20.py [--threads 2] [--repeats 5] [--json PATH] [--eval-10k]
                                        [--rounds 3] [--conv-lanes 8]

Prints, for our engine and (when `torch` is importable, `pip install -e .[bench]`) for PyTorch
with the same thread count: images/s of a full training step at batch 256 (forward, loss,
backward, SGD update; median of --repeats after warm-up), inference images/s at batch 100
and 256 in eval mode, the wall time of the full 10,000-image test evaluation (--eval-10k,
needs CIFAR-10), peak RSS during our training, and a per-op time breakdown of our training
step with the convolutions' achieved GFLOP/s. Speed is measured here, never asserted in
tests.

Like the command line, the script first applies the allocator setting of `kernels/memory.py`
(``MINITORCH_KEEP_FREED_MEMORY=0`` leaves malloc alone). PyTorch runs in a child process of
its own, as a student would run it, so the PyTorch figure does not inherit that setting;
``--torch-malloc-like-ours`` gives the child the same setting (through glibc's MALLOC_*
variables), to show what that setting alone would do for PyTorch.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Callable

# thread counts must be fixed before numpy/numba/torch start their pools
_threads = "2"
for _i, _arg in enumerate(sys.argv):
    if _arg == "--threads" and _i + 1 < len(sys.argv):
        _threads = sys.argv[_i + 1]
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ.setdefault(_var, _threads)

import numpy as np  # noqa: E402

BATCH_TRAIN = 256
FORWARD_MACS_PER_IMAGE = 40.8e6  # ResNet-20 on 32x32 inputs


def median_time(fn: Callable[[], None], repeats: int, warmup: int = 2) -> float:
    """Median wall time of `fn()` over `repeats` runs after `warmup` untimed runs."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def conv_macs_per_image(model) -> float:
    """Multiply-adds of every conv (and the FC) of our ResNet-20 for one 32x32 image."""
    from minitorch_compress.nn import Conv2d, Linear

    macs, size = 0.0, 32
    sizes = {}
    for name, module in model.named_modules():
        if isinstance(module, Conv2d):
            if module.stride == 2 and "id_mapping" not in name:
                size //= 2
            out = size
            sizes[name] = out
            macs += module.out_channels * module.in_channels * module.kernel_size**2 * out * out
        elif isinstance(module, Linear):
            macs += module.in_features * module.out_features
    return macs


# ----------------------------------------------------------------------------- ours
def bench_ours(repeats: int, eval_10k: bool, data_dir: str | None,
               with_breakdown: bool = True) -> dict:
    """Our figures (the kernels `kernels/dispatch.py` picks)."""
    from minitorch_compress import Tensor, no_grad, ops
    from minitorch_compress.models import resnet20
    from minitorch_compress.optim import SGD

    rng = np.random.default_rng(0)
    model = resnet20(rng=rng)
    optimizer = SGD(model.parameters(), lr=0.002, momentum=0.875, weight_decay=1e-4)
    x = Tensor(rng.standard_normal((BATCH_TRAIN, 3, 32, 32)).astype(np.float32))
    labels = rng.integers(0, 10, BATCH_TRAIN)

    def train_step() -> None:
        loss = ops.cross_entropy(model(x), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    results: dict = {"macs_per_image": conv_macs_per_image(model)}
    model.train()
    t = median_time(train_step, repeats)
    results["train_img_per_s"] = BATCH_TRAIN / t
    results["train_step_s"] = t
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    results["peak_rss_mb_after_training"] = peak_kb / 1024
    if with_breakdown:
        results["breakdown"] = breakdown(train_step, repeats=max(2, repeats // 2))

    model.eval()
    for batch in (100, 256):
        xb = Tensor(rng.standard_normal((batch, 3, 32, 32)).astype(np.float32))

        def infer(xb=xb) -> None:
            with no_grad():
                model(xb)

        results[f"infer_img_per_s_b{batch}"] = batch / median_time(infer, repeats)
    if eval_10k:
        from minitorch_compress.data.cifar10 import load_cifar10
        from minitorch_compress.models.pretrained import load_pretrained
        from minitorch_compress.training.evaluate import evaluate

        data = load_cifar10(data_dir, subset=0)
        pretrained = load_pretrained()
        start = time.perf_counter()
        accuracy = evaluate(pretrained, data.x_test, data.y_test, progress=False)
        results["eval_10k_s"] = time.perf_counter() - start
        results["eval_10k_accuracy"] = accuracy
    return results


def breakdown(train_step: Callable[[], None], repeats: int) -> dict[str, float]:
    """Seconds per training step spent in each kernel group (ours), by timing wrappers put
    on the fast kernel set (`kernels/sets.py`), which is what the ops call."""
    from minitorch_compress.kernels.sets import FAST

    groups = {
        "conv forward": (FAST, ["conv2d_forward"]),
        "conv backward (grad-input + grad-weight)": (FAST, ["conv2d_backward"]),
        "batch-norm (+ReLU) forward": (FAST, ["batchnorm_train_forward",
                                              "batchnorm_eval_forward"]),
        "batch-norm (+ReLU) backward": (FAST, ["batchnorm_train_backward",
                                               "batchnorm_eval_backward"]),
        "residual add+ReLU fwd/bwd": (FAST, ["add_relu_forward", "relu_backward"]),
    }
    spent: dict[str, float] = defaultdict(float)
    originals = []
    for group, (module, names) in groups.items():
        for name in names:
            original = getattr(module, name)
            originals.append((module, name, original))

            def timed(*args, _f=original, _g=group, **kwargs):
                start = time.perf_counter()
                try:
                    return _f(*args, **kwargs)
                finally:
                    spent[_g] += time.perf_counter() - start

            setattr(module, name, timed)
    try:
        train_step()  # warm
        spent.clear()
        start = time.perf_counter()
        for _ in range(repeats):
            train_step()
        total = (time.perf_counter() - start) / repeats
    finally:
        for module, name, original in originals:
            setattr(module, name, original)
    out = {group: spent[group] / repeats for group in groups}
    out["rest (autograd, loss, SGD, glue)"] = total - sum(out.values())
    out["total"] = total
    return out


# ----------------------------------------------------------------------------- PyTorch
def bench_torch_in_child(repeats: int, threads: int, malloc_like_ours: bool) -> dict | None:
    """Run `bench_torch` in a fresh interpreter (no minitorch_compress imported there).

    Returns its figures, or None when torch is not importable."""
    env = dict(os.environ)
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env[var] = str(threads)
    if malloc_like_ours:
        from minitorch_compress.kernels import memory

        env["MALLOC_MMAP_THRESHOLD_"] = str(memory.MMAP_THRESHOLD_BYTES)
        env["MALLOC_TRIM_THRESHOLD_"] = str(memory.TRIM_THRESHOLD_BYTES)
    cmd = [sys.executable, os.path.abspath(__file__), "--torch-child", "--threads",
           str(threads), "--repeats", str(repeats)]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        sys.stderr.write(out.stderr)
        raise SystemExit(f"the PyTorch benchmark child failed (exit {out.returncode})")
    figures = json.loads(out.stdout.strip().splitlines()[-1])
    if figures is not None:
        figures["malloc_like_ours"] = malloc_like_ours
    return figures


def torch_resnet20(threads: int):
    """The course's ResNet-20 in PyTorch (random weights from seed 0; the same layer names
    and order), for timing on `threads` threads. Needs torch."""
    import torch
    from torch import nn

    torch.set_num_threads(threads)
    torch.manual_seed(0)

    def conv_bn(cin, cout, k, stride, relu):
        layers = [nn.Conv2d(cin, cout, k, stride, k // 2, bias=False), nn.BatchNorm2d(cout)]
        return nn.Sequential(*layers, nn.ReLU()) if relu else nn.Sequential(*layers)

    class Block(nn.Module):
        def __init__(self, cin, cout, stride):
            super().__init__()
            self.conv1 = conv_bn(cin, cout, 3, stride, True)
            self.conv2 = conv_bn(cout, cout, 3, 1, False)
            self.id_mapping = conv_bn(cin, cout, 1, stride, False) if cin != cout else None

        def forward(self, x):
            s = x if self.id_mapping is None else self.id_mapping(x)
            return torch.relu(self.conv2(self.conv1(x)) + s)

    blocks, cin = [], 16
    for stage, c in enumerate((16, 32, 64)):
        for i in range(3):
            blocks.append(Block(cin, c, 2 if stage and i == 0 else 1))
            cin = c
    return nn.Sequential(conv_bn(3, 16, 3, 1, True), *blocks, nn.AdaptiveAvgPool2d(1),
                         nn.Flatten(), nn.Linear(64, 10))


def bench_torch(repeats: int, threads: int) -> dict | None:
    """PyTorch's figures for the same network and step, or None without torch."""
    try:
        import torch
        from torch import nn
    except ImportError:
        return None
    model = torch_resnet20(threads)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.002, momentum=0.875,
                                weight_decay=1e-4)
    x = torch.randn(BATCH_TRAIN, 3, 32, 32)
    labels = torch.randint(0, 10, (BATCH_TRAIN,))
    loss_fn = nn.CrossEntropyLoss()

    def train_step() -> None:
        loss = loss_fn(model(x), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    results = {"version": torch.__version__, "threads": torch.get_num_threads()}
    model.train()
    results["train_img_per_s"] = BATCH_TRAIN / median_time(train_step, repeats)
    model.eval()
    for batch in (100, 256):
        xb = torch.randn(batch, 3, 32, 32)

        def infer(xb=xb) -> None:
            with torch.no_grad():
                model(xb)

        results[f"infer_img_per_s_b{batch}"] = batch / median_time(infer, repeats)
    return results


# ----------------------------------------------------------------------------- report
def median_of_rounds(rounds: list[dict]) -> dict:
    """One figure dict whose numbers are the medians over rounds (others from round 1);
    each round's numbers are kept under "rounds"."""
    out = dict(rounds[0])
    for key, value in rounds[0].items():
        in_all = all(key in r for r in rounds)  # the 10k evaluation runs in round 1 only
        if in_all and isinstance(value, int | float) and not isinstance(value, bool):
            out[key] = statistics.median(r[key] for r in rounds)
    if len(rounds) > 1:
        out["rounds"] = [{k: v for k, v in r.items()
                          if isinstance(v, int | float) and not isinstance(v, bool)}
                         for r in rounds]
    return out


def _range(rounds: list[dict], key: str) -> str:
    values = [r[key] for r in rounds]
    return f"{min(values):.0f}-{max(values):.0f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=int(_threads))
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=1,
                        help="measure both engines this many times, alternating, and report "
                             "the median of each figure (and its range): this machine's "
                             "speed drifts by 10-20 %% from minute to minute")
    parser.add_argument("--eval-10k", action="store_true",
                        help="also time the full 10,000-image test evaluation (needs CIFAR-10)")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--no-torch", action="store_true", help="skip the PyTorch side")
    parser.add_argument("--torch-malloc-like-ours", action="store_true",
                        help="run PyTorch with our malloc setting too (see the module notes)")
    parser.add_argument("--torch-child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--json", default=None, help="write all figures to this JSON file")
    parser.add_argument("--conv-lanes", type=int, choices=(8,), default=None,
                        help="8: keep the tiled conv and the direct grad-weight on 8-lane "
                             "vectors on an AVX-512 CPU too (to measure what 16-lane vectors "
                             "give)")
    args = parser.parse_args(argv)
    if args.conv_lanes == 8:
        from minitorch_compress.kernels import dispatch

        dispatch.WIDE_VECTORS = False
    if args.torch_child:  # internal: the PyTorch side, printed as one JSON line
        print(json.dumps(bench_torch(args.repeats, args.threads)))
        return 0
    from minitorch_compress.kernels.memory import keep_freed_memory
    keep_freed_memory()  # the allocator setting the command line applies (kernels/memory.py)

    rounds_ours, rounds_theirs = [], []
    for round_index in range(max(1, args.rounds)):
        first = round_index == 0
        rounds_ours.append(bench_ours(args.repeats, args.eval_10k and first, args.data_dir,
                                      with_breakdown=first))
        if not args.no_torch:
            rounds_theirs.append(bench_torch_in_child(args.repeats, args.threads,
                                                      args.torch_malloc_like_ours))
    ours = median_of_rounds(rounds_ours)
    theirs = median_of_rounds(rounds_theirs) if rounds_theirs and rounds_theirs[0] else None

    from minitorch_compress.kernels import dispatch
    from minitorch_compress.kernels.common import cpu_name

    # the tiled conv's vector width on this CPU, per output plane of ResNet-20 (stride 1)
    lanes = {f"{size}x{size}": dispatch.forward_lanes(size, size, 1) for size in (32, 16, 8)}
    print(f"machine: {os.cpu_count()} cores, {platform.processor() or platform.machine()} "
          f"({cpu_name()}); threads: {args.threads}; numpy {np.__version__}; conv vectors "
          + ", ".join(f"{n} lanes at {plane}" for plane, n in lanes.items()))
    print(f"\n{'metric':34s} {'ours':>10s} {'pytorch':>10s} {'ours/pt':>8s}")
    rows = [("train img/s (batch 256)", "train_img_per_s"),
            ("inference img/s (batch 100)", "infer_img_per_s_b100"),
            ("inference img/s (batch 256)", "infer_img_per_s_b256")]
    figures = {"ours": ours, "pytorch": theirs, "threads": args.threads,
               "rounds": len(rounds_ours), "cpu": cpu_name(), "conv_vector_lanes": lanes}
    for label, key in rows:
        pt = theirs[key] if theirs else None
        ratio = ours[key] / pt if pt else None
        print(f"{label:34s} {ours[key]:10.0f} {pt or float('nan'):10.0f} "
              f"{ratio or float('nan'):8.2f}")
    if len(rounds_ours) > 1:
        print(f"(medians of {len(rounds_ours)} alternating rounds; ranges:)")
        for label, key in rows:
            spread = f"  {label:32s} ours {_range(rounds_ours, key)}"
            if theirs:
                spread += f", pytorch {_range(rounds_theirs, key)}"
            print(spread)
    if theirs:
        figures["train_ratio"] = ours["train_img_per_s"] / theirs["train_img_per_s"]
        figures["infer_ratio"] = ours["infer_img_per_s_b100"] / theirs["infer_img_per_s_b100"]
        figures["infer_ratio_b256"] = (ours["infer_img_per_s_b256"]
                                       / theirs["infer_img_per_s_b256"])
    else:
        print("(PyTorch not importable: install the optional extra with `pip install -e .[bench]`)")
    print(f"\npeak RSS after our training steps: {ours['peak_rss_mb_after_training']:.0f} MB")
    if "eval_10k_s" in ours:
        print(f"10,000-image test evaluation: {ours['eval_10k_s']:.1f} s "
              f"(accuracy {ours['eval_10k_accuracy']:.4f})")

    b = ours["breakdown"]
    flops_fwd = 2 * ours["macs_per_image"] * BATCH_TRAIN
    print(f"\nour training step at batch 256, {b['total'] * 1e3:.0f} ms:")
    for group, seconds in b.items():
        if group == "total":
            continue
        extra = ""
        if group == "conv forward":
            extra = f"  {flops_fwd / seconds / 1e9:6.1f} GFLOP/s"
        elif group.startswith("conv backward"):
            extra = f"  {2 * flops_fwd / seconds / 1e9:6.1f} GFLOP/s"
        print(f"  {group:42s} {seconds * 1e3:8.1f} ms {100 * seconds / b['total']:5.1f} %{extra}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(figures, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
