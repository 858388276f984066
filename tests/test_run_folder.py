"""A run folder's guards (issue #34, part 1): one training process at a time, and a run
replaced with --overwrite survives until its successor has a checkpoint."""

from __future__ import annotations

import multiprocessing
import os

import numpy as np
import pytest

from minitorch_compress.errors import MinitorchError
from minitorch_compress.io.checkpoint import load_checkpoint
from minitorch_compress.models import resnet20
from minitorch_compress.training import FinetuneConfig, Trainer
from minitorch_compress.training.run_folder import RunLock, RunLockedError
from minitorch_compress.training.trainer import RunExistsError

CONFIG = FinetuneConfig(epochs=1, batch_size=16, seed=7, eval_batch_size=16)


def _hold_lock(run_dir, ready, release):
    with RunLock(run_dir):
        ready.set()
        release.wait(30)


def test_second_process_is_refused_naming_the_holder(tmp_path, tiny_cifar):
    ctx = multiprocessing.get_context("fork")
    ready, release = ctx.Event(), ctx.Event()
    holder = ctx.Process(target=_hold_lock, args=(tmp_path, ready, release))
    holder.start()
    try:
        assert ready.wait(30)
        train, test = tiny_cifar
        with pytest.raises(RunLockedError, match=f"pid {holder.pid}"):
            Trainer(resnet20(), train, test, CONFIG, run_dir=tmp_path, progress=False).fit()
    finally:
        release.set()
        holder.join(30)
    assert not (tmp_path / "last.npz").exists()


def test_lock_is_released_when_the_holder_dies(tmp_path):
    pid = os.fork()
    if pid == 0:  # the child takes the lock and is killed holding it
        RunLock(tmp_path).__enter__()
        os._exit(0)
    os.waitpid(pid, 0)
    with RunLock(tmp_path):  # no stale lock
        pass


class Diverge:
    def after_step(self, trainer):
        trainer.model.final_fc.linear.bias.data[:] = np.nan


def test_overwrite_keeps_the_old_run_until_the_new_one_has_a_checkpoint(tmp_path, tiny_cifar):
    train, test = tiny_cifar
    Trainer(resnet20(), train, test, CONFIG, run_dir=tmp_path, progress=False).fit()
    before = (tmp_path / "last.npz").read_bytes()
    with pytest.raises(MinitorchError, match="loss became nan"):
        Trainer(resnet20(), train, test, CONFIG, hooks=[Diverge()], run_dir=tmp_path,
                progress=False).fit(overwrite=True)
    assert (tmp_path / "last.npz").read_bytes() == before  # the old run is back
    assert not (tmp_path / ".replaced").exists()
    # a successful replacement drops it
    Trainer(resnet20(), train, test, CONFIG, run_dir=tmp_path, progress=False).fit(
        overwrite=True)
    assert not (tmp_path / ".replaced").exists()
    _, meta = load_checkpoint(tmp_path / "last.npz")
    assert meta["epoch"] == 1


def test_a_killed_replacement_is_undone_at_the_next_start(tmp_path, tiny_cifar):
    train, test = tiny_cifar
    Trainer(resnet20(), train, test, CONFIG, run_dir=tmp_path, progress=False).fit()
    before = (tmp_path / "last.npz").read_bytes()
    # what a SIGKILL before the first checkpoint leaves: the old run set aside, nothing new
    from minitorch_compress.training.run_folder import set_aside_run
    from minitorch_compress.training.trainer import RUN_FILES

    set_aside_run(tmp_path, RUN_FILES)
    assert not (tmp_path / "last.npz").exists()
    with pytest.raises(RunExistsError):  # the next plain start sees the old run again
        Trainer(resnet20(), train, test, CONFIG, run_dir=tmp_path, progress=False).fit()
    assert (tmp_path / "last.npz").read_bytes() == before


def test_resume_with_only_best_says_so(tmp_path, tiny_cifar):
    train, test = tiny_cifar
    Trainer(resnet20(), train, test, CONFIG, run_dir=tmp_path, progress=False).fit()
    (tmp_path / "last.npz").unlink()
    with pytest.raises(RunExistsError, match="no last.npz to continue from"):
        Trainer(resnet20(), train, test, CONFIG, run_dir=tmp_path, progress=False).fit(
            resume=True)
