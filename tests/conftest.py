"""Shared fixtures: where ../shared is, and a tiny synthetic CIFAR-like dataset."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from cifar_files import CIFAR10_BATCH_NAMES, cifar10_batch_bytes, cifar10_meta_bytes
from hypothesis import settings

# CI (the variable CI is set) draws the same examples on every run, so a red CI always means
# a real, reproducible failure; local runs keep exploring new examples (hypothesis' default).
# A failure ever seen is pinned on its test with @example.
settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")

@pytest.fixture(autouse=True, scope="module")
def kernel_threads(request):
    """A test module that sets ``KERNEL_THREADS = n`` runs its kernels on n threads, so the
    one-thread path and the pool path are both tested on any machine (1 core or 16)."""
    from minitorch_compress.kernels import parallel

    wanted = getattr(request.module, "KERNEL_THREADS", None)
    if wanted is None:
        yield
        return
    before = parallel.get_num_threads()
    parallel.set_num_threads(wanted)
    yield
    parallel.set_num_threads(before)


@pytest.fixture(autouse=True, scope="session")
def sparse_break_even_pinned():
    """No test times a kernel: `to_sparse` sees every conv shape's break-even at 50 %
    instead of a calibration on this machine (tests of the calibration inject timings)."""
    from minitorch_compress.kernels import sparse_break_even

    with sparse_break_even.pinned(0.5):
        yield


SHARED = Path(__file__).resolve().parents[1].parent / "shared"
SHARED_CHECKPOINT = SHARED / "weights" / "pretrained_model.pt"
SHARED_CIFAR = SHARED / "data" / "cifar-10-batches-py"

requires_shared = pytest.mark.skipif(
    not (SHARED_CHECKPOINT.is_file() and (SHARED_CIFAR / "test_batch").is_file()),
    reason=f"needs the course checkpoint and CIFAR-10 in {SHARED} (absent on this machine)",
)


def label_visible_images(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """`n` uint8 images (n, 3, 32, 32) and int64 labels; the label is visible in the pixels.

    Class c images are brighter in channel c % 3, so a few steps of training can learn
    something and accuracies are not constant.
    """
    labels = rng.integers(0, 10, size=n)
    images = rng.integers(0, 120, size=(n, 3, 32, 32)).astype(np.uint8)
    images[np.arange(n), labels % 3] += 100
    return images, labels.astype(np.int64)


@pytest.fixture
def tiny_cifar():
    """(train, test): 64 and 32 images from `label_visible_images`."""
    rng = np.random.default_rng(1234)
    return label_visible_images(rng, 64), label_visible_images(rng, 32)


# --------------------------------------------------------------------------------------------
# Lab scripts end to end: a synthetic CIFAR-10 folder in the official format and random
# "pretrained" weights, so the labs run on any machine in seconds.
# --------------------------------------------------------------------------------------------


def write_cifar10_folder(parent: Path, per_batch: int = 64, test: int = 64,
                         seed: int = 0) -> Path:
    """Write ``parent/cifar-10-batches-py`` with `label_visible_images`.

    Same layout as the official download (pickled dicts with ``b"data"``: uint8 (n, 3072),
    ``b"labels"``: list of ints, plus ``batches.meta``), so the real loader reads it:
    data_batch_1..5 with `per_batch` images each and test_batch with `test` images.

    Returns:
        The folder (pass it as ``--data-dir``).
    """
    from minitorch_compress.data.cifar10 import FOLDER_NAME

    rng = np.random.default_rng(seed)
    folder = parent / FOLDER_NAME
    folder.mkdir(parents=True, exist_ok=True)
    for name in CIFAR10_BATCH_NAMES:
        n = test if name == "test_batch" else per_batch
        images, labels = label_visible_images(rng, n)
        (folder / name).write_bytes(cifar10_batch_bytes(name, images, labels))
    (folder / "batches.meta").write_bytes(cifar10_meta_bytes())
    return folder




@pytest.fixture(scope="session")
def synthetic_cifar10_dir(tmp_path_factory) -> Path:
    """A CIFAR-10 folder (read only) with 64 images in each training batch and in the test
    batch (`write_cifar10_folder`)."""
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
