"""Keep freed memory for reuse: the allocator setting that stops page faults in the hot path.

Every forward and backward pass allocates activations and gradients of a few MB each and
frees them again. glibc's malloc serves such blocks with fresh ``mmap`` calls and gives
them back to the OS on ``free``, so the next step touches brand-new pages and the kernel
zero-fills each one on first write: measured on the 2-core box, one ResNet-20 inference
batch of 100 caused ~3,400 page faults and ran at ~600 images/s; with the setting below it
causes none and runs at ~900 images/s (training: ~260 -> ~310 images/s).

`keep_freed_memory` raises malloc's mmap threshold (blocks up to that size come from the
heap, which is reused) and its trim threshold (freed heap is kept instead of returned), so
after the first step the process reuses the same pages. The price is that the process keeps
its peak heap (~0.8 GB for batch-256 training) until it exits. Importing `minitorch_compress`
does not apply it (a library should not change the allocator of, say, a student's Jupyter
kernel): the command line (`cli.run_cli`) and the benchmarks call `keep_freed_memory` when
they start, and so can any script that wants the speed. ``MINITORCH_KEEP_FREED_MEMORY=0``
makes that call leave malloc at its defaults. On systems without glibc it does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os

# glibc's mallopt parameter numbers (malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3

# Blocks up to this size come from the reusable heap (ResNet-20's largest activation at
# batch 256 is 16 MB; the whole CIFAR-10 training set as float32, 614 MB, still gets mmap).
MMAP_THRESHOLD_BYTES = 256 * 1024 * 1024
# Freed memory at the top of the heap is only returned to the OS beyond this much.
TRIM_THRESHOLD_BYTES = 2 * 1024 * 1024 * 1024

_applied: bool | None = None


def applied() -> bool:
    """Whether `keep_freed_memory` has changed malloc's settings in this process."""
    return bool(_applied)


def keep_freed_memory() -> bool:
    """Set glibc malloc's mmap and trim thresholds (once per process).

    Returns:
        True if the setting is in effect, False if it was switched off by
        ``MINITORCH_KEEP_FREED_MEMORY=0`` or malloc is not glibc's.
    """
    global _applied
    if _applied is not None:
        return _applied
    _applied = False
    if os.environ.get("MINITORCH_KEEP_FREED_MEMORY", "1") == "0":
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (macOS, Windows, musl without mallopt)
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    _applied = bool(
        mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)
        and mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES)
    )
    return _applied
