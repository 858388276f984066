"""Lab 5's names, shared by the experiment that runs it (`experiments.lab5`) and the reports
that render it (`reports.lab5`, `reports.claims`): its script and its parts.

Nothing here imports the engine, so the reports can read them without loading a kernel.
"""

from __future__ import annotations

SCRIPT = "labs/lab5_claims.py"
PARTS = ("a", "b", "c")
PART_A_REFUSAL = "part a (mixed precision, claim 1.10) is not implemented yet (issue #38)"
