"""Lab 1: sparse optimisation of a 3-point linear model, every method written out step by step.

The model is y_i ~ X_i W with X_i in R^{1x5} and W in R^{5x1}; the loss is a *sum* over the
three points, L(W) = sum_i (X_i W - y_i)^2. W is stored as a flat (5,) float64 array and X as
the (3, 5) matrix whose rows are the X_i, so X @ W is the (3,) vector of predictions.

Methods (each a single update W_k -> W_{k+1} with learning rate mu):

* ``"gd"``          plain gradient descent, W - mu * grad L(W)                        (part b)
* ``"projected"``   GD step, then keep the k largest-magnitude entries                (part c)
* ``"subgradient"`` W - mu * (grad L(W) + lam * sign(W)), a subgradient of L + lam||W||_1 (d)
* ``"prox"``        GD step, then soft-threshold with ``threshold`` (= mu * lam)      (part e)
* ``"trimmed"``     GD step, then soft-threshold only the m smallest-magnitude entries (part f)

``run`` applies one of them for a number of steps and records L and W after every step. With
``schedule="full_batch"`` (the assignment) each step uses the gradient of the whole sum. With
``schedule="per_sample"`` each step applies the *same update* three times, once per data point,
using that point's gradient alone; a published solution did this by mistake, and the lab keeps
it only to show how the results differ.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from minitorch_compress.linear.prox import (
    count_nonzero,
    project_top_k,
    soft_threshold,
    trimmed_soft_threshold,
)

# The three data points of the assignment. Read-only so a student cannot change them by accident
# (functions that need a writable copy make one).
X_LAB1 = np.array(
    [
        [-1.0, 2.0, 1.0, 1.0, -1.0],
        [-2.0, 1.0, -2.0, 0.0, 2.0],
        [1.0, 0.0, -2.0, -2.0, -1.0],
    ]
)
Y_LAB1 = np.array([5.0, 1.0, 1.0])
X_LAB1.setflags(write=False)
Y_LAB1.setflags(write=False)

MU_LAB1 = 0.02
METHODS = ("gd", "projected", "subgradient", "prox", "trimmed")
SCHEDULES = ("full_batch", "per_sample")


def residual(W: np.ndarray, X: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Residuals r_i = X_i W - y_i.

    Args:
        W: (d,) weights.
        X: (n, d) data, one row per point.
        y: (n,) targets.

    Returns:
        (n,) float64 residuals.
    """
    return np.asarray(X, dtype=np.float64) @ np.asarray(W, dtype=np.float64) - y


def loss(W: np.ndarray, X: np.ndarray, y: np.ndarray) -> float:
    """Sum-of-squares loss L(W) = sum_i (X_i W - y_i)^2 (a sum over points, not a mean).

    Args:
        W: (d,) weights.
        X: (n, d) data.
        y: (n,) targets.

    Returns:
        L(W) as a Python float.
    """
    r = residual(W, X, y)
    return float(r @ r)


def gradient(W: np.ndarray, X: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Gradient of L: grad L(W) = 2 * sum_i (X_i W - y_i) X_i^T = 2 X^T (X W - y).

    Args:
        W: (d,) weights.
        X: (n, d) data.
        y: (n,) targets.

    Returns:
        (d,) float64 gradient.
    """
    return 2.0 * np.asarray(X, dtype=np.float64).T @ residual(W, X, y)


def gd_step(W: np.ndarray, X: np.ndarray, y: np.ndarray, mu: float) -> np.ndarray:
    """One gradient-descent step on L: W - mu * grad L(W).

    This is the closed form of part (a): W_{k+1} = W_k - 2 mu sum_i (X_i W_k - y_i) X_i^T.

    Args:
        W: (d,) current weights.
        X: (n, d) data.
        y: (n,) targets.
        mu: learning rate.

    Returns:
        (d,) new weights (W itself is not modified).
    """
    return np.asarray(W, dtype=np.float64) - mu * gradient(W, X, y)


def projected_gd_step(W: np.ndarray, X: np.ndarray, y: np.ndarray, mu: float, k: int) -> np.ndarray:
    """Projected GD: a GD step, then projection onto {||W||_0 <= k}.

    Args:
        W: (d,) current weights.
        X: (n, d) data.
        y: (n,) targets.
        mu: learning rate.
        k: number of non-zero entries to keep.

    Returns:
        (d,) new weights with at most k non-zeros.
    """
    return project_top_k(gd_step(W, X, y, mu), k)


def subgradient_step(
    W: np.ndarray, X: np.ndarray, y: np.ndarray, mu: float, lam: float
) -> np.ndarray:
    """Subgradient step on L(W) + lam * ||W||_1: W - mu * (grad L(W) + lam * sign(W)).

    sign(0) = 0 is used, which is a valid subgradient of |w| at 0. An entry that should be zero
    is kicked back and forth by +-mu*lam instead of landing on 0, so this method does not give
    exact zeros (compare ``prox_step``).

    Args:
        W: (d,) current weights.
        X: (n, d) data.
        y: (n,) targets.
        mu: learning rate.
        lam: L1 strength, lam >= 0.

    Returns:
        (d,) new weights.
    """
    W = np.asarray(W, dtype=np.float64)
    return W - mu * (gradient(W, X, y) + lam * np.sign(W))


def prox_step(
    W: np.ndarray, X: np.ndarray, y: np.ndarray, mu: float, threshold: float
) -> np.ndarray:
    """Proximal-gradient (ISTA) step: a GD step on L, then soft-thresholding.

    With threshold = mu * lam this minimises L + lam * ||W||_1. Away from zero (when the GD
    step leaves an entry with the same sign as W and magnitude above the threshold) it equals
    ``subgradient_step`` with that lam; the two differ only near zero, where the prox snaps the
    entry to exactly 0.

    Args:
        W: (d,) current weights.
        X: (n, d) data.
        y: (n,) targets.
        mu: learning rate.
        threshold: soft-threshold t = mu * lam.

    Returns:
        (d,) new weights.
    """
    return soft_threshold(gd_step(W, X, y, mu), threshold)


def trimmed_prox_step(
    W: np.ndarray, X: np.ndarray, y: np.ndarray, mu: float, threshold: float, m: int
) -> np.ndarray:
    """Trimmed-L1 proximal step: a GD step, then soft-threshold only the m smallest entries.

    Args:
        W: (d,) current weights.
        X: (n, d) data.
        y: (n,) targets.
        mu: learning rate.
        threshold: soft-threshold t = mu * lam applied to the m smallest-magnitude entries.
        m: how many entries are penalised (the d - m largest are left alone).

    Returns:
        (d,) new weights.
    """
    return trimmed_soft_threshold(gd_step(W, X, y, mu), threshold, m)


def best_k_sparse(X: np.ndarray, y: np.ndarray, k: int) -> tuple[np.ndarray, float]:
    """Exhaustive search: the least-squares fit with at most k non-zeros (the true L0 optimum).

    Tries every support of size k (C(d, k) of them; 10 for the lab), solves least squares on
    each and keeps the best. Only feasible for tiny d, which is exactly the point of Lab 1: it
    gives the answer the sparse methods are trying to find, so their results can be judged.

    Args:
        X: (n, d) data.
        y: (n,) targets.
        k: support size, 0 <= k <= d.

    Returns:
        (W, L): the (d,) best k-sparse weights and their loss. Ties keep the first support in
        lexicographic order.
    """
    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    best_W, best_L = np.zeros(X.shape[1]), loss(np.zeros(X.shape[1]), X, y)
    for support in itertools.combinations(range(X.shape[1]), k):
        cols = list(support)
        W = np.zeros(X.shape[1])
        W[cols] = np.linalg.lstsq(X[:, cols], y, rcond=None)[0]
        L = loss(W, X, y)
        if L < best_L:
            best_W, best_L = W, L
    return best_W, best_L


def lasso_kkt_violation(W: np.ndarray, X: np.ndarray, y: np.ndarray, lam: float) -> float:
    """How far W is from minimising L(W) + lam * ||W||_1 (0 exactly at the minimiser).

    The optimality conditions are: grad_j L(W) + lam * sign(w_j) = 0 where w_j != 0, and
    |grad_j L(W)| <= lam where w_j = 0. This returns the largest violation over j, so a run can
    be checked without knowing the answer.

    Args:
        W: (d,) weights.
        X: (n, d) data.
        y: (n,) targets.
        lam: L1 strength.

    Returns:
        max_j violation, >= 0.
    """
    W = np.asarray(W, dtype=np.float64)
    g = gradient(W, X, y)
    nonzero = W != 0
    on_support = np.abs(g[nonzero] + lam * np.sign(W[nonzero]))
    off_support = np.maximum(np.abs(g[~nonzero]) - lam, 0.0)
    return float(np.max(np.concatenate([on_support, off_support]), initial=0.0))


@dataclass
class History:
    """What ``run`` records: L and W at every step, step 0 being the starting point.

    Attributes:
        method: one of ``METHODS``.
        schedule: ``"full_batch"`` or ``"per_sample"``.
        losses: (steps + 1,) full loss L(W_k) for k = 0..steps.
        weights: (steps + 1, d) the iterates W_k.
    """

    method: str
    schedule: str
    losses: np.ndarray
    weights: np.ndarray

    @property
    def final_W(self) -> np.ndarray:
        """(d,) weights after the last step."""
        return self.weights[-1]

    @property
    def final_loss(self) -> float:
        """L after the last step."""
        return float(self.losses[-1])

    @property
    def nnz(self) -> int:
        """||W||_0 after the last step, counting |w| > 1e-8."""
        return count_nonzero(self.final_W)


def make_update(
    method: str,
    mu: float,
    *,
    lam: float | None = None,
    threshold: float | None = None,
    k: int = 2,
    m: int = 3,
) -> Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]:
    """Bind a method's hyper-parameters, giving an update ``(W, X, y) -> W_new``.

    Args:
        method: one of ``METHODS``.
        mu: learning rate.
        lam: L1 strength, required by ``"subgradient"``.
        threshold: soft-threshold, required by ``"prox"`` and ``"trimmed"``.
        k: entries kept by ``"projected"``.
        m: entries shrunk by ``"trimmed"``.

    Returns:
        A function of (W (d,), X (n, d), y (n,)) returning the (d,) updated weights.
    """
    if method == "gd":
        return lambda W, X, y: gd_step(W, X, y, mu)
    if method == "projected":
        return lambda W, X, y: projected_gd_step(W, X, y, mu, k)
    if method == "subgradient":
        if lam is None:
            raise ValueError("method 'subgradient' needs lam")
        return lambda W, X, y: subgradient_step(W, X, y, mu, lam)
    if method == "prox":
        if threshold is None:
            raise ValueError("method 'prox' needs threshold")
        return lambda W, X, y: prox_step(W, X, y, mu, threshold)
    if method == "trimmed":
        if threshold is None:
            raise ValueError("method 'trimmed' needs threshold")
        return lambda W, X, y: trimmed_prox_step(W, X, y, mu, threshold, m)
    raise ValueError(f"unknown method {method!r}; expected one of {METHODS}")


def run(
    method: str,
    steps: int = 200,
    *,
    mu: float = MU_LAB1,
    lam: float | None = None,
    threshold: float | None = None,
    k: int = 2,
    m: int = 3,
    schedule: str = "full_batch",
    X: np.ndarray | None = None,
    y: np.ndarray | None = None,
    W0: np.ndarray | None = None,
) -> History:
    """Run one Lab 1 method and record L and W after every step.

    Args:
        method: ``"gd"``, ``"projected"``, ``"subgradient"``, ``"prox"`` or ``"trimmed"``.
        steps: number of steps.
        mu: learning rate (0.02 in the assignment).
        lam: L1 strength for ``"subgradient"``.
        threshold: soft-threshold for ``"prox"`` / ``"trimmed"`` (mu * lam).
        k: entries kept by ``"projected"`` (2 in the assignment).
        m: smallest entries shrunk by ``"trimmed"`` (3 in the assignment).
        schedule: ``"full_batch"`` (one update per step with the gradient of the whole sum; the
            assignment) or ``"per_sample"`` (the same update applied once per data point, in
            order, each with that point's gradient alone: n updates per step).
        X: (n, d) data; defaults to the assignment's ``X_LAB1``.
        y: (n,) targets; defaults to ``Y_LAB1``.
        W0: (d,) starting weights; defaults to zeros.

    Returns:
        A ``History`` with losses (steps + 1,) and weights (steps + 1, d); the loss is always
        the full sum over all points, whatever the schedule.
    """
    X = X_LAB1 if X is None else np.asarray(X, dtype=np.float64)
    y = Y_LAB1 if y is None else np.asarray(y, dtype=np.float64)
    if schedule not in SCHEDULES:
        raise ValueError(f"unknown schedule {schedule!r}; expected one of {SCHEDULES}")
    update = make_update(method, mu, lam=lam, threshold=threshold, k=k, m=m)
    W = np.zeros(X.shape[1]) if W0 is None else np.array(W0, dtype=np.float64)

    weights = np.empty((steps + 1, W.size))
    losses = np.empty(steps + 1)
    weights[0], losses[0] = W, loss(W, X, y)
    for step in range(1, steps + 1):
        if schedule == "full_batch":
            W = update(W, X, y)
        else:
            # Batch size 1: slice rows i:i+1 so X stays 2-D and the same update code applies.
            for i in range(X.shape[0]):
                W = update(W, X[i : i + 1], y[i : i + 1])
        weights[step], losses[step] = W, loss(W, X, y)
    return History(method=method, schedule=schedule, losses=losses, weights=weights)
