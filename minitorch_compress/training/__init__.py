"""Evaluation and the shared finetuning loop."""

from minitorch_compress.training.distill import DistillConfig
from minitorch_compress.training.evaluate import evaluate
from minitorch_compress.training.trainer import (
    FinetuneConfig,
    Hook,
    Trainer,
    TrainingDivergedError,
)

__all__ = ["evaluate", "Trainer", "FinetuneConfig", "Hook", "TrainingDivergedError",
           "DistillConfig"]
