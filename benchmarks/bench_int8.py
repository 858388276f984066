"""Integer against float inference of ResNet-20: ours and PyTorch's, images per second.

Four engines, each at batch 1 and batch 100, measured in alternating rounds (this machine's
speed drifts from minute to minute; the figures are the medians over rounds):

* ours_float: our float32 model in eval mode (fused conv + batch norm kernels);
* ours_int8: `models/int8_resnet.py` on the fast integer kernel (`kernels/int8_conv.py`);
  JSON "isa" names its instructions (`int8_conv.int8_isa()`: "amx" where this process may
  use AMX tiles, else "avx512_vnni", or on a CPU without VNNI the portable kernel's widest
  of "avx512bw", "avx2", "sse2");
* torch_float: the same network in PyTorch (`bench_resnet20.torch_resnet20`), eval mode;
* torch_int8: PyTorch's post-training static quantization of it (FX graph mode, x86
  backend, per-channel weights, calibrated on the same images), None without torch.

Then, once, where our int8 forward's time goes at the largest batch: each integer layer's
median milliseconds and multiply-adds per image (JSON "layers_batch_<b>").

And the bound of the design: the peak rate of each integer instruction our kernels can be
built on, one thread and `--threads` threads at once, operands in L1 or in tiles (JSON "peaks":
{"vpdpbusd": ..., "tdpbusd": ...}, each {"per_core", "together", "method"} in G
multiply-adds/s; an instruction the CPU lacks is left out): ``vpdpbusd`` (AVX-512 VNNI,
`vnni_peak`) and ``tdpbusd`` (AMX tiles, `amx_peak`). "peak_instruction" is the one the
kernel in use is built on ("isa"), "peak_gmacs_per_core" its peak, and
"bound_images_per_second" the model's multiply-adds per image / (that peak x threads): the
most images/s any kernel built on that instruction could reach here. Beside it the cost of
the exact integer epilogue every output needs (`epilogue_cost`: ns per 16 output codes on
one core, JSON "epilogue"; each layer's "vectors" of 16 codes per image and whether it
adds a "residual"), and "bound_with_epilogue_images_per_second": threads / (the sums at
that peak + the epilogue), per image.

PyTorch runs in a child interpreter that never imports minitorch_compress. Both sides are
calibrated on the first `--calibration` CIFAR-10 training images (random images when
CIFAR-10 is not found; speed does not depend on the values). Ours uses the pretrained
weights when found, PyTorch random ones (same shapes; speed only).

    python benchmarks/bench_int8.py --rounds 5 --json results/int8_speed.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable

# thread counts must be fixed before numpy/numba/torch start their pools
_threads = "2"
for _i, _arg in enumerate(sys.argv):
    if _arg == "--threads" and _i + 1 < len(sys.argv):
        _threads = sys.argv[_i + 1]
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS",
             "MINITORCH_NUM_THREADS"):
    os.environ.setdefault(_var, _threads)

import numpy as np  # noqa: E402

ENGINES = ("ours_float", "ours_int8", "torch_float", "torch_int8")


def median_seconds(fn: Callable[[], None], repeats: int) -> float:
    """The median wall time of `fn()` over `repeats` runs (every figure here is one)."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def images_per_second(fn: Callable[[], None], batch: int, repeats: int) -> float:
    """batch / the median wall time of `fn()` over `repeats` runs, after 2 warm-up runs."""
    for _ in range(2):
        fn()
    return batch / median_seconds(fn, repeats)


def calibration_images(count: int, data_dir: str | None) -> tuple[np.ndarray, str]:
    """`count` raw uint8 images (N, 3, 32, 32): CIFAR-10's first training images, or random
    ones when it is not found; and which."""
    from minitorch_compress.data.cifar10 import load_cifar10
    from minitorch_compress.errors import DatasetError

    try:
        return load_cifar10(data_dir, subset=count, test_subset=0).x_train, "cifar10 train"
    except DatasetError:
        rng = np.random.default_rng(0)
        return rng.integers(0, 256, (count, 3, 32, 32), dtype=np.uint8), "random"


def ours(batches: list[int], repeats: int, images: np.ndarray) -> dict:
    """{"batch_<b>": {"ours_float": img/s, "ours_int8": img/s}} and the ISA used."""
    from minitorch_compress.autograd.engine import no_grad
    from minitorch_compress.autograd.tensor import Tensor
    from minitorch_compress.compression.calibration import int8_model
    from minitorch_compress.data.transforms import normalize
    from minitorch_compress.errors import CheckpointError
    from minitorch_compress.kernels.int8_conv import int8_isa
    from minitorch_compress.models.pretrained import load_pretrained
    from minitorch_compress.models.resnet import ResNet20

    try:
        model = load_pretrained()
    except CheckpointError:
        model = ResNet20().eval()
    int_model = int8_model(model, images)
    int_model.kernel = "fast"
    figures = {"isa": int8_isa()}
    for batch in batches:
        x = normalize(images[np.arange(batch) % len(images)])

        def run_float(x=x) -> None:
            with no_grad():
                model(Tensor(x))

        figures[f"batch_{batch}"] = {
            "ours_float": images_per_second(run_float, batch, repeats),
            "ours_int8": images_per_second(lambda x=x: int_model.logits(x), batch, repeats),
        }
    return figures


def layer_profile(batch: int, repeats: int, images: np.ndarray) -> list[dict]:
    """Where our int8 forward's time goes: the median milliseconds of each integer layer's
    fast kernel call (sums and fused requantization on channels-last codes) at this batch."""
    from minitorch_compress.compression.calibration import int8_model
    from minitorch_compress.data.transforms import normalize
    from minitorch_compress.errors import CheckpointError
    from minitorch_compress.models.int8_resnet import INT8_KERNELS, IntKernel
    from minitorch_compress.models.pretrained import load_pretrained
    from minitorch_compress.models.resnet import ResNet20

    try:
        model = load_pretrained()
    except CheckpointError:
        model = ResNet20().eval()
    int_model = int8_model(model, images)
    layers = int_model.named_layers()
    names = {id(layer): name for name, layer in layers}
    seconds: dict[str, list[float]] = {name: [] for name, _ in layers}
    positions: dict[str, int] = {}  # output positions per image
    fast = INT8_KERNELS["fast"]

    def timed(q, layer, residual=None):
        start = time.perf_counter()
        out = fast.conv(q, layer, residual)
        seconds[names[id(layer)]].append(time.perf_counter() - start)
        _, hp, wp, _ = out.shape  # padded codes: a border of one pixel
        positions[names[id(layer)]] = (hp - 2) * (wp - 2)
        return out

    x = normalize(images[np.arange(batch) % len(images)])
    # the model looks its kernel up by name
    INT8_KERNELS["timed_fast"] = IntKernel(timed, fast.enter, fast.leave)
    int_model.kernel = "timed_fast"
    try:
        for _ in range(repeats + 1):
            int_model.logits(x)
    finally:
        del INT8_KERNELS["timed_fast"]
    return [{"layer": name, "weights": list(layer.weight.shape), "stride": layer.stride,
             "kind": int_model.weight_kinds[name],
             "macs": int(np.prod(layer.weight.shape)) * positions[name],
             # the epilogue's work: 16 output channels of one position per vector
             "vectors": -(-layer.weight.shape[0] // 16) * positions[name],
             "residual": layer.residual_scale is not None, "mask": layer.mask is not None,
             "ms": 1e3 * statistics.median(seconds[name][1:])} for name, layer in layers]


# ------------------------------------------------------------------ the epilogue's cost
EPILOGUE_METHOD = ("int8_epilogue.finish (requantization of the sums, of the residual "
                   "where there is one, clamp, 16 u8 codes stored) on 64 positions' int32 "
                   "sums in L1, the int32 form every calibrated layer uses, one thread; "
                   "median of the rounds")


def _epilogue_loop():
    """The compiled epilogue loop: the kernels' own `finish`, on data in L1."""
    from numba import njit

    from minitorch_compress.kernels.int8_epilogue import finish
    from minitorch_compress.kernels.simd_int8 import (
        ibroadcast,
        iload,
        iload_u8,
        istore_u8,
        izero,
    )

    @njit(nogil=True)
    def loop(sums, residual, out, ep, steps, with_residual):
        """steps x 64 positions: out[16 m ...] = finish(sums[16 m ...], residual codes)."""
        constants = (iload(ep, 0), iload(ep, 16), iload(ep, 32), iload(ep, 48))
        rescale = (with_residual, (ibroadcast(-100), ibroadcast(1 << 30), ibroadcast(1),
                                   ibroadcast(3)))
        epilogue = (constants, constants, False, rescale, 7, 7)
        none = izero()
        for _ in range(steps):
            for m in range(64):
                r = iload_u8(residual, 16 * m) if with_residual else none
                istore_u8(out, 16 * m, finish(iload(sums, 16 * m), none, r, epilogue, True))

    return loop


def epilogue_cost(repeats: int, steps: int = 20_000) -> dict:
    """{"plain", "residual": nanoseconds per 16 output codes on one core, "method"}."""
    loop = _epilogue_loop()
    rng = np.random.default_rng(0)
    sums = rng.integers(-(2**20), 2**20, 64 * 16).astype(np.int32)
    residual = rng.integers(0, 256, 64 * 16).astype(np.uint8)
    out = np.zeros(64 * 16, np.uint8)
    # offset, multiplier (about 0.5 x 2^-7), left shift 0, right shift 7
    ep = np.concatenate([np.full(16, value, np.int32) for value in (-5000, 1 << 30, 0, 7)])
    figures = {"method": EPILOGUE_METHOD}
    for name, with_residual in (("plain", False), ("residual", True)):
        loop(sums, residual, out, ep, 1, with_residual)
        seconds = median_seconds(lambda w=with_residual: loop(sums, residual, out, ep, steps, w),
                                 max(3, repeats))
        figures[name] = seconds / (steps * 64) * 1e9
    return figures


# ------------------------------------------------------------------ the instruction's peak
#: multiply-adds of one step of `_vnni_peak_loop`: 16 vpdpbusd of 16 lanes x 4 bytes
VNNI_STEP_MACS = 16 * 16 * 4
VNNI_METHOD = ("vpdpbusd zmm (u8 x s8 -> s32), 16 independent accumulators = 8 broadcast "
               "input words x 2 weight vectors per step, operands loaded from a 1 KiB "
               "L1-resident array; median of the rounds")


def _vnni_peak_loop():
    """The compiled peak loop (built on first use: it needs AVX-512 VNNI)."""
    from numba import njit

    from minitorch_compress.kernels.simd_int8 import (
        dpbusd,
        iadd,
        ibroadcast_at,
        iload,
        istore,
        izero,
    )

    @njit(nogil=True, inline="always")
    def two_dots(a, b, inputs, at, v, u):
        """(a, b) + the dot products of the input word inputs[at] with v and with u."""
        q = ibroadcast_at(inputs, at)
        return dpbusd(a, q, v), dpbusd(b, q, u)

    @njit(nogil=True)
    def loop(inputs, weights, steps, out):
        """steps x 16 vpdpbusd into 16 accumulators; out[:16] = their lane sum (so the
        work is used). inputs: int32 (64,), weights: int32 (256,)."""
        # 16 accumulators written out, each in its own register: the 16 vpdpbusd of a step
        # are independent, as many as the instruction's latency x throughput asks
        a0 = a1 = a2 = a3 = a4 = a5 = a6 = a7 = izero()
        b0 = b1 = b2 = b3 = b4 = b5 = b6 = b7 = izero()
        for step in range(steps):
            w = (step & 7) * 32  # 8 pairs of weight vectors, 1 KiB: stays in L1
            x = (step & 7) * 8
            v = iload(weights, w)
            u = iload(weights, w + 16)
            a0, b0 = two_dots(a0, b0, inputs, x, v, u)
            a1, b1 = two_dots(a1, b1, inputs, x + 1, v, u)
            a2, b2 = two_dots(a2, b2, inputs, x + 2, v, u)
            a3, b3 = two_dots(a3, b3, inputs, x + 3, v, u)
            a4, b4 = two_dots(a4, b4, inputs, x + 4, v, u)
            a5, b5 = two_dots(a5, b5, inputs, x + 5, v, u)
            a6, b6 = two_dots(a6, b6, inputs, x + 6, v, u)
            a7, b7 = two_dots(a7, b7, inputs, x + 7, v, u)
        total = iadd(iadd(iadd(a0, a1), iadd(a2, a3)), iadd(iadd(a4, a5), iadd(a6, a7)))
        total = iadd(total, iadd(iadd(iadd(b0, b1), iadd(b2, b3)),
                                 iadd(iadd(b4, b5), iadd(b6, b7))))
        istore(out, 0, total)

    return loop


def _rate(loop: Callable[..., None], args: Callable[[int], tuple], macs: int, threads: int,
          repeats: int) -> dict:
    """{"per_core": G multiply-adds/s of `loop(*args(0))` (doing `macs`) on one thread,
    "together": of `loop(*args(i))` on `threads` threads i at once (their sum)}, medians
    over the repeats."""
    from minitorch_compress.kernels.parallel import run_parallel

    def gmacs(parts: int) -> float:
        seconds = median_seconds(lambda: run_parallel([(loop, args(i)) for i in range(parts)]),
                                 max(3, repeats))
        return parts * macs / seconds / 1e9

    return {"per_core": gmacs(1), "together": gmacs(threads)}


def vnni_peak(threads: int, repeats: int, steps: int = 2_000_000) -> dict | None:
    """vpdpbusd's peak ({"per_core", "together", "method"}, G multiply-adds/s), or None on
    a CPU without AVX-512 VNNI."""
    from minitorch_compress.kernels.simd_int8 import has_avx512_vnni

    if not has_avx512_vnni():
        return None
    loop = _vnni_peak_loop()
    rng = np.random.default_rng(0)
    inputs = rng.integers(-2**31, 2**31, 64, dtype=np.int64).astype(np.int32)
    weights = rng.integers(-2**31, 2**31, 256, dtype=np.int64).astype(np.int32)
    outs = [np.zeros(16, np.int32) for _ in range(threads)]
    loop(inputs, weights, 10, outs[0])  # compile
    return {**_rate(loop, lambda i: (inputs, weights, steps, outs[i]), steps * VNNI_STEP_MACS,
                    threads, repeats), "method": VNNI_METHOD}


AMX_METHOD = ("tdpbusd (u8 x s8 -> s32 tiles of 16 x 64 bytes), 4 independent sum tiles "
              "from 2 A and 2 B tiles loaded once: the tile unit's own rate, operands "
              "already in tiles (a kernel also loads them from L1); median of the rounds")


def _amx_peak_loop():
    """The compiled AMX peak loop (built on first use: it needs the tiles)."""
    from numba import njit

    from minitorch_compress.kernels.amx import (
        tile_config,
        tile_dpbusd,
        tile_load,
        tile_release,
        tile_store,
        tile_zero,
    )

    @njit(nogil=True)
    def loop(cfg, a, b, c, repeats):
        """c (32 x 32 int32) = repeats x a (32 x 64 u8) times b (VNNI layout, 16 x 128)."""
        tile_config(cfg)
        tile_zero(0)
        tile_zero(1)
        tile_zero(2)
        tile_zero(3)
        tile_load(4, a, 0, 64)
        tile_load(5, a, 16 * 64, 64)
        tile_load(6, b, 0, 128)
        tile_load(7, b, 64, 128)
        for _ in range(repeats):
            tile_dpbusd(0, 4, 6)
            tile_dpbusd(1, 4, 7)
            tile_dpbusd(2, 5, 6)
            tile_dpbusd(3, 5, 7)
        tile_store(0, c, 0, 128)
        tile_store(1, c, 16, 128)
        tile_store(2, c, 16 * 32, 128)
        tile_store(3, c, 16 * 32 + 16, 128)
        tile_release()

    return loop


def amx_peak(threads: int, repeats: int, steps: int = 1_000_000) -> dict | None:
    """tdpbusd's peak ({"per_core", "together", "method"}, G multiply-adds/s), or None
    where this process cannot use AMX tiles; the product is checked against NumPy once."""
    from minitorch_compress.kernels.amx import amx_available, tile_config_bytes

    if not amx_available():
        return None
    loop = _amx_peak_loop()
    cfg = tile_config_bytes({t: (16, 64) for t in range(8)})
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (32, 64)).astype(np.uint8)
    b = rng.integers(-128, 128, (64, 32)).astype(np.int8)
    packed = np.ascontiguousarray(b.reshape(16, 4, 32).transpose(0, 2, 1))
    outs = [np.zeros((32, 32), np.int32) for _ in range(threads)]
    loop(cfg, a, packed, outs[0], 3)
    if not np.array_equal(outs[0], 3 * (a.astype(np.int64) @ b.astype(np.int64))):
        raise SystemExit("the AMX tile product differs from NumPy's")
    return {**_rate(loop, lambda i: (cfg, a, packed, outs[i], steps),
                    steps * 4 * 16 * 16 * 64, threads, repeats), "method": AMX_METHOD}


def torch_side(batches: list[int], repeats: int, threads: int, calibration: str) -> dict | None:
    """PyTorch's float and int8 figures (run in the child), or None without torch."""
    try:
        import torch
        from torch.ao.quantization import get_default_qconfig_mapping
        from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx
    except ImportError:
        return None
    from bench_resnet20 import torch_resnet20  # this script's folder is on sys.path

    model = torch_resnet20(threads).eval()
    x_cal = torch.from_numpy(np.load(calibration))
    torch.backends.quantized.engine = "x86"
    prepared = prepare_fx(model, get_default_qconfig_mapping("x86"), example_inputs=(x_cal[:1],))
    with torch.no_grad():
        for start in range(0, len(x_cal), 100):
            prepared(x_cal[start:start + 100])
    quantized = convert_fx(prepared)
    figures = {"version": torch.__version__}
    for batch in batches:
        x = x_cal[torch.arange(batch) % len(x_cal)]
        entry = {}
        for name, net in (("torch_float", model), ("torch_int8", quantized)):
            def run(net=net, x=x) -> None:
                with torch.no_grad():
                    net(x)
            entry[name] = images_per_second(run, batch, repeats)
        figures[f"batch_{batch}"] = entry
    return figures


def torch_in_child(batches: list[int], repeats: int, threads: int,
                   calibration: str) -> dict | None:
    """`torch_side` in a fresh interpreter (no minitorch_compress imported there)."""
    cmd = [sys.executable, os.path.abspath(__file__), "--torch-child", "--threads", str(threads),
           "--repeats", str(repeats), "--batches", ",".join(map(str, batches)),
           "--calibration-file", calibration]
    out = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        sys.stderr.write(out.stderr)
        raise SystemExit(f"the PyTorch benchmark child failed (exit {out.returncode})")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=int(_threads))
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3,
                        help="measure ours and PyTorch this many times, alternating")
    parser.add_argument("--batches", default="1,100", help="comma-separated batch sizes")
    parser.add_argument("--calibration", type=int, default=1000,
                        help="calibration images for both int8 models")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--no-torch", action="store_true", help="skip the PyTorch side")
    parser.add_argument("--json", default=None, help="write the figures to this JSON file")
    parser.add_argument("--torch-child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--calibration-file", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    try:
        batches = [int(b) for b in args.batches.split(",")]
    except ValueError:
        parser.error(f"--batches needs comma-separated integers, got {args.batches!r}")
    if args.torch_child:  # internal: the PyTorch side, printed as one JSON line
        print(json.dumps(torch_side(batches, args.repeats, args.threads,
                                    args.calibration_file)))
        return 0

    from minitorch_compress.data.transforms import normalize

    images, source = calibration_images(args.calibration, args.data_dir)
    rounds: list[dict] = []
    with tempfile.TemporaryDirectory() as folder:
        calibration = os.path.join(folder, "calibration.npy")
        np.save(calibration, normalize(images))
        for _ in range(max(1, args.rounds)):
            mine = ours(batches, args.repeats, images)
            theirs = None if args.no_torch else torch_in_child(batches, args.repeats,
                                                               args.threads, calibration)
            rounds.append({"ours": mine, "torch": theirs})
    figures: dict = {"isa": rounds[0]["ours"]["isa"], "threads": args.threads,
                     "rounds": len(rounds), "calibration": source,
                     "cpu": platform.processor() or platform.machine(),
                     "torch_version": rounds[0]["torch"]["version"] if rounds[0]["torch"]
                     else None}
    print(f"integer ISA: {figures['isa']}; {args.threads} threads; {len(rounds)} rounds; "
          f"calibration: {source}")
    print(f"{'batch':>6s} " + " ".join(f"{e:>12s}" for e in ENGINES) + "   (images/s)")
    for batch in batches:
        key = f"batch_{batch}"
        entry = {}
        for engine in ENGINES:
            side = "ours" if engine.startswith("ours") else "torch"
            values = [r[side][key][engine] for r in rounds if r[side] is not None]
            entry[engine] = statistics.median(values) if values else None
            if len(values) > 1:
                entry[f"{engine}_range"] = [min(values), max(values)]
        figures[key] = entry
        print(f"{batch:6d} " + " ".join(
            f"{entry[e]:12.0f}" if entry[e] is not None else f"{'-':>12s}" for e in ENGINES))
    batch = max(batches)
    profile = layer_profile(batch, args.repeats, images)
    figures[f"layers_batch_{batch}"] = profile
    peaks = {name: rate for name, rate in (("vpdpbusd", vnni_peak(args.threads, args.repeats)),
                                           ("tdpbusd", amx_peak(args.threads, args.repeats)))
             if rate is not None}
    figures["peaks"] = peaks
    instruction = {"amx": "tdpbusd", "avx512_vnni": "vpdpbusd"}.get(figures["isa"])
    peak = peaks.get(instruction)
    macs = sum(row["macs"] for row in profile)
    figures.update(peak_instruction=instruction if peak else None,
                   peak_gmacs_per_core=peak["per_core"] if peak else None,
                   macs_per_image=macs,
                   bound_images_per_second=peak["per_core"] * 1e9 * args.threads / macs
                   if peak else None)
    total = sum(row["ms"] for row in profile)
    print(f"\nour int8 layers at batch {batch} (fast kernel, median ms; {total:.1f} ms in all;"
          " G multiply-adds/s per thread):")
    for row in profile:
        share = 100 * row["ms"] / total
        rate = row["macs"] * batch / (row["ms"] * 1e-3) / args.threads / 1e9
        print(f"  {row['layer']:22s} {'x'.join(map(str, row['weights'])):>12s} "
              f"s{row['stride']} {row['kind']:6s} {row['ms']:8.2f} {share:5.1f} % "
              f"{rate:6.0f}")
    epilogue = epilogue_cost(args.repeats)
    seconds = sum(row["vectors"] * epilogue["residual" if row["residual"] else "plain"]
                  for row in profile) * 1e-9
    figures.update(epilogue=epilogue, epilogue_seconds_per_image=seconds,
                   bound_with_epilogue_images_per_second=args.threads / (
                       seconds + macs / (peak["per_core"] * 1e9)) if peak else None)
    for name, rate in peaks.items():
        print(f"\n{name} peak: {rate['per_core']:.0f} G multiply-adds/s on one thread, "
              f"{rate['together']:.0f} on {args.threads} together", end="")
    print(f"\nepilogue: {epilogue['plain']:.2f} ns per 16 codes ({epilogue['residual']:.2f} "
          f"with a residual), {seconds * 1e6:.1f} us per image on one core")
    if peak:
        print(f"{macs / 1e6:.1f} M multiply-adds per image: at most "
              f"{figures['bound_images_per_second']:,.0f} images/s on {args.threads} threads "
              f"with {instruction}, "
              f"{figures['bound_with_epilogue_images_per_second']:,.0f} with the epilogue")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(figures, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
