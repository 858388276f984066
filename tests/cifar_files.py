"""CIFAR-10 files in the official format, written from arrays, for tests that need a dataset
on disk (the real loader reads them exactly as it reads the 170 MB download)."""

from __future__ import annotations

import numpy as np

CIFAR10_BATCH_NAMES = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]


def cifar10_batch_bytes(name: str, images: np.ndarray, labels: np.ndarray) -> bytes:
    """One batch file in the official format: a protocol-2 pickle of a dict with bytes keys,
    ``b"data"`` uint8 (n, 3072) and ``b"labels"`` a list of ints (images: (n, 3072) or
    (n, 3, 32, 32) uint8)."""
    import pickle

    n = len(labels)
    batch = {
        b"batch_label": name.encode(),
        b"labels": [int(v) for v in labels],
        b"data": np.asarray(images, dtype=np.uint8).reshape(n, 3072),
        b"filenames": [f"{name}_{i:05d}.png".encode() for i in range(n)],
    }
    return pickle.dumps(batch, protocol=2)


def cifar10_meta_bytes() -> bytes:
    """The official ``batches.meta`` file: the class names."""
    import pickle

    from minitorch_compress.data.cifar10 import CLASSES

    meta = {b"label_names": [c.encode() for c in CLASSES], b"num_vis": 3072}
    return pickle.dumps(meta, protocol=2)
