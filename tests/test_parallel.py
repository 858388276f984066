"""How the kernels cut work between the cores, and the allocator setting of `kernels/memory`."""

from __future__ import annotations

import os
import subprocess
import sys
import threading

import pytest
from hypothesis import given
from hypothesis import strategies as st

from minitorch_compress.kernels import parallel
from minitorch_compress.kernels.memory import keep_freed_memory

KERNEL_THREADS = 2  # the pool path, whatever the machine's core count


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


_ONE_THREAD_SCRIPT = """
import threading
import numpy as np
from minitorch_compress import Tensor, no_grad, ops
from minitorch_compress.kernels import parallel
from minitorch_compress.models import resnet20

model = resnet20(rng=np.random.default_rng(0))
x = Tensor(np.random.default_rng(1).standard_normal((8, 3, 32, 32)).astype(np.float32))
loss = ops.cross_entropy(model.train()(x), np.arange(8) % 10)
loss.backward()                      # training forward and backward
model.eval()
with no_grad():
    model(x)                         # the fused inference path
assert parallel.get_num_threads() == 1
assert not parallel.pool_started(), "a pool thread was started"
assert threading.active_count() == 1, threading.enumerate()
print("one thread")
"""


def test_one_thread_runs_forward_backward_and_fused_inference_on_the_calling_thread():
    env = dict(os.environ, MINITORCH_NUM_THREADS="1")
    out = subprocess.run([sys.executable, "-c", _ONE_THREAD_SCRIPT], env=env,
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "one thread" in out.stdout


def test_set_num_threads_changes_the_split_and_rejects_nonsense():
    import pytest

    before = parallel.get_num_threads()
    try:
        parallel.set_num_threads(1)
        assert parallel.split_range(1000) == [(0, 1000)]
        parallel.set_num_threads(3)
        assert len(parallel.split_range(1000)) == 3
        with pytest.raises(ValueError):
            parallel.set_num_threads(0)
    finally:
        parallel.set_num_threads(before)


@pytest.mark.parametrize("value", ["many", "0", "-1", "2.5", "more than the cores"])
def test_a_bad_thread_count_in_the_environment_is_one_line(value):
    """Anything but a whole number from 1 to the available cores: one line, exit 2, naming
    the allowed range (99999 threads was accepted and cut each batch into a slice per image)."""
    cores = parallel.available_cores()
    if value == "more than the cores":
        value = str(cores + 1)
    env = dict(os.environ, MINITORCH_NUM_THREADS=value)
    out = subprocess.run([sys.executable, "-m", "minitorch_compress", "report", "--out-dir",
                          os.devnull + "_nothing"], env=env, capture_output=True, text=True)
    assert out.returncode == 2 and out.stderr.count("\n") == 1
    assert f"MINITORCH_NUM_THREADS={value!r}" in out.stderr
    assert f"from 1 to {cores}" in out.stderr


def test_a_thread_count_within_the_cores_is_accepted(monkeypatch):
    for value in ("1", str(parallel.available_cores()), " 1 "):
        monkeypatch.setenv("MINITORCH_NUM_THREADS", value)
        assert parallel.threads_from_environment() == int(value)
    monkeypatch.delenv("MINITORCH_NUM_THREADS")
    assert parallel.threads_from_environment() == parallel.available_cores()


def test_importing_with_too_many_threads_in_the_environment_uses_the_cores():
    """The rule lives in the kernels' module, so a script that never goes through the command
    line does not cut its batches into more slices than cores either."""
    cores = parallel.available_cores()
    env = dict(os.environ, MINITORCH_NUM_THREADS=str(cores + 1))
    out = subprocess.run([sys.executable, "-c", "from minitorch_compress.kernels.parallel "
                          "import get_num_threads; print(get_num_threads())"],
                         env=env, capture_output=True, text=True, check=True)
    assert int(out.stdout) == cores
