"""How the kernels cut work between the cores, and the allocator setting of `kernels/memory`."""

from __future__ import annotations

import os
import subprocess
import sys
import threading

from hypothesis import given
from hypothesis import strategies as st

from minitorch_compress.kernels import parallel
from minitorch_compress.kernels.memory import keep_freed_memory


@given(n=st.integers(0, 10_000), min_per_part=st.integers(1, 50))
def test_split_range_covers_the_range_in_order(n: int, min_per_part: int):
    parts = parallel.split_range(n, min_per_part)
    assert 1 <= len(parts) <= parallel.WORKERS
    assert parts[0][0] == 0 and parts[-1][1] == n
    for (_, stop), (start, _) in zip(parts, parts[1:], strict=False):
        assert stop == start  # contiguous, no gap, no overlap
    if len(parts) > 1:
        assert all(stop - start >= min_per_part for start, stop in parts)
        sizes = [stop - start for start, stop in parts]
        assert max(sizes) - min(sizes) <= 1  # balanced


def test_run_parallel_returns_results_in_task_order_and_uses_threads():
    seen_threads = set()

    def work(i):
        seen_threads.add(threading.get_ident())
        return i * i

    tasks = [(work, (i,)) for i in range(parallel.WORKERS)]
    assert parallel.run_parallel(tasks) == [i * i for i in range(parallel.WORKERS)]
    assert parallel.run_parallel(tasks, blas_single_thread=True) == [
        i * i for i in range(parallel.WORKERS)
    ]
    # the caller runs one slice and the pool's WORKERS - 1 threads the others
    assert len(seen_threads) == parallel.WORKERS


def test_keep_freed_memory_is_on_by_default_and_can_be_switched_off():
    assert isinstance(keep_freed_memory(), bool)
    code = "from minitorch_compress.kernels.memory import keep_freed_memory as k; print(k())"
    env = dict(os.environ, MINITORCH_KEEP_FREED_MEMORY="0")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "False"
    if sys.platform.startswith("linux"):
        env["MINITORCH_KEEP_FREED_MEMORY"] = "1"
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                             text=True, check=True)
        assert out.stdout.strip() == "True"
