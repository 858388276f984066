"""Lab 2's names, shared by the experiment that runs it (`experiments.lab2`) and the report
that renders it (`reports.lab2`): its script, its parts and their titles.

Nothing here imports the engine, so the report can read them without loading a kernel.
"""

SCRIPT = "labs/lab2_pruning.py"  # as recorded in the provenance of the results
PARTS = ("a", "b", "c", "d", "e")
FINETUNE_PARTS = ("c", "d", "e")

TITLES = {
    "a": "(a) pretrained float model",
    "b": "(b) per-layer percentile pruning, no finetuning",
    "c": "(c) prune 80 % per layer + masked finetuning",
    "d": "(d) iterative per-layer pruning to 80 %",
    "e": "(e) global iterative pruning to 80 %",
}
