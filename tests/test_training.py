"""The shared trainer and evaluation: exact resume, NaN stop, the pretrained accuracy."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import SHARED_CHECKPOINT, requires_shared

from minitorch_compress.errors import MinitorchError
from minitorch_compress.io.checkpoint import load_checkpoint
from minitorch_compress.models import resnet20
from minitorch_compress.training import FinetuneConfig, Trainer, TrainingDivergedError, evaluate

CONFIG = FinetuneConfig(epochs=2, batch_size=16, lr=0.05, seed=7, eval_batch_size=16)


class StopBeforeEpoch:
    """Simulates a kill: raises KeyboardInterrupt when epoch `epoch` is about to start."""

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_epoch_start(self, trainer, epoch):
        if epoch == self.epoch:
            raise KeyboardInterrupt


def test_resume_after_interruption_matches_an_uninterrupted_run(tiny_cifar, tmp_path):
    train, test = tiny_cifar
    straight = Trainer(resnet20(rng=np.random.default_rng(0)), train, test, CONFIG,
                       run_dir=tmp_path / "straight", progress=False)
    straight.fit()

    interrupted = Trainer(resnet20(rng=np.random.default_rng(0)), train, test, CONFIG,
                          hooks=[StopBeforeEpoch(1)], run_dir=tmp_path / "resumed",
                          progress=False)
    with pytest.raises(KeyboardInterrupt):
        interrupted.fit()
    resumed = Trainer(resnet20(rng=np.random.default_rng(99)), train, test, CONFIG,
                      run_dir=tmp_path / "resumed", progress=False)
    resumed.fit(resume=True)

    assert resumed.epoch == 2
    for (name, a), (_, b) in zip(straight.model.state_dict().items(),
                                 resumed.model.state_dict().items(), strict=True):
        np.testing.assert_array_equal(a, b, err_msg=name)
    assert [h["test_accuracy"] for h in straight.history] == \
        [h["test_accuracy"] for h in resumed.history]
    assert [h["train_loss"] for h in straight.history] == \
        [h["train_loss"] for h in resumed.history]
    log = [json.loads(line) for line in (tmp_path / "resumed" / "log.jsonl").read_text()
           .splitlines()]
    assert [entry["epoch"] for entry in log] == [1, 2]
    _, meta = load_checkpoint(tmp_path / "resumed" / "best.npz")
    assert meta["accuracy"] == max(h["test_accuracy"] for h in resumed.history)


def test_training_reduces_the_loss(tiny_cifar):
    train, test = tiny_cifar
    config = FinetuneConfig(epochs=3, batch_size=16, lr=0.05, seed=1, eval_batch_size=32)
    trainer = Trainer(resnet20(rng=np.random.default_rng(0)), train, test, config,
                      progress=False)
    history = trainer.fit()
    assert history[-1]["train_loss"] < history[0]["train_loss"]


def test_nan_loss_stops_with_a_clear_message(tiny_cifar):
    train, test = tiny_cifar

    class Poison:
        def after_step(self, trainer):
            trainer.model.final_fc.linear.bias.data[:] = np.nan

    trainer = Trainer(resnet20(), train, test, CONFIG, hooks=[Poison()], progress=False)
    with pytest.raises(TrainingDivergedError, match="loss became nan at epoch 1, step 2"):
        trainer.fit()


def test_resume_with_another_recipe_is_refused(tiny_cifar, tmp_path):
    train, test = tiny_cifar
    one_epoch = FinetuneConfig(epochs=1, batch_size=16, seed=7, eval_batch_size=16)
    Trainer(resnet20(), train, test, one_epoch, run_dir=tmp_path, progress=False).fit()
    other = FinetuneConfig(epochs=1, batch_size=32, seed=7, eval_batch_size=16)
    with pytest.raises(MinitorchError, match=r"another recipe \(batch_size 16 -> 32\)"):
        Trainer(resnet20(), train, test, other, run_dir=tmp_path, progress=False).fit(
            resume=True)


def test_resume_with_more_epochs_extends_the_run_as_if_started_so(tiny_cifar, tmp_path):
    """Issue #34: `finetune --resume --epochs 2` on a finished 1-epoch run continues it, and
    the result is the 2-epoch run's, bit for bit (constant learning rate, one generator)."""
    train, test = tiny_cifar
    straight = Trainer(resnet20(rng=np.random.default_rng(0)), train, test, CONFIG,
                       run_dir=tmp_path / "straight", progress=False)
    straight.fit()
    one_epoch = FinetuneConfig(**{**CONFIG.__dict__, "epochs": 1})
    Trainer(resnet20(rng=np.random.default_rng(0)), train, test, one_epoch,
            run_dir=tmp_path / "extended", progress=False).fit()
    extended = Trainer(resnet20(rng=np.random.default_rng(5)), train, test, CONFIG,
                       run_dir=tmp_path / "extended", progress=False)
    extended.fit(resume=True)
    assert extended.epoch == 2
    assert [h["train_loss"] for h in extended.history] == \
        [h["train_loss"] for h in straight.history]
    for (name, a), (_, b) in zip(straight.model.state_dict().items(),
                                 extended.model.state_dict().items(), strict=True):
        np.testing.assert_array_equal(a, b, err_msg=name)
    _, meta = load_checkpoint(tmp_path / "extended" / "last.npz")
    assert meta["config"]["epochs"] == 2  # the next --resume needs --epochs 2
    # fewer epochs than it has finished: one line naming what to give
    with pytest.raises(MinitorchError, match="already finished 2 epochs, more than --epochs 1"):
        Trainer(resnet20(), train, test, one_epoch, run_dir=tmp_path / "extended",
                progress=False).fit(resume=True)


@requires_shared
def test_pretrained_accuracy_on_first_1000_test_images():
    # 0.9210 was measured once with `python -m minitorch_compress evaluate --test-subset 1000`
    # (the same code gives 0.9151 on all 10,000 images, the published float accuracy).
    from minitorch_compress.data.cifar10 import load_cifar10
    from minitorch_compress.models.pretrained import load_pretrained

    data = load_cifar10(subset=0, test_subset=1000)
    model = load_pretrained(SHARED_CHECKPOINT)
    assert evaluate(model, data.x_test, data.y_test, progress=False) == pytest.approx(0.921)
