"""Tests for Lab 1 (minitorch_compress.linear) and its lab script.

Property tests draw inputs with hypothesis and keep them away from the places where a property
is ambiguous: entries exactly at a soft-threshold, ties in magnitude for the projection and the
trimmed prox, and entries near zero where the subgradient and the prox legitimately differ.
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from lab_scripts import load_lab_script

from minitorch_compress.linear import (
    MU_LAB1,
    X_LAB1,
    Y_LAB1,
    best_k_sparse,
    count_nonzero,
    gd_step,
    gradient,
    lasso_kkt_violation,
    loss,
    project_top_k,
    projected_gd_step,
    prox_step,
    run,
    soft_threshold,
    subgradient_step,
    trimmed_prox_step,
    trimmed_soft_threshold,
)

# ---------------------------------------------------------------------------------------------
# Strategies (local to this file; tests/strategies.py belongs to the engine tests)
# ---------------------------------------------------------------------------------------------

finite = st.floats(-5.0, 5.0, allow_nan=False, allow_infinity=False)
thresholds = st.floats(0.01, 2.0)


@st.composite
def problems(draw, max_n: int = 4, max_d: int = 6):
    """(W (d,), X (n, d), y (n,), mu) with moderate magnitudes."""
    n = draw(st.integers(1, max_n))
    d = draw(st.integers(1, max_d))
    W = draw(arrays(np.float64, d, elements=finite))
    X = draw(arrays(np.float64, (n, d), elements=finite))
    y = draw(arrays(np.float64, n, elements=finite))
    mu = draw(st.floats(1e-4, 0.1))
    return W, X, y, mu


def vectors(min_size: int = 1, max_size: int = 8, elements=finite):
    """1-D float64 arrays."""
    return st.integers(min_size, max_size).flatmap(
        lambda d: arrays(np.float64, d, elements=elements)
    )


@st.composite
def distinct_vectors(draw, min_size: int = 1, max_size: int = 8, zeros: bool = False):
    """1-D arrays whose non-zero magnitudes differ by at least 0.01 (no ties to break).

    Magnitudes are (distinct integers + 0.5) / 100 with random signs; with zeros=True some
    entries are exactly 0 (ties among zeros are harmless: the projection never keeps zeros).
    """
    d = draw(st.integers(min_size, max_size))
    ints = draw(st.lists(st.integers(1, 500), min_size=d, max_size=d, unique=True))
    signs = draw(st.lists(st.sampled_from([-1.0, 1.0]), min_size=d, max_size=d))
    # The +0.5 keeps magnitudes off round numbers, where hypothesis likes to put thresholds.
    v = (np.array(ints, dtype=np.float64) + 0.5) / 100.0 * np.array(signs)
    if zeros:
        mask = draw(st.lists(st.booleans(), min_size=d, max_size=d))
        v[np.array(mask, dtype=bool)] = 0.0
    return v


def away_from_threshold(v: np.ndarray, t: float, gap: float = 1e-6) -> bool:
    """True if no entry of v sits (nearly) on the kink |v| = t."""
    return bool(np.all(np.abs(np.abs(v) - t) > gap))


# ---------------------------------------------------------------------------------------------
# (a) the closed form, the gradient and the loss
# ---------------------------------------------------------------------------------------------


@settings(deadline=None, max_examples=200)
@given(problems())
def test_gd_step_matches_closed_form(problem):
    W, X, y, mu = problem
    # The assignment's formula with column vectors, written out point by point.
    W_col = W.reshape(-1, 1)
    update = np.zeros_like(W_col)
    for i in range(X.shape[0]):
        X_i = X[i : i + 1, :]  # (1, d)
        update += (X_i @ W_col - y[i]).item() * X_i.T
    expected = (W_col - 2.0 * mu * update).ravel()
    got = gd_step(W, X, y, mu)
    # Same arithmetic in a different summation order, so equal up to float64 round-off: a few
    # ulps of the magnitudes that enter each entry (no cancellation is allowed to hide a bug).
    magnitude = np.abs(W) + 2.0 * mu * ((np.abs(X) @ np.abs(W) + np.abs(y)) @ np.abs(X))
    assert np.all(np.abs(got - expected) <= 16 * np.finfo(np.float64).eps * magnitude)


def test_gd_step_on_the_lab_data_by_hand():
    # From W0 = 0: W1 = 2 mu X^T y, and X^T y = [-6, 11, 1, 3, -4] by hand.
    W1 = gd_step(np.zeros(5), X_LAB1, Y_LAB1, MU_LAB1)
    np.testing.assert_allclose(W1, 0.04 * np.array([-6.0, 11.0, 1.0, 3.0, -4.0]), atol=1e-15)
    # L is a sum (27 = 25 + 1 + 1 at W = 0), not a mean (9).
    assert loss(np.zeros(5), X_LAB1, Y_LAB1) == 27.0


@settings(deadline=None, max_examples=100)
@given(problems())
def test_gradient_matches_finite_differences(problem):
    W, X, y, _ = problem
    h = 1e-5
    numeric = np.empty_like(W)
    for j in range(W.size):
        e = np.zeros_like(W)
        e[j] = h
        numeric[j] = (loss(W + e, X, y) - loss(W - e, X, y)) / (2 * h)
    # L is quadratic, so central differences are exact up to round-off of order eps * L / h.
    tol = 1e-6 * (1.0 + loss(W, X, y) + np.abs(X).sum() ** 2)
    np.testing.assert_allclose(gradient(W, X, y), numeric, rtol=0, atol=tol)


# ---------------------------------------------------------------------------------------------
# Soft-thresholding
# ---------------------------------------------------------------------------------------------


@settings(deadline=None)
@given(thresholds, vectors(elements=st.floats(-1.0, 1.0)))
def test_soft_threshold_is_exactly_zero_inside_the_threshold(t, u):
    v = u * t  # every entry in [-t, t]
    out = soft_threshold(v, t)
    assert np.all(out == 0.0)


@settings(deadline=None)
@given(thresholds, vectors())
def test_soft_threshold_preserves_sign_and_shrinks_by_exactly_t(t, v):
    assume(away_from_threshold(v, t))
    out = soft_threshold(v, t)
    outside = np.abs(v) > t
    assert np.all(np.sign(out[outside]) == np.sign(v[outside]))
    np.testing.assert_allclose(np.abs(out[outside]), np.abs(v[outside]) - t, rtol=0, atol=1e-15)
    assert np.all(out[~outside] == 0.0)


@settings(deadline=None)
@given(thresholds, vectors(min_size=3, max_size=3), vectors(min_size=3, max_size=3))
def test_soft_threshold_is_non_expansive(t, a, b):
    dist = np.abs(soft_threshold(a, t) - soft_threshold(b, t))
    assert np.all(dist <= np.abs(a - b) + 1e-15)


def prox_objective(x: np.ndarray, v: np.ndarray, t: float) -> np.ndarray:
    """0.5 (x - v)^2 + t |x|, elementwise (the prox objective is separable)."""
    return 0.5 * (x - v) ** 2 + t * np.abs(x)


@settings(deadline=None)
@given(thresholds, finite)
def test_soft_threshold_minimises_the_prox_objective_on_a_grid(t, v):
    x_star = soft_threshold(np.array([v]), t)[0]
    grid = np.linspace(-abs(v) - 2 * t - 1, abs(v) + 2 * t + 1, 20001)
    best_on_grid = prox_objective(grid, v, t).min()
    f_star = prox_objective(np.array([x_star]), v, t)[0]
    assert f_star <= best_on_grid + 1e-12
    # And the grid gets close to it: the minimiser is not somewhere the grid cannot see.
    assert best_on_grid - f_star < 1e-6


@settings(deadline=None)
@given(thresholds, vectors(min_size=4, max_size=4), vectors(min_size=4, max_size=4))
def test_soft_threshold_beats_every_perturbation(t, v, delta):
    x_star = soft_threshold(v, t)
    f = prox_objective(x_star, v, t).sum()
    for scale in (1e-4, 1e-2, 1.0):
        assert f <= prox_objective(x_star + scale * delta, v, t).sum() + 1e-12


@settings(deadline=None)
@given(vectors())
def test_soft_threshold_with_zero_threshold_is_identity(v):
    np.testing.assert_array_equal(soft_threshold(v, 0.0), v)


def test_soft_threshold_rejects_negative_threshold():
    with pytest.raises(ValueError):
        soft_threshold(np.ones(3), -0.1)


# ---------------------------------------------------------------------------------------------
# Trimmed prox and projection
# ---------------------------------------------------------------------------------------------


@settings(deadline=None)
@given(distinct_vectors(min_size=2), thresholds, st.data())
def test_trimmed_prox_touches_only_the_m_smallest(v, t, data):
    assume(away_from_threshold(v, t))
    m = data.draw(st.integers(0, v.size))
    out = trimmed_soft_threshold(v, t, m)
    # The m smallest, found independently of the implementation's argsort.
    ranked = sorted(range(v.size), key=lambda j: abs(v[j]))
    small, large = ranked[:m], ranked[m:]
    np.testing.assert_array_equal(out[large], v[large])
    np.testing.assert_array_equal(out[small], soft_threshold(v[small], t))


@settings(deadline=None)
@given(vectors(), thresholds)
def test_trimmed_prox_limits(v, t):
    np.testing.assert_array_equal(trimmed_soft_threshold(v, t, 0), v)
    np.testing.assert_array_equal(trimmed_soft_threshold(v, t, v.size), soft_threshold(v, t))


@settings(deadline=None)
@given(distinct_vectors(zeros=True), st.integers(0, 9))
def test_projection_keeps_the_largest_min_k_nnz_entries(v, k):
    out = project_top_k(v, k)
    kept = out != 0
    assert kept.sum() == min(k, np.count_nonzero(v))
    np.testing.assert_array_equal(out[kept], v[kept])
    if kept.any() and (~kept).any():
        assert np.abs(v[kept]).min() > np.abs(v[~kept]).max()


@settings(deadline=None)
@given(st.lists(st.integers(-3, 3), min_size=1, max_size=9), st.integers(0, 9))
@example([0, 1, -1, 1, -1, 2], 2)  # Lab 1's first per-sample step ties like this
def test_projection_breaks_ties_by_position_earlier_index_wins(values, k):
    """Small integer entries tie often: the kept set is exactly the first k of the order
    (larger magnitude first, then earlier index), the docstring's rule."""
    v = np.array(values, dtype=np.float64)
    out = project_top_k(v, k)
    order = sorted(range(v.size), key=lambda i: (-abs(v[i]), i))
    expected = np.zeros_like(v)
    expected[order[:k]] = v[order[:k]]
    np.testing.assert_array_equal(out, expected)
    # and the same rule from the other side: the trimmed prox shrinks the last m of it
    m = v.size - min(k, v.size)
    shrunk = trimmed_soft_threshold(v, 0.5, m)
    assert all(shrunk[i] == v[i] for i in order[: v.size - m])


def test_projection_on_the_lab_data_first_step():
    # W1 = [-0.24, 0.44, 0.04, 0.12, -0.16]: the two largest magnitudes are w2 and w1.
    W1 = projected_gd_step(np.zeros(5), X_LAB1, Y_LAB1, MU_LAB1, 2)
    np.testing.assert_allclose(W1, [-0.24, 0.44, 0.0, 0.0, 0.0], atol=1e-15)


def test_count_nonzero_uses_the_1e8_tolerance():
    assert count_nonzero(np.array([0.0, 1e-9, -1e-8, 2e-8, -3.0])) == 2


# ---------------------------------------------------------------------------------------------
# Prox vs subgradient: the assignment's hint
# ---------------------------------------------------------------------------------------------


@settings(deadline=None, max_examples=200)
@given(problems(max_d=5), st.floats(0.01, 5.0), st.data())
def test_prox_and_subgradient_steps_agree_away_from_zero(problem, lam, data):
    W, X, y, mu = problem
    # Small data and step so the GD step rarely flips a sign (fewer rejected examples).
    X, y, mu = 0.2 * X, 0.2 * y, 0.1 * mu
    # Keep every entry of W away from 0 (sign(W) well defined and stable over the step).
    signs = data.draw(arrays(np.float64, W.size, elements=st.sampled_from([-1.0, 1.0])))
    W = signs * (0.5 + np.abs(W))
    v = gd_step(W, X, y, mu)
    t = mu * lam
    assume(np.all(np.sign(v) == np.sign(W)) and np.all(np.abs(v) > t + 1e-9))
    np.testing.assert_allclose(
        prox_step(W, X, y, mu, t), subgradient_step(W, X, y, mu, lam), rtol=1e-12, atol=1e-13
    )


def test_prox_and_subgradient_differ_at_zero():
    # At W = 0 with a small gradient the prox snaps to 0; the subgradient step (sign(0) = 0)
    # moves by the plain gradient step. This is where the two methods part ways.
    X, y = np.array([[1.0, 0.0]]), np.array([0.1])
    W = np.zeros(2)
    assert np.all(prox_step(W, X, y, 0.1, 0.5) == 0.0)
    np.testing.assert_allclose(subgradient_step(W, X, y, 0.1, 5.0), [0.02, 0.0])


# ---------------------------------------------------------------------------------------------
# run(): bookkeeping and the lab's answers, each checked against an independent criterion
# ---------------------------------------------------------------------------------------------


def test_run_records_every_step_and_matches_the_step_functions():
    h = run("trimmed", 7, threshold=0.05)
    assert h.losses.shape == (8,) and h.weights.shape == (8, 5)
    np.testing.assert_array_equal(h.weights[0], np.zeros(5))
    W = np.zeros(5)
    for k in range(1, 8):
        W = trimmed_prox_step(W, X_LAB1, Y_LAB1, MU_LAB1, 0.05, 3)
        np.testing.assert_array_equal(h.weights[k], W)
        assert h.losses[k] == loss(W, X_LAB1, Y_LAB1)


def test_per_sample_schedule_is_one_update_per_point():
    h = run("prox", 3, threshold=0.01, schedule="per_sample")
    W = np.zeros(5)
    for _ in range(3):
        for i in range(3):
            W = prox_step(W, X_LAB1[i : i + 1], Y_LAB1[i : i + 1], MU_LAB1, 0.01)
    np.testing.assert_array_equal(h.final_W, W)
    # ... and it is a different algorithm from full batch.
    assert not np.allclose(h.final_W, run("prox", 3, threshold=0.01).final_W)


def test_run_rejects_bad_arguments():
    with pytest.raises(ValueError):
        run("lasso", 1)
    with pytest.raises(ValueError):
        run("gd", 1, schedule="minibatch")
    with pytest.raises(ValueError):
        run("prox", 1)  # no threshold


def test_gd_converges_to_the_minimum_norm_solution():
    h = run("gd", 200)
    np.testing.assert_allclose(h.final_W, np.linalg.pinv(X_LAB1) @ Y_LAB1, atol=1e-10)
    assert h.final_loss < 1e-20


def test_projected_gd_iterates_are_two_sparse_and_end_at_a_least_squares_fit():
    h = run("projected", 200)
    assert all(count_nonzero(w) <= 2 for w in h.weights)
    # Its end point is the exact least-squares fit on its own support {w2, w5}.
    np.testing.assert_allclose(h.final_W, [0.0, 2.2, 0.0, 0.0, -2.0 / 3.0], atol=1e-10)
    # ... which is not the best 2-sparse fit: W* = [1, 3, 0, 0, 0] fits exactly.
    w_star, l_star = best_k_sparse(X_LAB1, Y_LAB1, 2)
    np.testing.assert_allclose(w_star, [1.0, 3.0, 0.0, 0.0, 0.0], atol=1e-12)
    assert l_star < 1e-20 < h.final_loss


@pytest.mark.parametrize("t", [0.01, 0.02, 0.04])
def test_full_batch_prox_reaches_the_lasso_minimiser(t):
    # Checked through the optimality conditions, not against stored numbers.
    h = run("prox", 200, threshold=t)
    assert lasso_kkt_violation(h.final_W, X_LAB1, Y_LAB1, t / MU_LAB1) < 1e-6


@pytest.mark.parametrize("t", [0.01, 0.02, 0.04])
def test_per_sample_prox_does_not_solve_the_lasso(t):
    h = run("prox", 200, threshold=t, schedule="per_sample")
    assert lasso_kkt_violation(h.final_W, X_LAB1, Y_LAB1, t / MU_LAB1) > 0.1


def test_lasso_kkt_violation_detects_a_non_minimiser():
    assert lasso_kkt_violation(np.zeros(5), X_LAB1, Y_LAB1, 1.0) > 1.0
    # With a huge lambda, W = 0 is optimal.
    assert lasso_kkt_violation(np.zeros(5), X_LAB1, Y_LAB1, 100.0) == 0.0


# ---------------------------------------------------------------------------------------------
# The lab script end to end
# ---------------------------------------------------------------------------------------------


def test_lab_script_writes_json_table_and_figures(tmp_path, monkeypatch):
    # the experiment lives in minitorch_compress.experiments.lab1; the script is its CLI
    lab1 = load_lab_script("lab1_sparse_linear", monkeypatch)
    assert lab1.main(["--out-dir", str(tmp_path), "--steps", "40", "--subset", "5"]) == 0

    data = json.loads((tmp_path / "lab1.json").read_text())
    keys = {
        "d": {"0.2", "0.5", "1.0", "2.0"},
        "e": {"0.004", "0.01", "0.02", "0.04"},
        "f": {"0.02", "0.04", "0.1", "0.2"},
    }
    assert set(data) == {"full_batch", "per_sample", "steps", "evidence", "_meta"}
    assert data["steps"] == 40 and data["_meta"]["command"].endswith("--steps 40")
    for schedule in (data["full_batch"], data["per_sample"]):
        assert set(schedule) == {"b", "c", "d", "e", "f"}
        cases = [schedule["b"], schedule["c"]]
        for part, expected in keys.items():
            assert set(schedule[part]) == expected
            cases += list(schedule[part].values())
        for case in cases:
            assert set(case) == {"W", "loss", "nnz", "last_change"}
            assert len(case["W"]) == 5 and all(isinstance(w, float) for w in case["W"])
            assert isinstance(case["loss"], float) and isinstance(case["nnz"], int)
            assert case["nnz"] == sum(abs(w) > 1e-8 for w in case["W"])
    assert data["full_batch"]["c"]["nnz"] == 2
    assert len(data["evidence"]["c_supports"]) == 40  # one support per step

    # the page is a pure function of the JSON: re-rendered from it alone, it is the same
    from minitorch_compress.reports import lab1 as report

    assert report.render_lab1(data) == (tmp_path / "lab1.md").read_text()

    table = (tmp_path / "lab1.md").read_text()
    assert "python labs/lab1_sparse_linear.py" in table and "40 steps" in table
    for part in "bcdef":  # overview figures embedded, linked relative to lab1.md's folder
        link = f"(lab1/overview_{part}.png)"
        assert link in table and (tmp_path / link[1:-1]).exists()
    figures = sorted((tmp_path / "lab1").glob("*.png"))
    assert len(figures) == 2 * 14 + 5
    assert all(f.stat().st_size > 1000 for f in figures)
    assert (tmp_path / "lab1" / "full_batch_d_lam0.2.png").exists()
    assert (tmp_path / "lab1" / "overview_f.png").exists()


def test_importing_the_package_does_not_import_matplotlib():
    code = (
        "import sys, minitorch_compress.linear, minitorch_compress.experiments.lab1; "
        "print('matplotlib' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
