"""Lab 1: sparse optimisation of the 3-point linear model, parts (b)-(f), both schedules.

Every part is run with the assignment's full-batch schedule (one update per step, the one to
report) and, for comparison, with the per-sample schedule a published solution used by mistake
(the same update applied once per data point, three per step). The maths lives in
`minitorch_compress.linear`; this module loops over the settings (`run_all`) and turns the
histories into the nested dict of the JSON (`results_json`). The figures, the report and the
files on disk are `lab1_report`'s job.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from minitorch_compress.linear import (
    SCHEDULES,
    History,
    run,
)

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


def case_record(h: History) -> dict:
    """The JSON CASE: {"W": [5 floats], "loss": float, "nnz": int}."""
    return {"W": [float(x) for x in clean(h.final_W)], "loss": h.final_loss, "nnz": h.nnz}


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
