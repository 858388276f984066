"""Sparsity operators used by Lab 1: hard projection, soft-thresholding, trimmed soft-thresholding.

These are pure maps R^d -> R^d with no data in them, so they can be tested on their own:

* ``project_top_k(v, k)``: Euclidean projection onto {x : ||x||_0 <= k}.
* ``soft_threshold(v, t)``: the proximal operator of t * ||x||_1.
* ``trimmed_soft_threshold(v, t, m)``: soft-thresholding applied only to the m entries of v with
  the smallest magnitude (the "trimmed L1" penalty leaves the d - m largest entries unpenalised).

All functions return a new float64 array and never modify their input.
"""

from __future__ import annotations

import numpy as np


def magnitude_order(v: np.ndarray) -> np.ndarray:
    """Indices of v from the largest magnitude to the smallest; among equal magnitudes the
    earlier index comes first (a stable sort of -|v|), so the order is deterministic.

    This one ranking decides both "the k largest" (`project_top_k` keeps the first k, so on a
    tie the earlier entry is kept, as ``numpy.argsort(-abs(v))``-style top-k returns) and "the
    m smallest" (`trimmed_soft_threshold` shrinks the last m).

    Args:
        v: (d,) array.

    Returns:
        (d,) integer array, a permutation of 0..d-1.
    """
    return np.argsort(-np.abs(v), kind="stable")


def project_top_k(v: np.ndarray, k: int) -> np.ndarray:
    """Project onto the set {x : ||x||_0 <= k}: keep the k largest-magnitude entries, zero the rest.

    This is the exact Euclidean projection (the closest k-sparse vector), because zeroing an
    entry costs its squared magnitude, so the cheapest entries to drop are the smallest ones.
    Ties in magnitude are broken by position (earlier index wins), which only matters when the
    projection is not unique.

    Args:
        v: (d,) array.
        k: number of entries to keep, k >= 0.

    Returns:
        (d,) float64 array with at most k non-zero entries.
    """
    v = np.asarray(v, dtype=np.float64)
    if k < 0:
        raise ValueError(f"k must be >= 0, got {k}")
    out = np.zeros_like(v)
    keep = magnitude_order(v)[:k]
    out[keep] = v[keep]
    return out


def soft_threshold(v: np.ndarray, t: float) -> np.ndarray:
    """Soft-thresholding S_t(v) = sign(v) * max(|v| - t, 0), elementwise.

    S_t is the proximal operator of t * ||x||_1, i.e. it returns
    argmin_x 0.5 * ||x - v||^2 + t * ||x||_1. Entries with |v_j| <= t become exactly zero,
    which is why proximal gradient produces exact zeros where a subgradient method only
    oscillates around zero.

    Args:
        v: (d,) array (any shape works; the map is elementwise).
        t: threshold, t >= 0.

    Returns:
        float64 array with the shape of v.
    """
    if t < 0:
        raise ValueError(f"threshold must be >= 0, got {t}")
    v = np.asarray(v, dtype=np.float64)
    return np.sign(v) * np.maximum(np.abs(v) - t, 0.0)


def trimmed_soft_threshold(v: np.ndarray, t: float, m: int) -> np.ndarray:
    """Soft-threshold only the m smallest-magnitude entries of v; leave the others unchanged.

    Among entries of equal magnitude the later index counts as smaller (`magnitude_order`).

    The trimmed L1 penalty t * (sum of the m smallest |x_j|) does not shrink the d - m largest
    entries, so it avoids the bias that plain L1 puts on the weights we want to keep. The
    assignment defines its prox step as this operator (which entries are "smallest" is decided
    on v itself, before shrinking).

    Args:
        v: (d,) array.
        t: threshold, t >= 0.
        m: how many of the smallest-magnitude entries are shrunk, 0 <= m <= d.

    Returns:
        (d,) float64 array.
    """
    v = np.asarray(v, dtype=np.float64)
    if not 0 <= m <= v.size:
        raise ValueError(f"m must be in [0, {v.size}], got {m}")
    out = v.copy()
    idx = magnitude_order(v)[v.size - m:]
    out[idx] = soft_threshold(v[idx], t)
    return out


# Magnitudes at or below this count as zero in ||W||_0: iterates that converge to 0 only
# geometrically (never exactly) must not count as support.
ZERO_TOL = 1e-8


def count_nonzero(w: np.ndarray, tol: float = ZERO_TOL) -> int:
    """Number of entries with |w_j| > tol (the ||W||_0 reported in the Lab 1 table).

    Args:
        w: array of any shape.
        tol: magnitudes at or below this count as zero.

    Returns:
        The count, as a Python int.
    """
    return int(np.count_nonzero(np.abs(np.asarray(w)) > tol))
