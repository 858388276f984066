"""Lab 1: sparse optimisation of the 3-point linear model, parts (b)-(f), both schedules.

Every part is run with the assignment's full-batch schedule (one update per step, the one to
report) and, for comparison, with the per-sample schedule a published solution used by mistake
(the same update applied once per data point, three per step). The maths lives in
`minitorch_compress.linear`; this module loops over the settings (`run_all`), computes every
number the report quotes beyond the final iterates (`evidence`, including the few extra runs
it needs) and returns them as the JSON payload of ``lab1.json`` (`payload`); `run_lab` does it
all for a `Lab1Options` and writes the file (``run_lab(Lab1Options(steps=50))`` from a Python
prompt). Rendering ``lab1.md`` from that JSON, and drawing the figures from the histories,
is `minitorch_compress.reports.lab1`'s job.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from minitorch_compress.errors import MinitorchError
from minitorch_compress.io.checkpoint import atomic_write
from minitorch_compress.linear import (
    MU_LAB1,
    SCHEDULES,
    X_LAB1,
    Y_LAB1,
    ZERO_TOL,
    History,
    best_k_sparse,
    gd_step,
    gradient,
    lasso_kkt_violation,
    loss,
    prox_step,
    run,
)
from minitorch_compress.options import Options, ensure_writable_dir
from minitorch_compress.paths import LOCAL_RESULTS_DIR, is_published_dir
from minitorch_compress.results import git_commit

# The code whose changes make a result "with uncommitted changes to the Lab 1 code".
LAB1_CODE = ("minitorch_compress/linear", "minitorch_compress/experiments/lab1.py",
             "minitorch_compress/reports/lab1.py", "labs/lab1*")
SCRIPT = "labs/lab1_sparse_linear.py"
DEFAULT_STEPS = 200  # the assignment's

# Settings exactly as written in the assignment; the strings are the JSON keys.
LAMBDAS_D = ("0.2", "0.5", "1.0", "2.0")
THRESHOLDS_E = ("0.004", "0.01", "0.02", "0.04")
THRESHOLDS_F = ("0.02", "0.04", "0.1", "0.2")
PARTS = ("b", "c", "d", "e", "f")
PART_TITLES = {
    "b": "(b) plain gradient descent",
    "c": "(c) projected GD, keep the 2 largest entries",
    "d": "(d) subgradient descent on L + lambda ||W||_1",
    "e": "(e) proximal gradient (soft-threshold t = mu * lambda)",
    "f": "(f) trimmed L1: soft-threshold only the 3 smallest entries",
}


@dataclass(frozen=True)
class Setting:
    """One case of the lab: a part, its parameter as written in the assignment, and run() args.

    Attributes:
        part: "b".."f".
        key: the parameter value as a string ("0.2"), or None for (b) and (c).
        method: the ``run`` method name.
        params: keyword arguments for ``run`` (lam / threshold).
    """

    part: str
    key: str | None
    method: str
    params: dict = field(default_factory=dict, hash=False, compare=False)

    @property
    def label(self) -> str:
        """Human-readable parameter, e.g. "lambda = 0.2", or "" for (b)/(c)."""
        if self.part == "d":
            return f"lambda = {self.key}"
        if self.part in ("e", "f"):
            return f"t = {self.key}"
        return ""

    @property
    def slug(self) -> str:
        """File-name fragment, e.g. "d_lam0.2"."""
        prefix = {"d": "lam", "e": "t", "f": "t"}.get(self.part, "")
        return self.part if self.key is None else f"{self.part}_{prefix}{self.key}"


def lab1_settings() -> list[Setting]:
    """All cases of parts (b)-(f), in the order of the assignment."""
    settings = [Setting("b", None, "gd"), Setting("c", None, "projected")]
    settings += [Setting("d", s, "subgradient", {"lam": float(s)}) for s in LAMBDAS_D]
    settings += [Setting("e", s, "prox", {"threshold": float(s)}) for s in THRESHOLDS_E]
    settings += [Setting("f", s, "trimmed", {"threshold": float(s)}) for s in THRESHOLDS_F]
    return settings


def run_all(steps: int) -> dict[str, dict[Setting, History]]:
    """Run every setting in both schedules.

    Returns:
        {schedule: {setting: History}}.
    """
    return {
        schedule: {s: run(s.method, steps, schedule=schedule, **s.params) for s in lab1_settings()}
        for schedule in SCHEDULES
    }


def clean(w: np.ndarray) -> np.ndarray:
    """Round-trip helper: turn -0.0 into 0.0 so tables and JSON do not show "-0.0000"."""
    return np.asarray(w, dtype=np.float64) + 0.0


def last_change(h: History) -> float:
    """Largest change of any entry of W in the final step (0 or round-off means converged)."""
    return float(np.max(np.abs(h.weights[-1] - h.weights[-2])))


def case_record(h: History) -> dict:
    """The JSON CASE: {"W": [5 floats], "loss": float, "nnz": int, "last_change": float}."""
    return {"W": [float(x) for x in clean(h.final_W)], "loss": h.final_loss, "nnz": h.nnz,
            "last_change": last_change(h)}


def results_json(results: dict[str, dict[Setting, History]]) -> dict:
    """Nest the results as {schedule: {"b": CASE, "c": CASE, "d": {key: CASE}, ...}}."""
    out: dict = {}
    for schedule, by_setting in results.items():
        parts: dict = {}
        for s, h in by_setting.items():
            if s.key is None:
                parts[s.part] = case_record(h)
            else:
                parts.setdefault(s.part, {})[s.key] = case_record(h)
        out[schedule] = parts
    return out


# ---------------------------------------------------------------------------------------------
# Evidence: every number the report quotes beyond the final iterates
# ---------------------------------------------------------------------------------------------


def floats(w: np.ndarray) -> list[float]:
    """A vector as JSON floats (-0.0 turned into 0.0)."""
    return [float(x) for x in clean(w)]


def support_indices(w: np.ndarray) -> list[int]:
    """0-based indices of the entries that count as non-zero (|w| > 1e-8, as in ‖W‖₀)."""
    return [int(j) for j in np.flatnonzero(np.abs(w) > ZERO_TOL)]


def max_abs_diff(a: np.ndarray, b: np.ndarray) -> float:
    """Largest |difference| between two arrays of the same shape."""
    return float(np.max(np.abs(np.asarray(a) - np.asarray(b))))


def support_fit(w: np.ndarray) -> np.ndarray:
    """The least-squares fit restricted to w's support: what an unbiased W there would be."""
    cols = support_indices(w)
    fit = np.zeros_like(np.asarray(w, dtype=np.float64))
    if cols:
        fit[cols] = np.linalg.lstsq(X_LAB1[:, cols], Y_LAB1, rcond=None)[0]
    return fit


def closed_form_error(h: History) -> float:
    """Largest gap between `gd_step` and W - 2 mu sum_i (X_i W - y_i) X_i along h's iterates."""
    X, y, mu = X_LAB1, Y_LAB1, MU_LAB1

    def explicit_step(w: np.ndarray) -> np.ndarray:
        return w - 2 * mu * sum((X[i] @ w - y[i]) * X[i] for i in range(X.shape[0]))

    return max(max_abs_diff(gd_step(w, X, y, mu), explicit_step(w)) for w in h.weights[:-1])


def trimmed_fixed_point_threshold(w: np.ndarray) -> float:
    """The smallest trimmed-L1 threshold t that keeps `support_fit(w)` fixed.

    On the dropped entries the trimmed step is a gradient step followed by a soft-threshold, so
    it leaves them at 0 iff t >= mu * |dL/dw_j| for every dropped j.
    """
    g = gradient(support_fit(w), X_LAB1, Y_LAB1)
    return float(MU_LAB1 * np.max(np.abs(np.delete(g, support_indices(w)))))


def per_point_trace(w: np.ndarray, t: float) -> list[np.ndarray]:
    """W at the start of one per-sample prox step and after each point's update within it."""
    trace = [w]
    for i in range(X_LAB1.shape[0]):
        trace.append(prox_step(trace[-1], X_LAB1[i : i + 1], Y_LAB1[i : i + 1], MU_LAB1, t))
    return trace


def evidence(results: dict[str, dict[Setting, History]], steps: int) -> dict:
    """Every number the report derives from the runs beyond the final iterates, as JSON.

    Returns:
        {"w_star", "l_star": the best 2-sparse fit W* (exhaustive search) and its loss;
        "w_minnorm": the minimum-norm exact fit; "closed_form_err": largest gap between
        `gd_step` and the explicit sum along (b); "c_supports", "c_ps_supports": the support
        (0-based indices) of (c)'s iterate after each step 1, 2, ..., full batch and per sample;
        "c_step1", "c_ps_step1": those iterates after step 1; "c_ps_first": the per-sample
        run's first update before its projection (point 1's gradient step from 0);
        "c_ls": the least-squares fit on the support where (c) ends; "t_critical": the
        smallest trimmed threshold that keeps it fixed; "e_last_ls": the least-squares fit on
        the support where (e) with the largest t ends; "pair_gap": max |W difference| between
        subgradient lambda and prox t = mu lambda, per pair; "d_osc": largest change of L over
        (d)'s last 20 steps, per lambda; "kkt_fb", "kkt_ps": lasso optimality violation
        (lambda = t/mu) of (e)'s final W, per t; "refits": L of the least-squares refit on each
        (e) support; "e_long": {t: CASE} for the (e) runs still moving after `steps`, rerun for
        10x as many; "e_vs", "d_vs": [parameter, per sample vs full batch with it, vs full
        batch with n times it]; "probe": steps at which (b)'s losses are compared, and
        "probe_losses": {"per_sample", "full_batch", "full_batch_n_mu"} there; "t_trace",
        "w_trace": see `per_point_trace`, from the final per-sample W of t_trace; "mu", "n"}.
    """
    X, y, mu, n = X_LAB1, Y_LAB1, MU_LAB1, X_LAB1.shape[0]
    by = {sched: {(s.part, s.key): h for s, h in results[sched].items()} for sched in SCHEDULES}
    fb, ps = by["full_batch"], by["per_sample"]
    w_star, l_star = best_k_sparse(X, y, 2)
    t_trace, t_last = THRESHOLDS_E[1], THRESHOLDS_E[-1]
    b_n_mu = run("gd", steps, mu=n * mu)
    probe = [s for s in (5, 10, 20, 50) if s <= steps]

    def kkt(runs: dict) -> list[float]:
        return [lasso_kkt_violation(runs[("e", t)].final_W, X, y, float(t) / mu)
                for t in THRESHOLDS_E]

    def versus(part: str, method: str, keys: tuple[str, ...], param: str) -> list[list]:
        """Is per sample closer to full batch with the same penalty or with n times it?"""
        return [[k, max_abs_diff(ps[(part, k)].final_W, fb[(part, k)].final_W),
                 max_abs_diff(ps[(part, k)].final_W,
                              run(method, steps, **{param: n * float(k)}).final_W)]
                for k in keys]

    return {
        "mu": mu,
        "n": n,
        "w_star": floats(w_star),
        "l_star": float(l_star),
        # From W0 = 0 every gradient lies in the row space of X: where plain GD must end.
        "w_minnorm": floats(np.linalg.pinv(X) @ y),
        "closed_form_err": closed_form_error(fb[("b", None)]),
        "c_supports": [support_indices(w) for w in fb[("c", None)].weights[1:]],
        "c_ps_supports": [support_indices(w) for w in ps[("c", None)].weights[1:]],
        "c_step1": floats(fb[("c", None)].weights[1]),
        "c_ps_step1": floats(ps[("c", None)].weights[1]),
        "c_ps_first": floats(gd_step(np.zeros(X.shape[1]), X[:1], y[:1], mu)),
        "c_ls": floats(support_fit(fb[("c", None)].final_W)),
        "t_critical": trimmed_fixed_point_threshold(fb[("c", None)].final_W),
        "e_last_ls": floats(support_fit(fb[("e", t_last)].final_W)),
        # The assignment's hint: subgradient with lambda ~ prox with t = mu*lambda.
        "pair_gap": [max_abs_diff(fb[("d", lam)].final_W, fb[("e", t)].final_W)
                     for lam, t in zip(LAMBDAS_D, THRESHOLDS_E, strict=True)],
        "d_osc": [float(np.max(np.abs(np.diff(fb[("d", lam)].losses[-20:]))))
                  for lam in LAMBDAS_D],
        "kkt_fb": kkt(fb),
        "kkt_ps": kkt(ps),
        "refits": [loss(support_fit(fb[("e", t)].final_W), X, y) for t in THRESHOLDS_E],
        "e_long": {t: case_record(run("prox", 10 * steps, threshold=float(t)))
                   for t in THRESHOLDS_E if last_change(fb[("e", t)]) > 1e-8},
        "e_vs": versus("e", "prox", THRESHOLDS_E, "threshold"),
        "d_vs": versus("d", "subgradient", LAMBDAS_D, "lam"),
        "probe": probe,
        "probe_losses": {
            "per_sample": [float(ps[("b", None)].losses[s]) for s in probe],
            "full_batch": [float(fb[("b", None)].losses[s]) for s in probe],
            "full_batch_n_mu": [float(b_n_mu.losses[s]) for s in probe],
        },
        "t_trace": t_trace,
        "w_trace": [floats(w) for w in per_point_trace(ps[("e", t_trace)].final_W,
                                                       float(t_trace))],
    }


def payload(results: dict[str, dict[Setting, History]], steps: int) -> dict:
    """The whole of ``lab1.json``: {schedule: parts} (`results_json`), "steps", "evidence"."""
    return {**results_json(results), "steps": steps, "evidence": evidence(results, steps)}


def provenance(steps: int) -> dict:
    """The ``_meta`` entry of ``lab1.json``: the command (as typed in a fresh clone) and the
    commit of the Lab 1 code."""
    command = f"python {SCRIPT}" + (f" --steps {steps}" if steps != DEFAULT_STEPS else "")
    return {"command": command,
            "commit": git_commit(LAB1_CODE, " with uncommitted changes to the Lab 1 code")}


#: The most steps a run may take: every run keeps its whole trajectory (the longest, (e)'s
#: convergence check, 10x the steps), and a million steps would hold about 400 MB of it and
#: take hours; 10**14 asked numpy for 3.55 PiB.
MAX_STEPS = 100_000


@dataclass(frozen=True)
class Lab1Options(Options):
    """Lab 1's options (``labs/lab1_sparse_linear.py``'s ``--steps`` and ``--out-dir``).

    Attributes:
        steps: optimisation steps per case (the assignment's 200).
        out_dir: where ``lab1.json`` (and, from the script, ``lab1.md`` and the figures) go.
    """

    steps: int = DEFAULT_STEPS
    out_dir: Path = LOCAL_RESULTS_DIR

    def __post_init__(self) -> None:
        object.__setattr__(self, "out_dir", Path(self.out_dir))
        if not isinstance(self.steps, int) or not 1 <= self.steps <= MAX_STEPS:
            raise MinitorchError(f"steps must be a whole number from 1 to {MAX_STEPS:,} (the "
                                 f"assignment's {DEFAULT_STEPS}), got {self.steps!r}")


def run_lab(options: Lab1Options) -> tuple[dict[str, dict[Setting, History]], dict]:
    """Run every case in both schedules and write ``<out_dir>/lab1.json`` (the folder is
    checked first).

    Returns:
        (the runs, {schedule: {setting: History}}, for the figures; the document written:
        `payload` plus its ``_meta`` `provenance`).
    """
    if options.steps != DEFAULT_STEPS and is_published_dir(options.out_dir):
        raise MinitorchError(
            f"--steps {options.steps} is not the assignment's {DEFAULT_STEPS}: such a run never "
            "replaces the published Lab 1; write it elsewhere (leave --out-dir out for "
            "results/local/)")
    ensure_writable_dir(options.out_dir, "--out-dir")
    results = run_all(options.steps)
    document = {**payload(results, options.steps), "_meta": provenance(options.steps)}
    text = json.dumps(document, indent=2) + "\n"
    atomic_write(options.out_dir / "lab1.json", lambda f: f.write(text.encode()))
    return results, document
