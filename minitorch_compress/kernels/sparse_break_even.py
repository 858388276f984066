"""Which convs run sparse: the break-even sparsity of each conv shape, measured on this CPU.

The direct sparse kernel's time falls with the weights' density; the dense kernel's does not
depend on it. Where the two cross depends on the CPU (its vector registers, caches, how fast
the dense kernel is there), so it is measured on the machine that runs, not copied from
another: the first time a model asks about a conv shape (`break_even`), a short calibration
(`measure`) times the dense fused forward and the sparse one at a few sparsities on random
data, in alternating rounds, and `break_even_from_timings` turns the times into the sparsity
from which sparse is faster. The answers are cached in ``weights/cache/sparse_break_even.json``
(git-ignored) under the CPU's name, the sparse and dense kernels' `KERNEL_VERSION` and the thread
count, so a machine measures each shape once per kernel version (not when the machine was
busy while measuring, `BUSY_SPREAD`: that answer serves its process only, with a warning);
``python benchmarks/bench_sparse.py --calibrate`` measures every ResNet-20 shape again and
overwrites its entries.

`pinned` fixes the answers instead (the tests pin them, so no test depends on a timing).
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NamedTuple

import numpy as np

from minitorch_compress.kernels import direct_conv_tiled
from minitorch_compress.kernels.common import cpu_name
from minitorch_compress.kernels.conv import conv2d_affine_forward
from minitorch_compress.kernels.parallel import get_num_threads
from minitorch_compress.kernels.sparse_conv import (
    KERNEL_VERSION,
    SparseWeights,
    sparse_conv2d_forward,
)
from minitorch_compress.paths import WEIGHTS_CACHE_DIR

CACHE_FILE = WEIGHTS_CACHE_DIR / "sparse_break_even.json"
#: Returned for a shape where the sparse kernel never wins: above any sparsity.
NEVER = 2.0
#: Sparser than this, or stay dense without measuring: at lower sparsity the sparse kernel
#: does more than half the dense multiply-adds with none of its input reuse across
#: output channels, and lost on every CPU measured.
MIN_SPARSITY = 0.3
#: The calibration: these sparsities, this many images, rounds (each the best of its runs).
SPARSITIES = (0.3, 0.5, 0.7, 0.9)
BATCH = 16
ROUNDS = 5
#: A calibration whose dense runs' median took more than this times their fastest ran on a busy
#: machine: its answer serves this process but is not cached (the next one measures again).
BUSY_SPREAD = 1.25


class ConvGeometry(NamedTuple):
    """What a conv's speed depends on: channels in and out, input size (square), kernel,
    stride and padding (`dispatch.RESNET20_CONVS` lists ResNet-20's shapes with names)."""

    c: int
    k: int
    size: int
    kernel: int
    stride: int
    padding: int


def break_even_from_timings(dense_s: float, sparse_s: dict[float, float]) -> float:
    """The sparsity from which the sparse kernel is faster than dense.

    Fits ``sparse time = t0 + t1 * density`` (density = 1 - sparsity) to the measured
    points by least squares (noise on one point moves the answer less than interpolation
    between two neighbours would) and solves ``t0 + t1 * density = dense_s``.

    Args:
        dense_s: the dense time.
        sparse_s: {sparsity: sparse time}, at least two sparsities.

    Returns:
        The break-even sparsity in [0, 1], or `NEVER` when sparse is not faster even at the
        sparsest point measured (or the fit does not fall with the density).
    """
    if len(sparse_s) < 2:
        raise ValueError(f"break_even_from_timings: need two sparsities or more, got {sparse_s}")
    density = 1.0 - np.array(list(sparse_s), dtype=np.float64)
    times = np.array(list(sparse_s.values()), dtype=np.float64)
    slope, intercept = np.polyfit(density, times, 1)
    if slope > 0:
        crossing = 1.0 - (dense_s - intercept) / slope
        return NEVER if crossing > 1.0 else max(float(crossing), 0.0)
    # no fall with the density (noise swamped it): the least sparse point that was faster
    faster = [s for s, t in sorted(sparse_s.items()) if t < dense_s]
    return float(faster[0]) if faster else NEVER


def measure(shape: ConvGeometry, sparsities: tuple[float, ...] = SPARSITIES, batch: int = BATCH,
            rounds: int = ROUNDS, seed: int = 0) -> tuple[float, dict[float, float], float]:
    """(dense seconds, {sparsity: sparse seconds}, spread) for one conv shape on random
    float32 data.

    Each time is the fastest of `rounds` runs taken in alternating rounds (dense, each
    sparsity, dense, ...): other work on the machine only ever adds time, and alternating
    spreads its drift over all of them alike. Both run the fused epilogue (batch norm and
    ReLU). The spread is the dense runs' median over their fastest: about 1 on a quiet
    machine, more when other work took the cores now and then."""
    rng = np.random.default_rng(seed)
    c, k, size, kernel, stride, padding = shape
    x = rng.standard_normal((batch, c, size, size)).astype(np.float32)
    coef = np.stack([np.ones(k), np.zeros(k)], 1).astype(np.float32)
    w = rng.standard_normal((k, c, kernel, kernel)).astype(np.float32)
    runs = [lambda: conv2d_affine_forward(x, w, stride, padding, coef, relu=True)]
    for s in sparsities:
        sw = SparseWeights.from_dense(np.where(rng.random(w.shape) < s, 0, w).astype(np.float32))
        runs.append(lambda sw=sw: sparse_conv2d_forward(x, sw, stride, padding, coef, True))
    seconds: list[list[float]] = [[] for _ in runs]
    for run in runs:
        run()  # compile, warm the caches
    for _ in range(rounds):
        for i, run in enumerate(runs):
            start = time.perf_counter()
            run()
            seconds[i].append(time.perf_counter() - start)
    best = [min(t) for t in seconds]
    spread = float(np.median(seconds[0])) / best[0]
    return best[0], dict(zip(sparsities, best[1:], strict=True)), spread


def cache_key() -> str:
    """The cache's entry for this machine and kernels: CPU name, the sparse kernel's
    `KERNEL_VERSION` and the dense one's (the break-even is where one overtakes the other) and
    the kernel threads (each thread's share of the batch changes the fixed costs' weight)."""
    return (f"{cpu_name()} / sparse kernel {KERNEL_VERSION} / dense kernel "
            f"{direct_conv_tiled.KERNEL_VERSION} / {get_num_threads()} threads")


def _shape_key(shape: ConvGeometry) -> str:
    return ",".join(str(v) for v in shape)


def _read_cache(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}  # none yet, or unreadable: measure again
    return data if isinstance(data, dict) else {}


def _write_cache(path: Path, data: dict) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")  # two processes never share one
        tmp.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
        tmp.replace(path)
    except OSError:
        pass  # a read-only checkout: the answer is kept in memory for this process


# In-memory answers of this process, and the pinned ones (`pinned`).
_known: dict[ConvGeometry, float] = {}
_pinned: float | dict[ConvGeometry, float] | None = None
# Whether this process has said that it calibrates (a pause of seconds needs a reason).
_announced = False


def calibrate(shape: ConvGeometry, path: Path | None = None) -> float:
    """Measure `shape`'s break-even now and store it in the cache (replacing an old entry),
    unless the machine was busy (`BUSY_SPREAD`): then it serves this process only, with a
    one-line warning."""
    path = CACHE_FILE if path is None else path
    dense_s, sparse_s, spread = measure(shape)
    value = break_even_from_timings(dense_s, sparse_s)
    if spread > BUSY_SPREAD:
        print(f"warning: the machine was busy while calibrating the sparse break-even of "
              f"{_shape_key(shape)} (dense runs {spread:.2f}x their fastest): used now, not "
              "cached; `python benchmarks/bench_sparse.py --calibrate` on a quiet machine "
              "stores it", file=sys.stderr, flush=True)
        _known[shape] = value
        return value
    data = _read_cache(path)
    data.setdefault(cache_key(), {})[_shape_key(shape)] = {
        "break_even": value, "dense_s": dense_s,
        "sparse_s": {str(s): t for s, t in sparse_s.items()}, "dense_spread": spread,
        "batch": BATCH}
    _write_cache(path, data)
    _known[shape] = value
    return value


def break_even(shape: ConvGeometry, path: Path | None = None) -> float:
    """The sparsity from which `shape` runs faster on the sparse kernel on this CPU: pinned,
    else known to this process, else cached, else measured now (`calibrate`)."""
    if _pinned is not None:
        return _pinned if isinstance(_pinned, float) else _pinned.get(shape, NEVER)
    if shape in _known:
        return _known[shape]
    entry = _read_cache(CACHE_FILE if path is None else path).get(cache_key(), {}).get(
        _shape_key(shape))
    if isinstance(entry, dict) and isinstance(entry.get("break_even"), int | float):
        _known[shape] = float(entry["break_even"])
        return _known[shape]
    global _announced
    if not _announced:
        print("calibrating the sparse/dense break-even for this CPU (once) ...",
              file=sys.stderr, flush=True)
        _announced = True
    return calibrate(shape, path)


def runs_sparse(shape: ConvGeometry, sparsity: float) -> bool:
    """Whether a conv of this shape and weight sparsity should run on the sparse kernel
    (below `MIN_SPARSITY` it stays dense without a measurement)."""
    return sparsity >= MIN_SPARSITY and sparsity >= break_even(shape)


@contextmanager
def pinned(value: float | dict[ConvGeometry, float]) -> Iterator[None]:
    """Within the block, `break_even` answers `value` (one sparsity for every shape, or a
    table: shapes not in it stay dense) and never measures."""
    global _pinned
    before = _pinned
    _pinned = float(value) if isinstance(value, int | float) else dict(value)
    try:
        yield
    finally:
        _pinned = before
