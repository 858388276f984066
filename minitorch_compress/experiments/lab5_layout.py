"""Lab 5's names, shared by the experiment that runs it (`experiments.lab5`) and the reports
that render it (`reports.lab5`, `reports.claims`): its script, its parts and part (a)'s
targets.

Nothing here imports the engine, so the reports can read them without loading a kernel.
"""

from __future__ import annotations

SCRIPT = "labs/lab5_claims.py"
PARTS = ("a", "b", "c")

#: Part (a)'s targets: a mixed-precision model no larger than the committed uniform Lab 3
#: model ``lab3``'s ``bits``-bit file, from the same start (``dense``: the pretrained model,
#: Lab 3 (c)'s asymmetric quantizer; ``sparse``: Lab 2 (c)'s 80 %-sparse model, Lab 3 (d)'s
#: mask-aware quantizer with the mask fixed), compared with that model and, for the moonshot,
#: with the uniform model one bit wider (``next``).
TARGETS = {
    "c2": {"lab3": "lab3_c", "bits": "2", "next": "3", "start": "dense"},
    "c3": {"lab3": "lab3_c", "bits": "3", "next": "4", "start": "dense"},
    "d2": {"lab3": "lab3_d", "bits": "2", "next": "3", "start": "sparse"},
}


def uniform_model_name(target: str, bits: str | None = None) -> str:
    """The committed uniform Lab 3 model a target is measured against, e.g. ``lab3_c_2bit``
    (with `bits`: that width of the same lab part)."""
    spec = TARGETS[target]
    return f"{spec['lab3']}_{bits or spec['bits']}bit"


def mixed_model_name(target: str) -> str:
    """Part (a)'s model file name for a target, e.g. ``lab5_a_c2``."""
    return f"lab5_a_{target}"
