"""Optimizers and learning-rate schedules."""

from minitorch_compress.optim.schedulers import MultiStepLR
from minitorch_compress.optim.sgd import SGD

__all__ = ["SGD", "MultiStepLR"]
