"""Learning-rate schedules."""

from __future__ import annotations

from collections.abc import Iterable

from minitorch_compress.optim.sgd import SGD


class MultiStepLR:
    """lr = base_lr * gamma ** (number of milestones <= epoch); call `step()` once per epoch."""

    def __init__(self, optimizer: SGD, milestones: Iterable[int], gamma: float = 0.1) -> None:
        self.optimizer = optimizer
        self.milestones = sorted(milestones)
        self.gamma = gamma
        self.base_lr = optimizer.lr
        self.epoch = 0

    def lr_at(self, epoch: int) -> float:
        """The learning rate used during `epoch` (0-based)."""
        passed = sum(1 for m in self.milestones if m <= epoch)
        return self.base_lr * self.gamma**passed

    def step(self) -> None:
        """Advance one epoch and set the optimizer's lr."""
        self.epoch += 1
        self.optimizer.lr = self.lr_at(self.epoch)
