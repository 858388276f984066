"""Lab 4's names, shared by the experiment that runs it (`experiments.lab4`) and the report
that renders it (`reports.lab4`): its script, its parts and their titles, ResNet-20's
block-internal channel counts, and how part (c) reads Lab 2 (d)'s result.

Nothing here imports the engine, so the report can read them without loading a kernel.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from minitorch_compress.paths import shown
from minitorch_compress.results import read_result

SCRIPT = "labs/lab4_structured.py"
PARTS = ("a", "b", "c", "d", "e")
FINETUNE_PARTS = ("a", "b", "c", "e")

TITLES = {
    "a": "(a) group Lasso on the block-internal channels",
    "b": "(b) the channel-pruned network, finetuned; L1-filter baseline",
    "c": "(c) Lasso + one small threshold vs iterative pruning",
    "d": "(d) inference speed",
    "e": "(e) the methods at equal MAC budgets",
}

# Part (e)'s methods, in the order of its table: the L1-filter ranking of Li et al. and group
# Lasso, each finetuned with the labels alone and with distillation from the pretrained model.
METHODS = ("l1", "l1_kd", "lasso", "lasso_kd")
METHOD_LABELS = {
    "l1": "L1 filters + finetune",
    "l1_kd": "L1 filters + finetune + KD",
    "lasso": "group Lasso + finetune",
    "lasso_kd": "group Lasso + finetune + KD",
}


def budget_token(budget: str) -> str:
    """The run-name token of a MAC budget: "0.6" -> "m60" (its whole percent)."""
    return f"m{round(100 * float(budget))}"


def method_run(method: str, budget: str) -> str:
    """Part (e)'s run folder and model-file name of `method` at `budget`, e.g.
    ``lab4_e_l1_kd_m60``; ``method="lasso_phase"`` names the group-Lasso phase that the two
    group-Lasso methods of a budget share."""
    return f"lab4_e_{method}_{budget_token(budget)}"

# The unpruned ResNet-20's stages, as `models.resnet` builds them (the report quotes the
# channel count without importing the model; tests/test_layers.py checks that they agree).
STAGE_CHANNELS = (16, 32, 64)
BLOCKS_PER_STAGE = 3


def iterative_pruning(folder: Path) -> dict[str, Any] | None:
    """Lab 2 (d)'s iterative pruning as (c) compares with it, from ``folder/lab2_d.json``:
    {"best_accuracy", "total_sparsity", "history", "sparsity_per_epoch", "source"}, or None
    when that file is absent. The report reads it again when it renders, so a later rerun
    of Lab 2 (d) is what (c) is compared with."""
    if (lab2_d := read_result(folder, "lab2_d")) is None:
        return None
    return {"best_accuracy": lab2_d["best_accuracy"], "total_sparsity": lab2_d["total_sparsity"],
            "history": lab2_d["history"],
            "sparsity_per_epoch": [h.get("sparsity") for h in lab2_d["log"]],
            "source": f"{shown(Path(folder) / 'lab2_d.json')}"}
