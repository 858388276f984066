"""The two rules every kernel, fast or reference, shares: output size and result dtype.

They live here once, so `conv.py`, `batchnorm.py` and the slow twins in `reference.py` cannot
drift apart.
"""

from __future__ import annotations

import numpy as np


def conv2d_output_size(
    h: int, w: int, kh: int, kw: int, stride: int, padding: int
) -> tuple[int, int]:
    """Spatial output size of a convolution: ``(H + 2p - kh) // s + 1`` per axis."""
    return (h + 2 * padding - kh) // stride + 1, (w + 2 * padding - kw) // stride + 1


def result_float_dtype(*arrays: np.ndarray) -> np.dtype:
    """float64 if any input is float64 (grad checks), otherwise float32 (training)."""
    if any(np.asarray(a).dtype == np.float64 for a in arrays):
        return np.dtype(np.float64)
    return np.dtype(np.float32)
