"""Shared fixtures: where ../shared is, and a tiny synthetic CIFAR-like dataset."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
SHARED_CHECKPOINT = SHARED / "weights" / "pretrained_model.pt"
SHARED_CIFAR = SHARED / "data" / "cifar-10-batches-py"

requires_shared = pytest.mark.skipif(
    not (SHARED_CHECKPOINT.is_file() and (SHARED_CIFAR / "test_batch").is_file()),
    reason=f"needs the course checkpoint and CIFAR-10 in {SHARED} (absent on this machine)",
)


@pytest.fixture
def tiny_cifar():
    """(train, test): uint8 images (N, 3, 32, 32) whose label is visible in the pixels.

    Class c images are brighter in channel c % 3, so a few steps of training can learn
    something and accuracies are not constant.
    """
    rng = np.random.default_rng(1234)

    def make(n: int):
        labels = rng.integers(0, 10, size=n)
        images = rng.integers(0, 120, size=(n, 3, 32, 32)).astype(np.uint8)
        images[np.arange(n), labels % 3] += 100
        return images, labels.astype(np.int64)

    return make(64), make(32)


# --------------------------------------------------------------------------------------------
# Lab scripts end to end: a synthetic CIFAR-10 folder in the official format and random
# "pretrained" weights, so the labs run on any machine in seconds (appended for Lab 3).
# --------------------------------------------------------------------------------------------


def write_cifar10_folder(parent: Path, n_per_batch: int = 64, seed: int = 0) -> Path:
    """Write ``parent/cifar-10-batches-py`` with `n_per_batch` random images per batch.

    Same layout as the official download (pickled dicts with ``b"data"``: uint8
    (n, 3072), ``b"labels"``: list of ints, plus ``batches.meta``), so the real loader reads it.

    Returns:
        The folder (pass it as ``--data-dir``).
    """
    import pickle

    from minitorch_compress.data.cifar10 import CLASSES, FOLDER_NAME

    rng = np.random.default_rng(seed)
    folder = parent / FOLDER_NAME
    folder.mkdir(parents=True, exist_ok=True)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {
            b"batch_label": name.encode(),
            b"labels": [int(v) for v in rng.integers(0, 10, n_per_batch)],
            b"data": rng.integers(0, 256, (n_per_batch, 3072), dtype=np.uint8),
            b"filenames": [f"{name}_{i:05d}.png".encode() for i in range(n_per_batch)],
        }
        (folder / name).write_bytes(pickle.dumps(batch, protocol=2))
    meta = {b"label_names": [c.encode() for c in CLASSES], b"num_vis": 3072}
    (folder / "batches.meta").write_bytes(pickle.dumps(meta, protocol=2))
    return folder


@pytest.fixture(scope="session")
def synthetic_cifar10_dir(tmp_path_factory) -> Path:
    """A CIFAR-10 folder with 64 random images in each training batch and in the test batch."""
    return write_cifar10_folder(tmp_path_factory.mktemp("cifar10"))


@pytest.fixture(scope="session")
def random_resnet20_weights(tmp_path_factory) -> Path:
    """An ``.npz`` (`save_checkpoint`) of a randomly initialised ResNet-20's state_dict, usable
    as ``--weights`` in place of the course checkpoint (accuracy near chance)."""
    from minitorch_compress.io.checkpoint import save_checkpoint
    from minitorch_compress.models import resnet20

    path = tmp_path_factory.mktemp("weights") / "random_resnet20.npz"
    save_checkpoint(path, resnet20(rng=np.random.default_rng(0)).state_dict(), {})
    return path


@pytest.fixture(scope="session")
def make_cifar_folder():
    """Factory: write a tiny CIFAR-10 folder in the official python-pickle layout.

    ``make_cifar_folder(parent, per_batch=16, test=16)`` writes ``parent/cifar-10-batches-py``
    with data_batch_1..5 (``per_batch`` images each), test_batch (``test`` images) and
    batches.meta, and returns that folder (pass it as ``--data-dir``). Pixels as in
    `tiny_cifar`: class c images are brighter in channel c % 3, so training can learn a bit.
    """
    import pickle

    from minitorch_compress.data.cifar10 import CLASSES, FOLDER_NAME

    def make(parent: Path, per_batch: int = 16, test: int = 16) -> Path:
        folder = parent / FOLDER_NAME
        folder.mkdir(parents=True)
        names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
        for seed, name in enumerate(names):
            n = test if name == "test_batch" else per_batch
            rng = np.random.default_rng(4321 + seed)
            labels = rng.integers(0, 10, size=n)
            images = rng.integers(0, 120, size=(n, 3, 32, 32)).astype(np.uint8)
            images[np.arange(n), labels % 3] += 100
            batch = {b"batch_label": name.encode(), b"labels": [int(v) for v in labels],
                     b"data": images.reshape(n, 3072),
                     b"filenames": [f"{name}_{i:05d}.png".encode() for i in range(n)]}
            (folder / name).write_bytes(pickle.dumps(batch, protocol=2))
        meta = {b"label_names": [c.encode() for c in CLASSES], b"num_vis": 3072}
        (folder / "batches.meta").write_bytes(pickle.dumps(meta, protocol=2))
        return folder

    return make
