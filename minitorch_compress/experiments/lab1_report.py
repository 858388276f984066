"""Lab 1's outputs: the figures, the markdown report and the JSON of a run of `lab1.run_all`.

`write_outputs` puts under an output folder:

* ``lab1.json``: ``{schedule: {"b": CASE, "c": CASE, "d": {lambda: CASE}, "e": {t: CASE},
  "f": {t: CASE}}}`` with CASE = ``{"W": [5 floats], "loss": float, "nnz": int}``;
* ``lab1.md``: one table per part, the five overview figures, and a commentary whose numbers
  come from this run;
* ``lab1/``: a two-panel figure per case and schedule, and one overview per part.

matplotlib is imported inside `write_figures` only, so importing this module stays cheap.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from minitorch_compress.experiments.lab1 import (
    LAMBDAS_D,
    PART_TITLES,
    PARTS,
    THRESHOLDS_E,
    THRESHOLDS_F,
    Setting,
    clean,
    results_json,
)
from minitorch_compress.linear import (
    MU_LAB1,
    SCHEDULES,
    X_LAB1,
    Y_LAB1,
    ZERO_TOL,
    History,
    best_k_sparse,
    count_nonzero,
    gd_step,
    gradient,
    lasso_kkt_violation,
    loss,
    prox_step,
    run,
)

FIGURE_DIR = "lab1"  # the figures' folder, next to lab1.md (so links are relative to it)
# The code whose changes make a report "with uncommitted changes to the Lab 1 code".
LAB1_CODE = ("minitorch_compress/linear", "minitorch_compress/experiments/lab1.py",
             "minitorch_compress/experiments/lab1_report.py", "labs/lab1*")

# ---------------------------------------------------------------------------------------------
# Figures
# ---------------------------------------------------------------------------------------------


def write_figures(results: dict[str, dict[Setting, History]], fig_dir: Path) -> list[Path]:
    """One two-panel figure per case and one overview per part.

    Case figures: left, L vs step on a log scale; right, every entry of W vs step.
    Overview figures: L vs step for every setting (full-batch solid, per-sample dashed) and
    the final W of every setting as grouped bars, one panel per schedule.

    Returns:
        The paths written.
    """
    # Imported here so that importing this module (or the package) never pulls in matplotlib.
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig_dir.mkdir(parents=True, exist_ok=True)
    floor = np.finfo(np.float64).tiny  # an exact 0 loss cannot be drawn on a log axis
    written = []
    for schedule, by_setting in results.items():
        for s, h in by_setting.items():
            fig, (ax_l, ax_w) = plt.subplots(1, 2, figsize=(10, 3.6))
            steps = np.arange(h.losses.size)
            ax_l.semilogy(steps, np.maximum(h.losses, floor))
            ax_l.set(xlabel="step", ylabel="L (log scale)", title="loss")
            for j in range(h.weights.shape[1]):
                ax_w.plot(steps, h.weights[:, j], label=f"w{j + 1}")
            ax_w.axhline(0.0, color="grey", lw=0.5)
            ax_w.set(xlabel="step", ylabel="value", title="entries of W")
            ax_w.legend(fontsize=8, ncol=5, loc="best")
            setting = f", {s.label}" if s.label else ""
            fig.suptitle(f"{PART_TITLES[s.part]}{setting}  [{schedule}]", fontsize=10)
            # Fixed margins: tight_layout would triple the plotting time of this lab.
            fig.subplots_adjust(left=0.07, right=0.98, bottom=0.14, top=0.84, wspace=0.22)
            path = fig_dir / f"{schedule}_{s.slug}.png"
            fig.savefig(path, dpi=80)
            plt.close(fig)
            written.append(path)

    for part in PARTS:
        fig, axes = plt.subplots(1, 3, figsize=(15, 3.8))
        settings = [s for s in results[SCHEDULES[0]] if s.part == part]
        colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
        for i, s in enumerate(settings):
            for schedule, style in zip(SCHEDULES, ("-", "--"), strict=True):
                h = results[schedule][s]
                axes[0].semilogy(
                    np.maximum(h.losses, floor),
                    style,
                    color=colors[i % len(colors)],
                    label=f"{s.label or part} {schedule}",
                )
        axes[0].set(xlabel="step", ylabel="L (log scale)", title="loss (solid: full batch)")
        axes[0].legend(fontsize=7)
        width = 0.8 / len(settings)
        for ax, schedule in zip(axes[1:], SCHEDULES, strict=True):
            for i, s in enumerate(settings):
                x = np.arange(5) + (i - (len(settings) - 1) / 2) * width
                ax.bar(x, results[schedule][s].final_W, width, label=s.label or part)
            ax.axhline(0.0, color="grey", lw=0.5)
            ax.set_xticks(np.arange(5), [f"w{j + 1}" for j in range(5)])
            ax.set(title=f"final W, {schedule}")
            ax.legend(fontsize=7)
        fig.suptitle(f"{PART_TITLES[part]}: overview", fontsize=10)
        fig.subplots_adjust(left=0.05, right=0.99, bottom=0.12, top=0.86, wspace=0.18)
        path = fig_dir / f"overview_{part}.png"
        fig.savefig(path, dpi=80)
        plt.close(fig)
        written.append(path)
    return written


# ---------------------------------------------------------------------------------------------
# Markdown report
# ---------------------------------------------------------------------------------------------


def fmt_w(w: np.ndarray) -> str:
    """W with 4 decimals, e.g. "[0.0000, 2.2000, ...]"."""
    # Round first, then add 0.0, so that -1e-15 prints as 0.0000 rather than -0.0000.
    return "[" + ", ".join(f"{x:.4f}" for x in clean(np.round(w, 4))) + "]"


def support_indices(w: np.ndarray) -> np.ndarray:
    """0-based indices of the entries that count as non-zero (|w| > 1e-8, as in ‖W‖₀)."""
    return np.flatnonzero(np.abs(w) > ZERO_TOL)


def support(w: np.ndarray) -> str:
    """1-based indices of the non-zero entries, e.g. "{w2, w5}"."""
    return "{" + ", ".join(f"w{j + 1}" for j in support_indices(w)) + "}"


def git_commit() -> str:
    """Short commit of the code that produced the report (+ a note if the lab files differ)."""
    from minitorch_compress.experiments.common import git_commit as commit_of

    return commit_of(LAB1_CODE, " with uncommitted changes to the Lab 1 code")


def last_change(h: History) -> float:
    """Largest change of any entry of W in the final step (0 or round-off means converged)."""
    return float(np.max(np.abs(h.weights[-1] - h.weights[-2])))


def part_table(results: dict[str, dict[Setting, History]], part: str) -> list[str]:
    """Markdown table of one part: both schedules, final W / L / ||W||_0 / last-step change."""
    lines = [
        "| schedule | setting | final W | final L | ‖W‖₀ | max\\|ΔW\\| last step |",
        "|---|---|---|---|---|---|",
    ]
    for schedule in SCHEDULES:
        for s, h in results[schedule].items():
            if s.part != part:
                continue
            lines.append(
                f"| {schedule} | {s.label or '-'} | {fmt_w(h.final_W)} | {h.final_loss:.4g} "
                f"| {h.nnz} | {last_change(h):.1e} |"
            )
    return lines


def part_heading(part: str) -> list[str]:
    """A part's heading and its overview figure, linked relative to the folder of lab1.md.

    results/REPORT.md lives in the same folder and includes lab1.md verbatim, so the link
    works from both pages.
    """
    return [
        f"## {PART_TITLES[part]}",
        "",
        f"![{PART_TITLES[part]}: overview]({FIGURE_DIR}/overview_{part}.png)",
        "",
    ]


def joined(values, fmt: str = "{}") -> str:
    """Comma-separated formatted values, for the commentary."""
    return ", ".join(fmt.format(v) for v in values)


# Diagnostics: the numbers the commentary quotes beyond the tables ----------------------------


def max_abs_diff(a: np.ndarray, b: np.ndarray) -> float:
    """Largest |difference| between two arrays of the same shape."""
    return float(np.max(np.abs(a - b)))


def final_gap(a: History, b: History) -> float:
    """Largest |difference| between the final W of two runs."""
    return max_abs_diff(a.final_W, b.final_W)


def support_fit(w: np.ndarray) -> np.ndarray:
    """The least-squares fit restricted to w's support: what an unbiased W there would be."""
    cols = support_indices(w)
    fit = np.zeros_like(w)
    if cols.size:
        fit[cols] = np.linalg.lstsq(X_LAB1[:, cols], Y_LAB1, rcond=None)[0]
    return fit


def refit_loss(w: np.ndarray) -> float:
    """Loss of the least-squares fit restricted to w's support: what an unbiased W would get."""
    return loss(support_fit(w), X_LAB1, Y_LAB1)


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


@dataclass(frozen=True)
class Lab1Runs:
    """The histories the commentary quotes, full batch (``*_fb``) and per sample (``*_ps``).

    The (d), (e) and (f) dicts map the assignment's parameter string ("0.2") to its History,
    in the assignment's order. Every run has ``steps`` steps.
    """

    steps: int
    b_fb: History
    b_ps: History
    c_fb: History
    c_ps: History
    d_fb: dict[str, History]
    d_ps: dict[str, History]
    e_fb: dict[str, History]
    e_ps: dict[str, History]
    f_fb: dict[str, History]
    f_ps: dict[str, History]

    @classmethod
    def from_results(cls, results: dict[str, dict[Setting, History]], steps: int) -> Lab1Runs:
        """Pick the runs out of `run_all`'s results by schedule, part and parameter."""
        by = {sched: {(s.part, s.key): h for s, h in results[sched].items()} for sched in SCHEDULES}
        fb, ps = by["full_batch"], by["per_sample"]
        return cls(
            steps=steps,
            b_fb=fb[("b", None)],
            b_ps=ps[("b", None)],
            c_fb=fb[("c", None)],
            c_ps=ps[("c", None)],
            d_fb={k: fb[("d", k)] for k in LAMBDAS_D},
            d_ps={k: ps[("d", k)] for k in LAMBDAS_D},
            e_fb={k: fb[("e", k)] for k in THRESHOLDS_E},
            e_ps={k: ps[("e", k)] for k in THRESHOLDS_E},
            f_fb={k: fb[("f", k)] for k in THRESHOLDS_F},
            f_ps={k: ps[("f", k)] for k in THRESHOLDS_F},
        )


@dataclass(frozen=True)
class Lab1Evidence:
    """Every number the commentary derives from the runs, beyond what the tables show.

    Attributes:
        w_star, l_star: the best 2-sparse fit (the ground truth W*) and its loss.
        w_minnorm: the minimum-norm exact fit.
        closed_form_err: largest gap between `gd_step` and the explicit sum along (b).
        c_supports: the support of (c)'s iterate after each step 1, 2, ...
        c_switch: the first step whose support differs from step 1's, or None.
        c_ps_supports: the support of the per-sample (c) iterate after each step.
        c_ps_first: the per-sample (c) run's first update before its projection: W after
            point 1's gradient step from W0 = 0.
        w_c_ls: the least-squares fit on the support where (c) ends.
        t_critical: the smallest trimmed threshold that keeps ``w_c_ls`` fixed.
        pair_gap: max |W difference| between subgradient lambda and prox t = mu*lambda, per pair.
        d_osc: largest change of L over (d)'s last 20 steps, per lambda.
        kkt_fb, kkt_ps: lasso optimality violation (lambda = t/mu) of (e)'s final W, per t.
        refits: L of the least-squares refit on each (e) support, per t.
        e_long: the (e) runs still moving after ``steps`` steps, rerun for 10x as many, by t.
        e_vs, d_vs: (parameter, per sample vs full batch with it, vs full batch with n times it).
        b_3mu: (b) in full batch with n times the step size.
        t_trace: the (e) threshold whose per-sample step is traced.
        w_trace: see `per_point_trace`, from the final per-sample W of ``t_trace``.
        probe: the steps at which (b)'s losses are compared.
    """

    w_star: np.ndarray
    l_star: float
    w_minnorm: np.ndarray
    closed_form_err: float
    c_supports: list[str]
    c_switch: int | None
    c_ps_supports: list[str]
    c_ps_first: np.ndarray
    w_c_ls: np.ndarray
    t_critical: float
    pair_gap: list[float]
    d_osc: list[float]
    kkt_fb: list[float]
    kkt_ps: list[float]
    refits: list[float]
    e_long: dict[str, History]
    e_vs: list[tuple[str, float, float]]
    d_vs: list[tuple[str, float, float]]
    b_3mu: History
    t_trace: str
    w_trace: list[np.ndarray]
    probe: list[int]


def gather_evidence(r: Lab1Runs) -> Lab1Evidence:
    """Compute the numbers of `Lab1Evidence`, including the few extra runs they need."""
    X, y, mu, n, steps = X_LAB1, Y_LAB1, MU_LAB1, X_LAB1.shape[0], r.steps
    w_star, l_star = best_k_sparse(X, y, 2)
    c_supports = [support(w) for w in r.c_fb.weights[1:]]
    t_trace = THRESHOLDS_E[1]

    def kkt(runs: dict[str, History]) -> list[float]:
        return [lasso_kkt_violation(runs[t].final_W, X, y, float(t) / mu) for t in THRESHOLDS_E]

    return Lab1Evidence(
        w_star=w_star,
        l_star=l_star,
        # From W0 = 0 every gradient lies in the row space of X: where plain GD must end.
        w_minnorm=np.linalg.pinv(X) @ y,
        closed_form_err=closed_form_error(r.b_fb),
        c_supports=c_supports,
        c_switch=next((i + 1 for i, s in enumerate(c_supports) if s != c_supports[0]), None),
        c_ps_supports=[support(w) for w in r.c_ps.weights[1:]],
        c_ps_first=gd_step(np.zeros(X.shape[1]), X[:1], y[:1], mu),
        w_c_ls=support_fit(r.c_fb.final_W),
        t_critical=trimmed_fixed_point_threshold(r.c_fb.final_W),
        # The assignment's hint: subgradient with lambda ~ prox with t = mu*lambda.
        pair_gap=[
            final_gap(r.d_fb[lam], r.e_fb[t])
            for lam, t in zip(LAMBDAS_D, THRESHOLDS_E, strict=True)
        ],
        d_osc=[float(np.max(np.abs(np.diff(h.losses[-20:])))) for h in r.d_fb.values()],
        kkt_fb=kkt(r.e_fb),
        kkt_ps=kkt(r.e_ps),
        refits=[refit_loss(h.final_W) for h in r.e_fb.values()],
        e_long={
            t: run("prox", 10 * steps, threshold=float(t))
            for t, h in r.e_fb.items()
            if last_change(h) > 1e-8
        },
        # Is per sample closer to full batch with the same penalty or with n times it?
        e_vs=[
            (
                t,
                final_gap(r.e_ps[t], r.e_fb[t]),
                final_gap(r.e_ps[t], run("prox", steps, threshold=n * float(t))),
            )
            for t in THRESHOLDS_E
        ],
        d_vs=[
            (
                lam,
                final_gap(r.d_ps[lam], r.d_fb[lam]),
                final_gap(r.d_ps[lam], run("subgradient", steps, lam=n * float(lam))),
            )
            for lam in LAMBDAS_D
        ],
        b_3mu=run("gd", steps, mu=n * mu),
        t_trace=t_trace,
        w_trace=per_point_trace(r.e_ps[t_trace].final_W, float(t_trace)),
        probe=[s for s in (5, 10, 20, 50) if s <= steps],
    )


# Sections of lab1.md, each a list of lines ----------------------------------------------------


def intro_lines(commit: str, steps: int) -> list[str]:
    """Title, provenance, the step-count warning if needed, and what the two schedules are."""
    L = [
        "# Lab 1 — sparse optimisation of the 3-point linear model",
        "",
        f"Produced by `python labs/lab1_sparse_linear.py` (code at commit `{commit}`). "
        f"{steps} steps, mu = {MU_LAB1}, W0 = 0, L(W) = sum_i (X_i W - y_i)^2 over the three "
        f"points of the assignment. Figures are in `{FIGURE_DIR}/` beside this file: "
        "`<schedule>_<part>[_<setting>].png` has two panels, log-scale L and every entry of W "
        "vs step; `overview_<part>.png` compares the settings and both schedules. The same "
        "numbers are in `lab1.json` beside it.",
        "",
    ]
    if steps != 200:
        L += [
            f"**Note:** this run used {steps} steps, not the assignment's 200; the commentary "
            "was written for 200 steps, so trust the tables over the prose.",
            "",
        ]
    L += [
        "The assignment's schedule is **full batch** (one update per step with the gradient of "
        "the whole sum); those rows are the answer. The **per-sample** rows apply the same "
        "update three times per step, once per data point with that point's gradient alone, "
        "as a published solution did by mistake; they are here only to explain why that "
        "solution's numbers differ. ‖W‖₀ counts |w| > 1e-8; the last column is the largest "
        "change of any entry in the final step (0 or round-off means converged).",
        "",
    ]
    return L


def reference_lines(ev: Lab1Evidence) -> list[str]:
    """The minimum-norm exact fit and the best 2-sparse fit W*, the points the parts aim at."""
    return [
        "## Reference points",
        "",
        f"* Minimum-norm exact fit (pinv): {fmt_w(ev.w_minnorm)}, L = 0. Three equations, five "
        "unknowns: there are infinitely many exact fits.",
        f"* Best 2-sparse fit, by exhaustive search over the 10 supports: {fmt_w(ev.w_star)}, "
        f"L = {ev.l_star:.1g}: the ground truth W*, support {support(ev.w_star)}. Note "
        f"‖W*‖₁ = {np.abs(ev.w_star).sum():.4g} while the min-norm fit already has "
        f"‖W‖₁ = {np.abs(ev.w_minnorm).sum():.4g}, so W* is not the smallest-L1 exact fit and "
        "an L1 penalty does not lead to it on this data.",
        "",
    ]


def part_a_lines(ev: Lab1Evidence) -> list[str]:
    """(a): where the closed-form step is tested, and how closely this run's (b) follows it."""
    return [
        "## (a) closed form",
        "",
        "`gd_step` is tested in `tests/test_sparse_linear.py` against "
        "W - 2 mu sum_i (X_i W - y_i) X_i^T for random W, X, y, mu, and the gradient against "
        "finite differences. Along this run's (b) trajectory the largest difference between "
        f"the code's step and the explicit sum was {ev.closed_form_err:.1e}.",
        "",
    ]


def part_section(
    results: dict[str, dict[Setting, History]], part: str, commentary: list[str]
) -> list[str]:
    """One part of (b)-(f): heading, overview figure, table, then its commentary."""
    return [*part_heading(part), *part_table(results, part), "", *commentary]


def part_b_commentary(r: Lab1Runs, ev: Lab1Evidence) -> list[str]:
    """(b): plain GD ends on the minimum-norm exact fit, in both schedules."""
    return [
        "Full batch converges linearly to the minimum-norm exact fit (max deviation "
        f"{max_abs_diff(r.b_fb.final_W, ev.w_minnorm):.1e}): from W0 = 0 every gradient lies "
        "in the row space of X, so GD can only reach the exact fit that lives there. L falls "
        f"to {r.b_fb.final_loss:.1e} (round-off). Nothing is sparse (‖W‖₀ = {r.b_fb.nnz}) and "
        "W* is not approached. The per-sample schedule reaches the same point (max difference "
        f"{final_gap(r.b_ps, r.b_fb):.1e}): the system is consistent, so all three points can "
        "be fitted at once and incremental updates share the fixed point.",
        "",
    ]


def part_c_commentary(r: Lab1Runs, ev: Lab1Evidence) -> list[str]:
    """(c): projected GD is unbiased on its support but gets stuck on the wrong support."""
    c_fb, c_switch = r.c_fb, ev.c_switch
    # Told only when the support does switch: a short run may stop before it does.
    switch_text = (
        f"The first {c_switch - 1} iterates have support {ev.c_supports[0]}, the true one, but "
        f"w1 starts negative ({c_fb.weights[1][0]:.2f} after step 1) and has to pass through 0 "
        f"on its way to W*'s +1; at step {c_switch} it is smaller than the GD step's w5 and the "
        f"projection switches to {ev.c_supports[c_switch - 1]}, never to come back. "
        if c_switch is not None
        else ""
    )
    return [
        f"Projected GD ends on support {support(c_fb.final_W)} with L = {c_fb.final_loss:.4g}, "
        f"exactly the least-squares fit on that support ({fmt_w(ev.w_c_ls)}): the projection "
        "adds no shrinkage. But it is a local answer. "
        + switch_text
        + f"It then converges to a fixed point with L = {c_fb.final_loss:.4g} instead of W*'s "
        "L = 0: projection onto the non-convex set {‖W‖₀ ≤ 2} has no global guarantee. "
        + per_sample_c_sentence(r, ev),
        "",
    ]


def tie_at_first_update(w: np.ndarray, k: int = 2) -> tuple[list[int], list[int], int] | None:
    """Whether the projection of `w` onto k entries had to break a tie, and how.

    Returns:
        None when the k largest magnitudes are unique; else (the entries strictly larger than
        the k-th magnitude, the entries tied at it, the tied entry kept), 0-based.
    """
    magnitude = np.abs(w)
    kth = np.sort(magnitude)[::-1][k - 1]
    above = [int(j) for j in np.flatnonzero(magnitude > kth)]
    tied = [int(j) for j in np.flatnonzero(magnitude == kth)]
    if len(above) + len(tied) <= k:
        return None
    return above, tied, tied[0]


def names(indices) -> str:
    """1-based entry names, e.g. "w1, w3 and w4"."""
    items = [f"w{j + 1}" for j in indices]
    return ", ".join(items[:-1]) + " and " + items[-1] if len(items) > 1 else items[0]


def per_sample_c_sentence(r: Lab1Runs, ev: Lab1Evidence) -> str:
    """Where the per-sample projected GD ends, and, when that is not where full batch ends,
    why: read from its own first update and its iterates."""
    ps, fb = support(r.c_ps.final_W), support(r.c_fb.final_W)
    if ps == fb:
        return (f"The per-sample run lands on the same support with L = "
                f"{r.c_ps.final_loss:.5g} (full batch {r.c_fb.final_loss:.5g}).")
    text = (f"The per-sample run lands elsewhere: on {ps}"
            + (", W*'s support," if ps == support(ev.w_star) else "")
            + f" with L = {r.c_ps.final_loss:.4g} (full batch {r.c_fb.final_loss:.4g}). ")
    tie = tie_at_first_update(ev.c_ps_first)
    if tie is not None:
        above, tied, kept = tie
        text += (f"Its first update is point 1's gradient alone, W = {fmt_w(ev.c_ps_first)}: "
                 f"{names(tied)} tie in magnitude behind {names(above)}, and the projection "
                 f"keeps the earliest, w{kept + 1} (ties go to the earlier index). ")
    w1 = [w[0] for w in r.c_ps.weights[1:]]
    text += (f"Its support is then {support_segments(ev.c_ps_supports)} (w1 goes from "
             f"{w1[0]:.2f} after step 1 to {w1[-1]:.2f}, through 0 as in full batch).")
    return text


def support_segments(supports: list[str]) -> str:
    """Runs of equal supports over steps 1, 2, ..., e.g. "{w1, w2} for steps 1-7, {w2, w3}
    at step 8 and {w1, w2} from step 9 on"."""
    runs: list[list] = []
    for step, value in enumerate(supports, 1):
        if runs and runs[-1][0] == value:
            runs[-1][2] = step
        else:
            runs.append([value, step, step])
    parts = []
    for i, (value, first, last) in enumerate(runs):
        if i == len(runs) - 1 and len(runs) > 1:
            parts.append(f"{value} from step {first} on")
        elif first == last:
            parts.append(f"{value} at step {first}")
        else:
            parts.append(f"{value} for steps {first}-{last}")
    return ", ".join(parts[:-1]) + " and " + parts[-1] if len(parts) > 1 else parts[0]


def part_d_commentary(r: Lab1Runs, ev: Lab1Evidence) -> list[str]:
    """(d): the subgradient method never lands on 0 and keeps oscillating; L1 bias grows."""
    d_fb = r.d_fb.values()
    return [
        "Subgradient descent never produces exact zeros (‖W‖₀ = "
        + joined(h.nnz for h in d_fb)
        + " for lambda = "
        + joined(LAMBDAS_D)
        + "): an entry near 0 gets pushed by mu*lambda*sign(w) across 0 and back at every "
        "step, so it hovers at a magnitude of order mu*lambda instead of landing on 0, and W "
        "and L keep oscillating (last-step change in the table; largest change of L over the "
        "last 20 steps: "
        + joined(ev.d_osc, "{:.2g}")
        + "). L grows with lambda ("
        + joined((h.final_loss for h in d_fb), "{:.4g}")
        + ") and w5 shrinks towards 0 ("
        + joined((h.final_W[4] for h in d_fb), "{:.4f}")
        + "), the L1 bias. w2 is not monotone ("
        + joined((h.final_W[1] for h in d_fb), "{:.4f}")
        + ") because at small lambda part of the fit is still carried by w1 and w3. The two "
        "largest entries are w2 and w5 for every lambda, as in (e), not W*'s w1 and w2.",
        "",
    ]


def part_e_commentary(r: Lab1Runs, ev: Lab1Evidence) -> list[str]:
    """(e): the prox gives exact zeros at the price of bias, and solves the lasso."""
    e_fb, t_last = r.e_fb, THRESHOLDS_E[-1]
    long_text = "".join(
        f" With t = {t} the run has not converged after {r.steps} steps: the fit on its "
        "support has a flat direction (more unknowns than equations), along which only the "
        f"small penalty moves W; run for {10 * r.steps} steps it reaches "
        f"{fmt_w(h.final_W)}, L = {h.final_loss:.4g}, ‖W‖₀ = {h.nnz}."
        for t, h in ev.e_long.items()
    )
    return [
        "Proximal gradient produces exact zeros: ‖W‖₀ = "
        + joined(h.nnz for h in e_fb.values())
        + " for t = "
        + joined(THRESHOLDS_E)
        + "."
        + long_text
        + " The price is bias: L = "
        + joined((h.final_loss for h in e_fb.values()), "{:.4g}")
        + ", whereas an unbiased least-squares refit on the same supports would reach L = "
        + joined("0 (round-off)" if x < 1e-20 else f"{x:.4g}" for x in ev.refits)
        + f". With t = {t_last} the result is 2-sparse, "
        f"{fmt_w(e_fb[t_last].final_W)}, on support "
        f"{support(e_fb[t_last].final_W)}, with both weights shrunk relative to the "
        f"unbiased {ev.w_c_ls[1]:.4f} and {ev.w_c_ls[4]:.4f}; and, as expected from the L1 "
        "norms above, not on W*'s support. The assignment's hint holds: subgradient with "
        "lambda and prox with t = mu*lambda end close together (max |difference| "
        + joined(ev.pair_gap, "{:.3f}")
        + " for the four pairs), differing mostly in the entries near 0, which only the prox "
        "sets exactly to 0. Largest violation of the lasso optimality conditions for "
        "lambda = t/mu at the final full-batch W: "
        + joined(ev.kkt_fb, "{:.1e}")
        + " (the converged runs are lasso minimisers).",
        "",
    ]


def boundary_sentence(t: float, t_critical: float, h: History, steps: int) -> str:
    """Where threshold `t` sits against the fixed-point threshold, and what follows for the
    smallest dropped entry (w3) of its run."""
    w3 = abs(h.final_W[2])
    if np.isclose(t, t_critical, rtol=1e-9, atol=0.0):
        return (f"t = {t:g} sits on that boundary, so there w3 decays geometrically (|w3| = "
                f"{w3:.0e} after {steps} steps) instead of being snapped to 0.")
    side = "above" if t > t_critical else "below"
    return (f"t = {t:g} is {side} that boundary ({t_critical:.4g}); |w3| = {w3:.0e} after "
            f"{steps} steps.")


def part_f_commentary(r: Lab1Runs, ev: Lab1Evidence) -> list[str]:
    """(f): trimmed L1 reaches the projected-GD point, sparse and unbiased, once t is large."""
    c_fb, f_fb = r.c_fb, r.f_fb
    t_small, t_edge = THRESHOLDS_F[0], THRESHOLDS_F[1]
    return [
        "Trimmed L1 shrinks only the 3 smallest-magnitude entries, so the 2 largest are left "
        "unbiased. ‖W‖₀ = "
        + joined(h.nnz for h in f_fb.values())
        + " for t = "
        + joined(THRESHOLDS_F)
        + ". Once t is large enough to keep the small entries at 0 the result is the "
        f"projected-GD point {fmt_w(c_fb.final_W)} (L = {c_fb.final_loss:.4g}): sparse like "
        "the projection and unbiased, unlike the prox (w2 = "
        f"{f_fb[THRESHOLDS_F[-1]].final_W[1]:.4f} here, "
        f"{r.e_fb[THRESHOLDS_E[-1]].final_W[1]:.4f} "
        f"for prox with t = {THRESHOLDS_E[-1]}). That point is a fixed point of the trimmed "
        "step exactly when t >= mu * max |dL/dw_j| over the dropped entries = "
        f"{ev.t_critical:.4g}; "
        + boundary_sentence(float(t_edge), ev.t_critical, f_fb[t_edge], r.steps)
        + f" With t = {t_small} the third entry survives "
        f"({support(f_fb[t_small].final_W)}, L = "
        f"{f_fb[t_small].final_loss:.4g}). "
        + (f"Like the projection it keeps {support(c_fb.final_W)}"
           if support(f_fb[THRESHOLDS_F[-1]].final_W) == support(c_fb.final_W)
           else f"Unlike the projection it ends on {support(f_fb[THRESHOLDS_F[-1]].final_W)}")
        + (" and misses W*." if support(f_fb[THRESHOLDS_F[-1]].final_W) != support(ev.w_star)
           else " and finds W*'s support."),
        "",
    ]


def method_summary_lines(r: Lab1Runs, ev: Lab1Evidence) -> list[str]:
    """The summary table of the five methods (the table states the methods' known properties;
    the sentence under it is computed from the full-batch runs)."""
    return [
        "## Summary: convergence, sparsity, bias (full batch)",
        "",
        "| method | exact zeros | converges | bias on the kept weights |",
        "|---|---|---|---|",
        "| (b) GD | no | yes, to the min-norm exact fit | none, but dense |",
        "| (c) projection | yes, at most k | yes, to a local fixed point | none on its support |",
        "| (d) L1 subgradient | no | no, oscillates at ~ mu*lambda | shrinks (L1) |",
        "| (e) L1 prox | yes | yes, to the lasso minimiser (slowly for small t) | shrinks (L1) |",
        "| (f) trimmed L1 prox | yes | yes | none on the kept top 2 |",
        "",
        sparse_methods_sentence(r, ev),
        "",
    ]


def sparse_methods_sentence(r: Lab1Runs, ev: Lab1Evidence) -> str:
    """Which full-batch sparse runns find W*'s support, and where the others end."""
    runs = {"(c)": r.c_fb, **{f"(e) t = {t}": h for t, h in r.e_fb.items()},
            **{f"(f) t = {t}": h for t, h in r.f_fb.items()}}
    target = support(ev.w_star)
    found = [label for label, h in runs.items() if support(h.final_W) == target]
    ends = sorted({support(h.final_W) for h in runs.values()}, key=lambda x: (len(x), x))
    if not found:
        return (f"None of the sparse methods finds W*'s support {target} from W0 = 0 on this "
                f"data (full batch); they end on {' or '.join(ends)}.")
    return (f"Of the full-batch sparse runs, {', '.join(found)} find W*'s support {target}; "
            f"the runs end on {' or '.join(ends)}.")


def data_term_item(r: Lab1Runs, ev: Lab1Evidence) -> str:
    """Item 1 of "Full batch vs per sample": per-sample steps do not triple the step size."""
    probe = ev.probe
    return (
        "1. **The data term is not tripled.** The three per-point gradients add up to the full "
        "gradient, so to first order one per-sample step moves W like one full-batch step with "
        "the same mu, not 3 mu. In (b) it is somewhat faster per step because each update "
        "uses the freshest W (L after "
        + joined(probe)
        + " steps: per-sample "
        + joined((r.b_ps.losses[s] for s in probe), "{:.2g}")
        + "; full batch "
        + joined((r.b_fb.losses[s] for s in probe), "{:.2g}")
        + "; full batch with 3 mu "
        + joined((ev.b_3mu.losses[s] for s in probe), "{:.2g}")
        + "), nothing like a tripled step size."
    )


def penalty_item(r: Lab1Runs, ev: Lab1Evidence) -> str:
    """Item 2 of "Full batch vs per sample": the penalty acts once per point, so ~3x per step."""
    return (
        "2. **The regulariser is applied three times per step.** The subgradient term "
        "mu*lambda*sign(W), the soft-threshold and the trimmed soft-threshold act once per "
        "point, so per step the penalty is about n = 3 times stronger relative to the data "
        "term. Per-sample results are more shrunk, with higher L, and sit much closer to "
        "full-batch runs with 3x the penalty than with the same penalty. Max |W difference| "
        "of per-sample prox with t against full-batch prox with t / with 3t: "
        + "; ".join(f"t = {t}: {a:.3f} / {b:.3f}" for t, a, b in ev.e_vs)
        + ". Subgradient with lambda against full batch with lambda / 3 lambda: "
        + "; ".join(f"lambda = {k}: {a:.3f} / {b:.3f}" for k, a, b in ev.d_vs)
        + ". The match is only approximate: the per-sample map cycles through three different "
        "updates, and its end-of-step fixed point minimises no single regularised objective. "
        f"Inside one step of the converged per-sample prox run with t = {ev.t_trace}, W goes "
        + " -> ".join(fmt_w(w) for w in ev.w_trace)
        + ": the earlier updates zero the small entries and the last point's update pushes "
        "them out again, so the recorded W (end of step) keeps small non-zeros that "
        "full-batch prox sets exactly to 0 (‖W‖₀ per-sample "
        + joined(h.nnz for h in r.e_ps.values())
        + ", full batch "
        + joined(h.nnz for h in r.e_fb.values())
        + "), and it violates the lasso optimality conditions for lambda = t/mu by "
        + joined(ev.kkt_ps, "{:.2g}")
        + "."
    )


def unpenalised_item(r: Lab1Runs) -> str:
    """What the schedules do where no penalty acts: projection, large-threshold trimmed L1."""
    t_large = THRESHOLDS_F[-1]
    pairs = [("(c)", r.c_fb, r.c_ps), (f"(f) t = {t_large}", r.f_fb[t_large], r.f_ps[t_large])]
    same = [support(fb.final_W) == support(ps.final_W) for _, fb, ps in pairs]
    tail = " For the unregularised, consistent problem (b) both reach the same solution."
    if all(same):
        return ("Projection and large-threshold trimmed L1 add no penalty, so the two schedules "
                f"agree up to the small offset of the cycle (L = {r.c_ps.final_loss:.5g} vs "
                f"{r.c_fb.final_loss:.5g} in (c))." + tail)
    return ("Projection and large-threshold trimmed L1 add no penalty, but the set they project "
            "onto is not convex, so where they end depends on the path, and the two schedules "
            "take different paths: "
            + "; ".join(f"{label}: full batch {support(fb.final_W)} (L = {fb.final_loss:.4g}), "
                        f"per sample {support(ps.final_W)} (L = {ps.final_loss:.4g})"
                        for label, fb, ps in pairs)
            + ". The per-sample path begins with a tie at its first update (see (c)), so where "
            "it ends depends on the order of the points and on how ties are broken: it is not "
            "a better method, and the full-batch rows remain the answer." + tail)


def schedules_lines(r: Lab1Runs, ev: Lab1Evidence) -> list[str]:
    """The "Full batch vs per sample" section: why per-sample numbers differ, which to use."""
    return [
        "## Full batch vs per sample",
        "",
        "The per-sample schedule performs three updates per step, each with one point's "
        "gradient at the current iterate and each followed by the method's own sparsifying "
        "operation. Two things change; the numbers show which.",
        "",
        data_term_item(r, ev),
        penalty_item(r, ev),
        "",
        unpenalised_item(r),
        "",
        "The assignment defines L as a sum over the three points, full-batch updates and the "
        "prox threshold mu*lambda; only the full-batch schedule solves that problem (its "
        "converged (e) results satisfy the lasso conditions, the per-sample ones do not). "
        "The full-batch rows are the ones to report and to compare with.",
        "",
    ]


def write_markdown(
    results: dict[str, dict[Setting, History]], path: Path, steps: int, commit: str
) -> None:
    """Write results/lab1.md: the tables and a commentary whose numbers come from this run."""
    r = Lab1Runs.from_results(results, steps)
    ev = gather_evidence(r)
    lines = [
        *intro_lines(commit, steps),
        *reference_lines(ev),
        *part_a_lines(ev),
        *part_section(results, "b", part_b_commentary(r, ev)),
        *part_section(results, "c", part_c_commentary(r, ev)),
        *part_section(results, "d", part_d_commentary(r, ev)),
        *part_section(results, "e", part_e_commentary(r, ev)),
        *part_section(results, "f", part_f_commentary(r, ev)),
        *method_summary_lines(r, ev),
        *schedules_lines(r, ev),
    ]
    path.write_text("\n".join(lines), encoding="utf-8")


# ---------------------------------------------------------------------------------------------
# Everything together
# ---------------------------------------------------------------------------------------------


def write_outputs(
    results: dict[str, dict[Setting, History]], out_dir: Path, steps: int
) -> dict[str, Path | list[Path]]:
    """Write lab1.json, lab1.md and the figures in lab1/ under ``out_dir``.

    Returns:
        {"json": path, "markdown": path, "figures": [paths]}.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path, md_path = out_dir / "lab1.json", out_dir / "lab1.md"
    json_path.write_text(json.dumps(results_json(results), indent=2) + "\n")
    write_markdown(results, md_path, steps, git_commit())
    figures = write_figures(results, out_dir / FIGURE_DIR)
    return {"json": json_path, "markdown": md_path, "figures": figures}


def summary(results: dict[str, dict[Setting, History]]) -> str:
    """The final W, L and ||W||_0 of every case, one line each, grouped by schedule."""
    lines = []
    for schedule in SCHEDULES:
        lines.append(f"[{schedule}]")
        for s, h in results[schedule].items():
            lines.append(
                f"  ({s.part}) {s.label:14s} W = {fmt_w(h.final_W)}  L = {h.final_loss:.4g}  "
                f"nnz = {count_nonzero(h.final_W)}"
            )
    return "\n".join(lines)
