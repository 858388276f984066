"""``lab1.md`` from ``lab1.json``, and Lab 1's figures from the run's histories.

`render_lab1(document)` is a pure function of the JSON that `experiments.lab1.payload` wrote
(plus its ``_meta``): one table per part, the five overview figures, and a commentary in
which every sentence that compares or concludes is chosen by a value of the JSON (which
support a run ends on, whether a threshold sits at the computed fixed-point boundary,
whether L grows with lambda, ...), never written as a constant. `write_report(out_dir)`
re-renders ``lab1.md`` from the ``lab1.json`` beside it (``report --all``).

The figures show the whole trajectory of every run (201 iterates of 28 runs), which the JSON
does not keep; they are drawn by `write_figures` from the histories when the lab runs.
matplotlib is imported inside it only, so importing this module stays cheap.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from minitorch_compress.experiments.lab1 import (
    LAMBDAS_D,
    PART_TITLES,
    PARTS,
    THRESHOLDS_E,
    THRESHOLDS_F,
    Setting,
    clean,
    support_indices,
)
from minitorch_compress.linear import SCHEDULES, History
from minitorch_compress.reports.format import listing, pyplot, table, write_markdown
from minitorch_compress.results import read_json

FIGURE_DIR = "lab1"  # the figures' folder, next to lab1.md (so links are relative to it)
CONVERGED = 1e-8  # a last-step change below this counts as converged
ROUND_OFF = 1e-20  # a loss below this is 0 up to round-off
KKT_OK = 1e-6  # a lasso optimality violation below this counts as satisfied

# ---------------------------------------------------------------------------------------------
# Figures (from the histories, when the lab runs)
# ---------------------------------------------------------------------------------------------


def write_figures(results: dict[str, dict[Setting, History]], fig_dir: Path) -> list[Path]:
    """One two-panel figure per case and one overview per part.

    Case figures: left, L vs step on a log scale; right, every entry of W vs step.
    Overview figures: L vs step for every setting (full-batch solid, per-sample dashed) and
    the final W of every setting as grouped bars, one panel per schedule.

    Returns:
        The paths written.
    """
    plt = pyplot()
    fig_dir.mkdir(parents=True, exist_ok=True)
    floor = np.finfo(np.float64).tiny  # an exact 0 loss cannot be drawn on a log axis
    written = []

    def save(fig: Any, name: str, **margins: float) -> None:
        # Fixed margins: tight_layout would triple the plotting time of this lab.
        fig.subplots_adjust(**margins)
        fig.savefig(fig_dir / name, dpi=80)
        plt.close(fig)
        written.append(fig_dir / name)

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
            save(fig, f"{schedule}_{s.slug}.png", left=0.07, right=0.98, bottom=0.14, top=0.84,
                 wspace=0.22)

    for part in PARTS:
        fig, axes = plt.subplots(1, 3, figsize=(15, 3.8))
        settings = [s for s in results[SCHEDULES[0]] if s.part == part]
        colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
        for i, s in enumerate(settings):
            for schedule, style in zip(SCHEDULES, ("-", "--"), strict=True):
                h = results[schedule][s]
                axes[0].semilogy(np.maximum(h.losses, floor), style,
                                 color=colors[i % len(colors)],
                                 label=f"{s.label or part} {schedule}")
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
        save(fig, f"overview_{part}.png", left=0.05, right=0.99, bottom=0.12, top=0.86,
             wspace=0.18)
    return written


# ---------------------------------------------------------------------------------------------
# Formatting
# ---------------------------------------------------------------------------------------------


def fmt_w(w) -> str:
    """W with 4 decimals, e.g. "[0.0000, 2.2000, ...]"."""
    # Round first, then add 0.0, so that -1e-15 prints as 0.0000 rather than -0.0000.
    return "[" + ", ".join(f"{x:.4f}" for x in clean(np.round(np.asarray(w, float), 4))) + "]"


def support_of(indices) -> str:
    """0-based indices as the 1-based support, e.g. [1, 4] -> "{w2, w5}"."""
    return "{" + ", ".join(f"w{j + 1}" for j in indices) + "}"


def support(w) -> str:
    """The support of W, e.g. "{w2, w5}"."""
    return support_of(support_indices(np.asarray(w, float)))


def names(indices) -> str:
    """1-based entry names, e.g. "w1, w3 and w4"."""
    return listing([f"w{j + 1}" for j in indices])


def joined(values, fmt: str = "{}") -> str:
    """Comma-separated formatted values, for the commentary."""
    return ", ".join(fmt.format(v) for v in values)


def gap(a, b) -> float:
    """Largest |difference| between two vectors."""
    return float(np.max(np.abs(np.asarray(a, float) - np.asarray(b, float))))


def zero_or(x: float) -> str:
    """A loss as "0" when it is 0 up to round-off, else with 4 significant digits."""
    return "0" if x < ROUND_OFF else f"{x:.4g}"


def monotone(values, increasing: bool) -> bool:
    """Whether `values` rise (or fall) strictly from each to the next."""
    steps = np.diff(np.asarray(values, float))
    return bool(np.all(steps > 0) if increasing else np.all(steps < 0))


def top_two(w) -> list[int]:
    """0-based indices of the two largest-magnitude entries, in index order."""
    return sorted(int(j) for j in np.argsort(-np.abs(np.asarray(w, float)), kind="stable")[:2])


class Lab1Results:
    """Read access to ``lab1.json``: cases by schedule, part and parameter, and the evidence.

    ``fb("e", "0.04")`` is the full-batch case of (e) with t = 0.04, ``ps("c")`` the
    per-sample (c); each is the JSON CASE {"W", "loss", "nnz", "last_change"}.
    """

    def __init__(self, document: dict[str, Any]) -> None:
        self.doc = document
        self.ev = document["evidence"]
        self.steps = int(document["steps"])

    def case(self, schedule: str, part: str, key: str | None = None) -> dict[str, Any]:
        entry = self.doc[schedule][part]
        return entry if key is None else entry[key]

    def fb(self, part: str, key: str | None = None) -> dict[str, Any]:
        return self.case("full_batch", part, key)

    def ps(self, part: str, key: str | None = None) -> dict[str, Any]:
        return self.case("per_sample", part, key)

    def settings(self, part: str) -> tuple[str, ...]:
        return {"d": LAMBDAS_D, "e": THRESHOLDS_E, "f": THRESHOLDS_F}[part]

    def cases(self, part: str) -> list[tuple[str, str | None, dict[str, Any]]]:
        """(schedule, setting e.g. "t = 0.04" or None, case) of every run of `part`."""
        label = {"d": "lambda = {}", "e": "t = {}", "f": "t = {}"}.get(part)
        return [(schedule, label and label.format(key), self.case(schedule, part, key))
                for schedule in SCHEDULES for key in (self.settings(part) if label else (None,))]


# ---------------------------------------------------------------------------------------------
# Sections of lab1.md, each a list of lines
# ---------------------------------------------------------------------------------------------


def intro_lines(r: Lab1Results, meta: dict[str, Any]) -> list[str]:
    """Title, provenance, and what the two schedules are."""
    return [
        "# Lab 1 — sparse optimisation of the 3-point linear model",
        "",
        f"Produced by `{meta.get('command', 'python labs/lab1_sparse_linear.py')}` (code at "
        f"commit `{meta.get('commit', '?')}`). {r.steps} steps, mu = {r.ev['mu']}, W0 = 0, "
        "L(W) = sum_i (X_i W - y_i)^2 over the three points of the assignment. Figures are "
        f"in `{FIGURE_DIR}/` beside this file: `<schedule>_<part>[_<setting>].png` has two "
        "panels, log-scale L and every entry of W vs step; `overview_<part>.png` compares the "
        "settings and both schedules. The same numbers are in `lab1.json` beside it.",
        "",
        "The assignment's schedule is **full batch** (one update per step with the gradient of "
        "the whole sum); those rows are the answer. The **per-sample** rows apply the same "
        "update three times per step, once per data point with that point's gradient alone, "
        "as a published solution did by mistake; they are here only to explain why that "
        "solution's numbers differ. ‖W‖₀ counts |w| > 1e-8; the last column is the largest "
        "change of any entry in the final step (0 or round-off means converged).",
        "",
    ]


def reference_lines(r: Lab1Results) -> list[str]:
    """The minimum-norm exact fit and the best 2-sparse fit W*, the points the parts aim at."""
    w_star, w_min = np.asarray(r.ev["w_star"]), np.asarray(r.ev["w_minnorm"])
    l1_star, l1_min = float(np.abs(w_star).sum()), float(np.abs(w_min).sum())
    reading = ("so W* is not the smallest-L1 exact fit and an L1 penalty does not lead to it "
               "on this data" if l1_star > l1_min else
               "so W* is at least as small in L1 as the min-norm fit, and an L1 penalty can "
               "lead towards it")
    return [
        "## Reference points",
        "",
        f"* Minimum-norm exact fit (pinv): {fmt_w(w_min)}, L = 0. Three equations, five "
        "unknowns: there are infinitely many exact fits.",
        f"* Best 2-sparse fit, by exhaustive search over the 10 supports: {fmt_w(w_star)}, "
        f"L = {r.ev['l_star']:.1g}: the ground truth W*, support {support(w_star)}. Note "
        f"‖W*‖₁ = {l1_star:.4g} while the min-norm fit has ‖W‖₁ = {l1_min:.4g}, {reading}.",
        "",
    ]


def part_a_lines(r: Lab1Results) -> list[str]:
    """(a): where the closed-form step is tested, and how closely this run's (b) follows it."""
    return [
        "## (a) closed form",
        "",
        "`gd_step` is tested in `tests/test_sparse_linear.py` against "
        "W - 2 mu sum_i (X_i W - y_i) X_i^T for random W, X, y, mu, and the gradient against "
        "finite differences. Along this run's (b) trajectory the largest difference between "
        f"the code's step and the explicit sum was {r.ev['closed_form_err']:.1e}.",
        "",
    ]


def part_table(r: Lab1Results, part: str) -> list[str]:
    """Markdown table of one part: both schedules, final W / L / ||W||_0 / last-step change."""
    return table(["schedule", "setting", "final W", "final L", "‖W‖₀",
                  "max\\|ΔW\\| last step"], "llllll",
                 ([schedule, setting or "-", fmt_w(c["W"]), f"{c['loss']:.4g}", c["nnz"],
                   f"{c['last_change']:.1e}"] for schedule, setting, c in r.cases(part)))


def part_section(r: Lab1Results, part: str, commentary: list[str]) -> list[str]:
    """One part of (b)-(f): heading, overview figure (linked relative to lab1.md's folder,
    which REPORT.md shares), table, then its commentary."""
    return [f"## {PART_TITLES[part]}", "",
            f"![{PART_TITLES[part]}: overview]({FIGURE_DIR}/overview_{part}.png)", "",
            *part_table(r, part), "", *commentary]


def part_b_commentary(r: Lab1Results) -> list[str]:
    """(b): plain GD ends on the minimum-norm exact fit, in both schedules."""
    b, b_ps = r.fb("b"), r.ps("b")
    to_minnorm = gap(b["W"], r.ev["w_minnorm"])
    where = ("converges to the minimum-norm exact fit" if to_minnorm < CONVERGED else
             "heads for the minimum-norm exact fit")
    floor = " (round-off)" if b["loss"] < ROUND_OFF else ""
    sparse = ("Nothing is sparse" if b["nnz"] == len(b["W"]) else
              f"Only {len(b['W']) - b['nnz']} entries are 0")
    star = (" and W* is not approached" if gap(b["W"], r.ev["w_star"]) > 0.1 else
            " and it lies close to W*")
    same = gap(b_ps["W"], b["W"])
    schedules = ("The per-sample schedule reaches the same point (max difference "
                 f"{same:.1e}): the system is consistent, so all three points can be fitted "
                 "at once and incremental updates share the fixed point." if same < 1e-6 else
                 f"The per-sample schedule ends elsewhere (max difference {same:.2g}).")
    return [
        f"Full batch {where} (max deviation {to_minnorm:.1e}): from W0 = 0 every gradient "
        "lies in the row space of X, so GD can only reach the exact fit that lives there. L "
        f"falls to {b['loss']:.1e}{floor}. {sparse} (‖W‖₀ = {b['nnz']}){star}. {schedules}",
        "",
    ]


def first_switch(supports: list[list[int]]) -> int | None:
    """The first step (1-based) whose support differs from step 1's, or None."""
    return next((i + 1 for i, s in enumerate(supports) if s != supports[0]), None)


def part_c_commentary(r: Lab1Results) -> list[str]:
    """(c): projected GD is unbiased on its support; where it ends and why."""
    c, ev = r.fb("c"), r.ev
    star = support(ev["w_star"])
    switch = first_switch(ev["c_supports"])
    ls_gap = gap(c["W"], ev["c_ls"])
    fit = ("exactly the least-squares fit on that support" if ls_gap < 1e-9 else
           f"within {ls_gap:.1e} of the least-squares fit on that support")
    text = (f"Projected GD ends on support {support(c['W'])} with L = {c['loss']:.4g}, {fit} "
            f"({fmt_w(ev['c_ls'])}): the projection adds no shrinkage. ")
    if support(c["W"]) != star:
        text += "But it is a local answer. "
    # Told only when the support does switch: a short run may stop before it does.
    if switch is not None:
        first = support_of(ev["c_supports"][0])
        w1 = ev["c_step1"][0]
        text += (f"The first {switch - 1} iterates have support {first}"
                 + (", the true one" if first == star else "")
                 + f"; w1 is {w1:.2f} after step 1"
                 + (" and has to pass through 0 on its way to W*'s "
                    f"{ev['w_star'][0]:+.0f}" if w1 * ev["w_star"][0] < 0 else "")
                 + f"; at step {switch} the projection switches to "
                 f"{support_of(ev['c_supports'][switch - 1])}"
                 + (", never to come back. " if all(
                     s == ev["c_supports"][switch - 1] for s in ev["c_supports"][switch - 1:])
                    else ". "))
    converged = c["last_change"] < CONVERGED
    if support(c["W"]) != star:
        text += ((f"It then converges to a fixed point with L = {c['loss']:.4g}" if converged
                  else f"After {r.steps} steps it is still moving, at L = {c['loss']:.4g}")
                 + f" instead of W*'s L = {zero_or(ev['l_star'])}: projection onto the non-convex "
                 "set {‖W‖₀ ≤ 2} has no global guarantee. ")
    else:
        text += "It finds W*'s support. "
    return [text + per_sample_c_sentence(r), ""]


def tie_at_first_update(w, k: int = 2) -> tuple[list[int], list[int], int] | None:
    """Whether the projection of `w` onto k entries had to break a tie, and how.

    Returns:
        None when the k largest magnitudes are unique; else (the entries strictly larger than
        the k-th magnitude, the entries tied at it, the tied entry kept), 0-based.
    """
    magnitude = np.abs(np.asarray(w, float))
    kth = np.sort(magnitude)[::-1][k - 1]
    above = [int(j) for j in np.flatnonzero(magnitude > kth)]
    tied = [int(j) for j in np.flatnonzero(magnitude == kth)]
    if len(above) + len(tied) <= k:
        return None
    return above, tied, tied[0]


def per_sample_c_sentence(r: Lab1Results) -> str:
    """Where the per-sample projected GD ends, and, when that is not where full batch ends,
    why: read from its own first update and its iterates."""
    c_ps, c_fb, ev = r.ps("c"), r.fb("c"), r.ev
    ps, fb = support(c_ps["W"]), support(c_fb["W"])
    if ps == fb:
        return (f"The per-sample run lands on the same support with L = "
                f"{c_ps['loss']:.5g} (full batch {c_fb['loss']:.5g}).")
    text = (f"The per-sample run lands elsewhere: on {ps}"
            + (", W*'s support," if ps == support(ev["w_star"]) else "")
            + f" with L = {c_ps['loss']:.4g} (full batch {c_fb['loss']:.4g}). ")
    tie = tie_at_first_update(ev["c_ps_first"])
    if tie is not None:
        above, tied, kept = tie
        text += (f"Its first update is point 1's gradient alone, W = {fmt_w(ev['c_ps_first'])}: "
                 f"{names(tied)} tie in magnitude behind {names(above)}, and the projection "
                 f"keeps the earliest, w{kept + 1} (ties go to the earlier index). ")
    w1_first, w1_last = ev["c_ps_step1"][0], c_ps["W"][0]
    through_zero = w1_first * w1_last < 0
    text += (f"Its support is then "
             f"{support_segments([support_of(s) for s in ev['c_ps_supports']])} (w1 goes "
             f"from {w1_first:.2f} after step 1 to {w1_last:.2f}"
             + (", through 0" if through_zero else "") + ").")
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


def part_d_commentary(r: Lab1Results) -> list[str]:
    """(d): the subgradient method never lands on 0 and keeps oscillating; L1 bias grows."""
    d = [r.fb("d", lam) for lam in LAMBDAS_D]
    nnz = [c["nnz"] for c in d]
    zeros = ("Subgradient descent never produces exact zeros" if min(nnz) == len(d[0]["W"])
             else "Subgradient descent produces exact zeros only by accident")
    losses = [c["loss"] for c in d]
    tops = {tuple(top_two(c["W"])) for c in d}
    text = (f"{zeros} (‖W‖₀ = {joined(nnz)} for lambda = {joined(LAMBDAS_D)}): an entry near 0 "
            "gets pushed by mu*lambda*sign(w) across 0 and back at every step, so it hovers at "
            "a magnitude of order mu*lambda instead of landing on 0, and W and L keep "
            "oscillating (last-step change in the table; largest change of L over the last 20 "
            f"steps: {joined(r.ev['d_osc'], '{:.2g}')}). L "
            + ("grows with lambda" if monotone(losses, True) else "is not monotone in lambda")
            + f" ({joined(losses, '{:.4g}')}).")
    if len(tops) == 1:
        top = list(tops.pop())
        e_last = support(r.fb("e", THRESHOLDS_E[-1])["W"])
        star = support(r.ev["w_star"])
        text += (f" The two largest entries are {names(top)} for every lambda"
                 + (", as in (e)" if support_of(top) == e_last else "")
                 + (", W*'s support." if support_of(top) == star else f", not W*'s {star}."))
        for j in top:
            values = [abs(c["W"][j]) for c in d]
            shrinks = monotone(values, False)
            trend = "shrinks steadily as lambda grows" if shrinks else "is not monotone in lambda"
            text += (f" |w{j + 1}| {trend} ({joined(values, '{:.4f}')})"
                     + (", the L1 bias." if shrinks else "."))
    else:
        text += (" The two largest entries change with lambda: "
                 + "; ".join(f"lambda = {lam}: {names(top_two(c['W']))}"
                             for lam, c in zip(LAMBDAS_D, d, strict=True)) + ".")
    return [text, ""]


def part_e_commentary(r: Lab1Results) -> list[str]:
    """(e): the prox gives exact zeros at the price of bias, and solves the lasso."""
    e = {t: r.fb("e", t) for t in THRESHOLDS_E}
    ev, t_last = r.ev, THRESHOLDS_E[-1]
    nnz = [c["nnz"] for c in e.values()]
    zeros = ("Proximal gradient produces exact zeros" if min(nnz) < len(e[t_last]["W"]) else
             "Proximal gradient produces no exact zeros here")
    long_text = "".join(
        f" With t = {t} the run has not converged after {r.steps} steps: the fit on its "
        "support has a flat direction (more unknowns than equations), along which only the "
        f"small penalty moves W; run for {10 * r.steps} steps it reaches "
        f"{fmt_w(c['W'])}, L = {c['loss']:.4g}, ‖W‖₀ = {c['nnz']}."
        for t, c in ev["e_long"].items())
    last, ls = np.asarray(e[t_last]["W"]), np.asarray(ev["e_last_ls"])
    kept = support_indices(last)
    shrunk = all(abs(last[j]) < abs(ls[j]) for j in kept)
    on_star = support(last) == support(ev["w_star"])
    l1_star = float(np.abs(ev["w_star"]).sum()) > float(np.abs(ev["w_minnorm"]).sum())
    star_text = ("and on W*'s support" if on_star else
                 "and, as expected from the L1 norms above, not on W*'s support" if l1_star
                 else "and not on W*'s support")
    converged = [t for t, c in e.items() if c["last_change"] < CONVERGED]
    kkt_ok = bool(converged) and all(ev["kkt_fb"][THRESHOLDS_E.index(t)] < KKT_OK
                                     for t in converged)
    return [
        f"{zeros}: ‖W‖₀ = {joined(nnz)} for t = {joined(THRESHOLDS_E)}.{long_text} The price "
        f"is bias: L = {joined((c['loss'] for c in e.values()), '{:.4g}')}, whereas an unbiased "
        "least-squares refit on the same supports would reach L = "
        + joined(("0 (round-off)" if x < ROUND_OFF else f"{x:.4g}") for x in ev["refits"])
        + f". With t = {t_last} the result is {len(kept)}-sparse, {fmt_w(last)}, on support "
        f"{support(last)}, with "
        + ("every kept weight shrunk relative to" if shrunk else "kept weights compared with")
        + f" the unbiased least-squares fit there ({joined((ls[j] for j in kept), '{:.4f}')}); "
        f"{star_text}. The assignment's hint "
        + ("holds" if max(ev["pair_gap"]) < 0.1 else "holds only roughly")
        + ": subgradient with lambda and prox with t = mu*lambda end close together (max "
        f"|difference| {joined(ev['pair_gap'], '{:.3f}')} for the four pairs), differing "
        "mostly in the entries near 0, which only the prox sets exactly to 0. Largest "
        "violation of the lasso optimality conditions for lambda = t/mu at the final "
        f"full-batch W: {joined(ev['kkt_fb'], '{:.1e}')} ("
        + ("the converged runs are lasso minimisers" if kkt_ok else
           "no run converged within the steps" if not converged else
           "not every converged run satisfies them")
        + ").",
        "",
    ]


def boundary_sentence(t: float, t_critical: float, w, steps: int) -> str:
    """Where threshold `t` sits against the fixed-point threshold, and what follows for the
    largest entry of its run outside the kept top 2 (the one the threshold should drop)."""
    w = np.asarray(w, float)
    rest = [j for j in range(w.size) if j not in top_two(w)]
    j = max(rest, key=lambda i: abs(w[i]))
    size = abs(w[j])
    if np.isclose(t, t_critical, rtol=1e-9, atol=0.0):
        return (f"t = {t:g} sits on that boundary, so there w{j + 1} decays geometrically "
                f"(|w{j + 1}| = {size:.0e} after {steps} steps) instead of being snapped to 0.")
    side = "above" if t > t_critical else "below"
    return (f"t = {t:g} is {side} that boundary ({t_critical:.4g}); |w{j + 1}| = {size:.0e} "
            f"after {steps} steps.")


def part_f_commentary(r: Lab1Results) -> list[str]:
    """(f): trimmed L1 reaches the projected-GD point, sparse and unbiased, once t is large."""
    c, f = r.fb("c"), {t: r.fb("f", t) for t in THRESHOLDS_F}
    t_small, t_edge, t_last = THRESHOLDS_F[0], THRESHOLDS_F[1], THRESHOLDS_F[-1]
    reaches_c = gap(f[t_last]["W"], c["W"]) < 1e-6
    outcome = (f"Once t is large enough to keep the small entries at 0 the result is the "
               f"projected-GD point {fmt_w(c['W'])} (L = {c['loss']:.4g}): sparse like the "
               "projection and unbiased, unlike the prox" if reaches_c else
               f"Even with t = {t_last} the result, {fmt_w(f[t_last]['W'])}, is not the "
               f"projected-GD point {fmt_w(c['W'])}; compare it with the prox")
    small = f[t_small]
    extra = small["nnz"] - 2
    survive = "a third entry survives" if extra == 1 else f"{extra} more entries survive"
    small_text = (f" With t = {t_small} {survive} ({support(small['W'])}, "
                  f"L = {small['loss']:.4g})." if extra > 0 else
                  f" With t = {t_small} too the result is {small['nnz']}-sparse "
                  f"({support(small['W'])}, L = {small['loss']:.4g}).")
    end = support(f[t_last]["W"])
    return [
        "Trimmed L1 shrinks only the 3 smallest-magnitude entries, so the 2 largest are left "
        f"unbiased. ‖W‖₀ = {joined(c_['nnz'] for c_ in f.values())} for t = "
        f"{joined(THRESHOLDS_F)}. {outcome} (w2 = {f[t_last]['W'][1]:.4f} here, "
        f"{r.fb('e', THRESHOLDS_E[-1])['W'][1]:.4f} for prox with t = {THRESHOLDS_E[-1]}). "
        "That point is a fixed point of the trimmed step exactly when t >= mu * max |dL/dw_j| "
        f"over the dropped entries = {r.ev['t_critical']:.4g}; "
        + boundary_sentence(float(t_edge), r.ev["t_critical"], f[t_edge]["W"], r.steps)
        + small_text + " "
        + (f"Like the projection it keeps {support(c['W'])}" if end == support(c["W"])
           else f"Unlike the projection it ends on {end}")
        + (" and misses W*." if end != support(r.ev["w_star"]) else " and finds W*'s support."),
        "",
    ]


def method_summary_lines(r: Lab1Results) -> list[str]:
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
        sparse_methods_sentence(r),
        "",
    ]


def sparse_methods_sentence(r: Lab1Results) -> str:
    """Which full-batch sparse runs find W*'s support, and where the others end."""
    runs = {"(c)": r.fb("c"), **{f"(e) t = {t}": r.fb("e", t) for t in THRESHOLDS_E},
            **{f"(f) t = {t}": r.fb("f", t) for t in THRESHOLDS_F}}
    target = support(r.ev["w_star"])
    found = [label for label, c in runs.items() if support(c["W"]) == target]
    ends = sorted({support(c["W"]) for c in runs.values()}, key=lambda x: (len(x), x))
    if not found:
        return (f"None of the sparse methods finds W*'s support {target} from W0 = 0 on this "
                f"data (full batch); they end on {' or '.join(ends)}.")
    return (f"Of the full-batch sparse runs, {', '.join(found)} find W*'s support {target}; "
            f"the runs end on {' or '.join(ends)}.")


def data_term_item(r: Lab1Results) -> str:
    """Item 1 of "Full batch vs per sample": per-sample steps do not multiply the step size."""
    ev, n = r.ev, r.ev["n"]
    probe, losses = ev["probe"], ev["probe_losses"]
    ps, fb, fast = losses["per_sample"], losses["full_batch"], losses["full_batch_n_mu"]
    first_order = (f"1. **The data term is not multiplied by {n}.** The {n} per-point "
                   "gradients add up to the full gradient, so to first order one per-sample "
                   f"step moves W like one full-batch step with the same mu, not {n} mu.")
    if not probe:  # a run shorter than 5 steps: nothing to compare
        return first_order
    faster = all(a < b for a, b in zip(ps, fb, strict=True))
    # in log scale: is per sample nearer full batch with mu than with n mu at every probe?
    nearer_mu = all(abs(np.log10(max(a, 1e-300)) - np.log10(max(b, 1e-300)))
                    < abs(np.log10(max(a, 1e-300)) - np.log10(max(c, 1e-300)))
                    for a, b, c in zip(ps, fb, fast, strict=True))
    return (
        f"{first_order} In (b) it is "
        + ("somewhat faster" if faster else "not faster")
        + " per step"
        + (" because each update uses the freshest W" if faster else "")
        + f" (L after {joined(probe)} steps: per-sample {joined(ps, '{:.2g}')}; full batch "
        f"{joined(fb, '{:.2g}')}; full batch with {n} mu {joined(fast, '{:.2g}')}), "
        + (f"nothing like a step size {n} times larger." if nearer_mu else
           f"at some steps nearer a step size {n} times larger.")
    )


def penalty_item(r: Lab1Results) -> str:
    """Item 2 of "Full batch vs per sample": the penalty acts once per point, so ~n x per step."""
    ev, n = r.ev, r.ev["n"]
    nearer_n = [b < a for _, a, b in ev["e_vs"] + ev["d_vs"]]
    closeness = (f"sit {'much ' if all(nearer_n) else ''}closer to full-batch runs with {n}x "
                 "the penalty than with the same penalty"
                 + ("" if all(nearer_n) else f" in {sum(nearer_n)} of {len(nearer_n)} cases"))
    trace = [np.asarray(w) for w in ev["w_trace"]]
    zeroed_then_back = [j for j in range(trace[0].size)
                        if any(abs(w[j]) <= 1e-12 for w in trace[1:-1])
                        and abs(trace[-1][j]) > 1e-12]
    trace_text = (
        ": the earlier updates zero " + names(zeroed_then_back) + " and the last point's "
        "update pushes " + ("it" if len(zeroed_then_back) == 1 else "them") + " out again, "
        "so the recorded W (end of step) keeps small non-zeros that full-batch prox sets "
        "exactly to 0" if zeroed_then_back else "")
    ps_nnz = [r.ps("e", t)["nnz"] for t in THRESHOLDS_E]
    fb_nnz = [r.fb("e", t)["nnz"] for t in THRESHOLDS_E]
    violates = all(k > KKT_OK for k in ev["kkt_ps"])
    return (
        f"2. **The regulariser is applied {n} times per step.** The subgradient term "
        "mu*lambda*sign(W), the soft-threshold and the trimmed soft-threshold act once per "
        f"point, so per step the penalty is about n = {n} times stronger relative to the data "
        f"term. Per-sample results {closeness}. Max |W difference| of per-sample prox with t "
        f"against full-batch prox with t / with {n}t: "
        + "; ".join(f"t = {t}: {a:.3f} / {b:.3f}" for t, a, b in ev["e_vs"])
        + f". Subgradient with lambda against full batch with lambda / {n} lambda: "
        + "; ".join(f"lambda = {k}: {a:.3f} / {b:.3f}" for k, a, b in ev["d_vs"])
        + ". The match is only approximate: the per-sample map cycles through "
        f"{n} different updates, and its end-of-step fixed point minimises no single "
        f"regularised objective. Inside one step of the converged per-sample prox run with "
        f"t = {ev['t_trace']}, W goes " + " -> ".join(fmt_w(w) for w in trace) + trace_text
        + f" (‖W‖₀ per-sample {joined(ps_nnz)}, full batch {joined(fb_nnz)}), and it "
        + ("violates" if violates else "does not always violate")
        + f" the lasso optimality conditions for lambda = t/mu by "
        f"{joined(ev['kkt_ps'], '{:.2g}')}."
    )


def unpenalised_item(r: Lab1Results) -> str:
    """What the schedules do where no penalty acts: projection, large-threshold trimmed L1."""
    t_large = THRESHOLDS_F[-1]
    pairs = [("(c)", r.fb("c"), r.ps("c")),
             (f"(f) t = {t_large}", r.fb("f", t_large), r.ps("f", t_large))]
    same = [support(fb["W"]) == support(ps["W"]) for _, fb, ps in pairs]
    b_same = gap(r.fb("b")["W"], r.ps("b")["W"]) < 1e-6
    tail = (" For the unregularised, consistent problem (b) both reach the same solution."
            if b_same else " Even in the unregularised problem (b) the schedules end apart.")
    if all(same):
        return ("Projection and large-threshold trimmed L1 add no penalty, so the two schedules "
                f"agree up to the small offset of the cycle (L = {r.ps('c')['loss']:.5g} vs "
                f"{r.fb('c')['loss']:.5g} in (c))." + tail)
    tie = tie_at_first_update(r.ev["c_ps_first"]) is not None
    return ("Projection and large-threshold trimmed L1 add no penalty, but the set they project "
            "onto is not convex, so where they end depends on the path, and the two schedules "
            "take different paths: "
            + "; ".join(f"{label}: full batch {support(fb['W'])} (L = {fb['loss']:.4g}), "
                        f"per sample {support(ps['W'])} (L = {ps['loss']:.4g})"
                        for label, fb, ps in pairs)
            + ". The per-sample path "
            + ("begins with a tie at its first update (see (c)), so where it ends depends on "
               "the order of the points and on how ties are broken" if tie else
               "depends on the order of the points")
            + ": it is not a better method, and the full-batch rows remain the answer." + tail)


def schedules_lines(r: Lab1Results) -> list[str]:
    """The "Full batch vs per sample" section: why per-sample numbers differ, which to use."""
    converged = [i for i, t in enumerate(THRESHOLDS_E) if r.fb("e", t)["last_change"] < CONVERGED]
    # only a converged run can be judged against the lasso conditions (a --steps 50 run
    # converges nowhere; the page must not then speak of "its converged results")
    fb_ok = bool(converged) and all(r.ev["kkt_fb"][i] < KKT_OK for i in converged)
    ps_bad = all(k > KKT_OK for k in r.ev["kkt_ps"])
    check = ("its converged (e) results satisfy the lasso conditions, the per-sample ones do "
             "not" if fb_ok and ps_bad else
             "compare the lasso violations above for both schedules")
    return [
        "## Full batch vs per sample",
        "",
        f"The per-sample schedule performs {r.ev['n']} updates per step, each with one point's "
        "gradient at the current iterate and each followed by the method's own sparsifying "
        "operation. Two things change; the numbers show which.",
        "",
        data_term_item(r),
        penalty_item(r),
        "",
        unpenalised_item(r),
        "",
        "The assignment defines L as a sum over the three points, full-batch updates and the "
        "prox threshold mu*lambda; only the full-batch schedule solves that problem "
        f"({check}). The full-batch rows are the ones to report and to compare with.",
        "",
    ]


def render_lab1(document: dict[str, Any]) -> str:
    """``lab1.md`` from the JSON document that the lab wrote (`experiments.lab1.payload` plus
    its ``_meta``)."""
    r = Lab1Results(document)
    lines = [
        *intro_lines(r, document.get("_meta", {})),
        *reference_lines(r),
        *part_a_lines(r),
        *part_section(r, "b", part_b_commentary(r)),
        *part_section(r, "c", part_c_commentary(r)),
        *part_section(r, "d", part_d_commentary(r)),
        *part_section(r, "e", part_e_commentary(r)),
        *part_section(r, "f", part_f_commentary(r)),
        *method_summary_lines(r),
        *schedules_lines(r),
    ]
    return "\n".join(lines)


def write_report(out_dir: str | Path) -> Path | None:
    """Re-render ``out_dir/lab1.md`` from ``out_dir/lab1.json``; None when there is none or it
    predates the evidence it needs (rerun the lab then)."""
    path = Path(out_dir) / "lab1.json"
    document = read_json(path) if path.is_file() else {}
    if "evidence" not in document:
        return None
    return write_markdown(Path(out_dir) / "lab1.md", [render_lab1(document)])


def summary(document: dict[str, Any]) -> str:
    """The final W, L and ||W||_0 of every case, one line each, grouped by schedule."""
    r, lines = Lab1Results(document), []
    for schedule in SCHEDULES:
        lines.append(f"[{schedule}]")
        lines += [f"  ({part}) {setting or '':14s} W = {fmt_w(c['W'])}  L = {c['loss']:.4g}  "
                  f"nnz = {c['nnz']}" for part in PARTS
                  for run_schedule, setting, c in r.cases(part) if run_schedule == schedule]
    return "\n".join(lines)
