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
