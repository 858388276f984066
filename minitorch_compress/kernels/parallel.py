"""How the kernels share out the cores: one Python thread per core, each running serial code.

Every fast kernel (convolution, batch norm, residual add) cuts its work into one slice per
core -- images for the convolutions, channels for the batch-norm statistics -- and runs a
serial numba function (compiled with ``nogil=True``, so threads really run at once) or a
one-thread BLAS product on each slice. There is deliberately no second thread pool:

* OpenBLAS's own threads synchronise on every call, and on the small per-chunk GEMMs of
  ResNet-20 two of them were slower than one thread alone;
* numba's ``prange`` (OpenMP here) leaves its threads spinning for a while after each
  parallel loop, and those spinning threads took the cores away from the convolution
  threads that ran next: inference went from ~500 to ~800 images/s once batch norm stopped
  using ``prange`` (measured on the 2-core box, batch 100).

Slices are contiguous ranges, and results that are reduced across slices (the conv weight
gradient) are summed in a fixed order, so results do not depend on thread timing.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

WORKERS = max(1, min(2, os.cpu_count() or 1))

_pool: ThreadPoolExecutor | None = None
_blas: Any = None
_setup_lock = threading.Lock()


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


def _submit_all(tasks: Sequence[tuple[Callable[..., Any], tuple[Any, ...]]]) -> list[Any]:
    # the calling thread takes the first slice itself: one hand-off fewer per call
    futures = [_pool.submit(fn, *args) for fn, args in tasks[1:]]
    fn, args = tasks[0]
    first = fn(*args)
    return [first, *(f.result() for f in futures)]
