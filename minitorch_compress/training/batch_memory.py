"""Whether a training batch fits in memory, checked before the first step allocates it.

A training step keeps every layer's activations for the backward pass: about 2.2 MB per
image for the full-width ResNet-20 in float32 (measured with ``tracemalloc`` at batches of 64
and 128; narrower, channel-pruned models need less). A ``--batch-size`` of 10**9 on the
50,000 training images would ask for a 50,000-image batch, about 150 GB, and end in a
MemoryError (or the kernel's out-of-memory killer) during the first step; `check_batch_fits`
refuses it in one line instead.
"""

from __future__ import annotations

import os

from minitorch_compress.errors import MinitorchError

#: Bytes a training step needs per image of its batch (the measured 2.2 MB, with headroom).
TRAINING_BYTES_PER_IMAGE = 3 * 2**20
#: Bytes a distillation teacher's inference needs per image (measured 0.28 MB, with headroom).
TEACHER_BYTES_PER_IMAGE = 2**19


def available_memory() -> int | None:
    """Bytes the system can still give a process (Linux's MemAvailable, else the physical
    memory), or None where neither is known."""
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, AttributeError):
        return None


def check_batch_fits(batch_size: int, images: int, teacher: bool = False) -> None:
    """Raise unless a training batch of `batch_size` (at most the `images` there are) fits in
    the memory available now.

    Raises:
        MinitorchError: naming the batch, the memory it needs and the memory available.
    """
    batch = min(batch_size, images)
    needed = batch * (TRAINING_BYTES_PER_IMAGE + (TEACHER_BYTES_PER_IMAGE if teacher else 0))
    available = available_memory()
    if available is not None and needed > available:
        raise MinitorchError(
            f"--batch-size {batch_size}: a training step on {batch:,} images needs about "
            f"{needed / 2**30:.1f} GiB, more than the {available / 2**30:.1f} GiB available; "
            f"use at most {available // (needed // batch):,} (the recipe's is 256)")
