"""The course's finetuning recipe, in a module that imports nothing of the package.

It sits in the base layer so that the trainer (which runs it), the command-line options
(whose defaults it gives) and the reports (which quote it) all read the same numbers.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class FinetuneConfig:
    """The course's finetuning recipe (SPEC: SGD, batch 256, lr 0.002, momentum 0.875, wd 1e-4,
    20 epochs, test after each epoch, keep the best)."""

    epochs: int = 20
    batch_size: int = 256
    lr: float = 0.002
    momentum: float = 0.875
    weight_decay: float = 1e-4
    seed: int = 0
    eval_batch_size: int = 500


#: Epochs of the recipe: a finetuning part with fewer is a smoke run.
RECIPE_EPOCHS = FinetuneConfig().epochs
