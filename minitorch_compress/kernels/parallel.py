"""How the kernels share out the cores: one Python thread per core, each running serial code.

Every fast kernel (convolution, batch norm, residual add) cuts its work into one slice per
core -- images for the convolutions, channels for the batch-norm statistics -- and runs a
serial numba function (compiled with ``nogil=True``, so threads really run at once) or a
one-thread BLAS product on each slice. There is deliberately no second thread pool:

* OpenBLAS's own threads synchronise on every call, and on the small per-chunk GEMMs of
  ResNet-20 two of them were slower than one thread alone;
* numba's ``prange`` (OpenMP here) leaves its threads spinning for a while after each
  parallel loop, and those spinning threads took the cores away from the convolution
  threads that ran next (results/benchmark.md).

Slices are contiguous ranges, and results that are reduced across slices (the conv weight
gradient) are summed in a fixed order, so results do not depend on thread timing.

How many threads: ``MINITORCH_NUM_THREADS`` if set, else the cores this process may run on
(``os.sched_getaffinity``); `set_num_threads` changes it at run time. With one thread every
kernel runs on the calling thread, BLAS is held to one thread too, and no pool thread is
ever started: what a student stepping through a kernel with ``NUMBA_DISABLE_JIT=1`` and pdb
needs, since the debugger then sees the whole batch.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from minitorch_compress.errors import MinitorchError

ENV_VAR = "MINITORCH_NUM_THREADS"


def available_cores() -> int:
    """The cores this process may run on (its CPU affinity), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not on Linux
        return max(1, os.cpu_count() or 1)


def threads_from_environment() -> int:
    """``MINITORCH_NUM_THREADS`` (a whole number from 1 to `available_cores`) if set, else
    `available_cores`: more threads than cores only take turns on them, and a typo such as
    99999 would cut every batch into a slice per image.

    Raises:
        MinitorchError: the variable is set to anything else (the command line reports it in
            one line; importing the package falls back to `available_cores`).
    """
    cores = available_cores()
    text = os.environ.get(ENV_VAR, "").strip()
    if not text:
        return cores
    if not text.isdigit() or not 1 <= int(text) <= cores:
        raise MinitorchError(f"{ENV_VAR}={text!r}: give a whole number of threads from 1 to "
                             f"{cores} (the cores this process may run on), or unset it to "
                             f"use all {cores}")
    return int(text)


def _initial_workers() -> int:
    try:
        return threads_from_environment()
    except MinitorchError:
        return available_cores()  # reported by the command line (run_cli), not at import


WORKERS = _initial_workers()

_pool: ThreadPoolExecutor | None = None
_blas: Any = None
_setup_lock = threading.Lock()


def set_num_threads(n: int) -> None:
    """Run the kernels on `n` threads from now on (1: on the calling thread alone).

    Raises:
        ValueError: `n` < 1.
    """
    global WORKERS, _pool
    if int(n) < 1:
        raise ValueError(f"the number of threads must be >= 1, got {n}")
    with _setup_lock:
        WORKERS = int(n)
        if _pool is not None and _pool._max_workers != max(1, WORKERS - 1):
            _pool.shutdown(wait=True)
            _pool = None


def get_num_threads() -> int:
    """How many threads the kernels use (`set_num_threads`, ``MINITORCH_NUM_THREADS``)."""
    return WORKERS


def pool_started() -> bool:
    """Whether a kernel pool thread has been started (never, with one thread)."""
    return _pool is not None


def split_range(n: int, min_per_part: int = 1) -> list[tuple[int, int]]:
    """Cut ``range(n)`` into at most `WORKERS` contiguous ``(start, stop)`` slices.

    Slices hold at least `min_per_part` items (so tiny inputs are not worth a thread
    hand-off and stay in one slice); ``n == 0`` gives the single empty slice ``(0, 0)``.
    """
    parts = max(1, min(WORKERS, n // max(1, min_per_part)))
    bounds = [n * i // parts for i in range(parts + 1)]
    return list(zip(bounds[:-1], bounds[1:], strict=True))


def run_parallel(
    tasks: Sequence[tuple[Callable[..., Any], tuple[Any, ...]]], blas_single_thread: bool = False
) -> list[Any]:
    """Run ``fn(*args)`` for each ``(fn, args)`` task, in parallel when there are several.

    Args:
        tasks: one (function, arguments) pair per slice of the work.
        blas_single_thread: hold BLAS to one thread while the tasks run (threadpoolctl),
            for tasks that call BLAS, so the cores are shared out by us rather than
            oversubscribed by BLAS's own threads.

    Returns:
        The tasks' results, in task order.
    """
    if len(tasks) == 1:
        fn, args = tasks[0]
        if WORKERS == 1 and blas_single_thread:
            return [_with_one_blas_thread(fn, args)]
        return [fn(*args)]
    global _pool, _blas
    with _setup_lock:
        if _pool is None:
            from threadpoolctl import ThreadpoolController

            # the calling thread takes one slice itself (`_submit_all`), so WORKERS - 1
            # pool threads make WORKERS in all
            _pool = ThreadPoolExecutor(max_workers=max(1, WORKERS - 1),
                                       thread_name_prefix="kernel")
            _blas = ThreadpoolController()
    if blas_single_thread:
        with _blas.limit(limits=1, user_api="blas"):
            return _submit_all(tasks)
    return _submit_all(tasks)


def _with_one_blas_thread(fn: Callable[..., Any], args: tuple[Any, ...]) -> Any:
    """`fn(*args)` with BLAS held to one thread: one thread means one thread."""
    global _blas
    with _setup_lock:
        if _blas is None:
            from threadpoolctl import ThreadpoolController

            _blas = ThreadpoolController()
    with _blas.limit(limits=1, user_api="blas"):
        return fn(*args)


def _submit_all(tasks: Sequence[tuple[Callable[..., Any], tuple[Any, ...]]]) -> list[Any]:
    # the calling thread takes the first slice itself: one hand-off fewer per call
    futures = [_pool.submit(fn, *args) for fn, args in tasks[1:]]
    fn, args = tasks[0]
    first = fn(*args)
    return [first, *(f.result() for f in futures)]
