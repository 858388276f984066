"""A run folder's two guards: one process trains in it at a time, and a replaced run survives
until its successor has a checkpoint.

* **The lock.** `RunLock` takes an exclusive ``flock`` on ``<run>/.lock`` (holding the pid) for
  as long as a process trains there. The kernel drops it when the process ends, however it
  ends, so a SIGKILL leaves no stale lock; a second process gets one line naming the holder.
* **Replacing a run** (``--overwrite``). The old run's files are moved into ``<run>/.replaced/``
  instead of being deleted, and removed only once the new run has written its first
  ``last.npz``. If the new run dies before that (a NaN in its first epoch, a kill), the next
  start in the folder puts the old run back (`recover_replaced_run`).

A resumed run keeps its recipe, except its length: ``--resume --epochs N`` extends a run (or
shortens one not yet past epoch N), which trains exactly as a run started with ``--epochs N``
would, since the learning rate is constant and one generator gives the data order
(`check_recipe_change`).
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
from pathlib import Path
from typing import IO, Any

from minitorch_compress.errors import MinitorchError
from minitorch_compress.io.checkpoint import atomic_write

LOCK_NAME = ".lock"
REPLACED_NAME = ".replaced"
PROVENANCE_NAME = "provenance.json"


class RunLockedError(MinitorchError):
    """Another process is training in this run folder."""


class RunLock:
    """``with RunLock(run_dir):`` holds the folder's lock (creating the folder)."""

    def __init__(self, run_dir: Path) -> None:
        self.path = Path(run_dir) / LOCK_NAME
        self._file: IO[str] | None = None

    def __enter__(self) -> RunLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        lock_file = open(self.path, "a+")  # noqa: SIM115 - held open until __exit__
        try:
            fcntl.flock(lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock_file.seek(0)
            holder = lock_file.read().strip() or "?"
            lock_file.close()
            raise RunLockedError(
                f"{self.path.parent} is in use by another training process (pid {holder}); "
                "wait for it to finish or choose another run folder") from None
        lock_file.seek(0)
        lock_file.truncate()
        lock_file.write(str(os.getpid()))
        lock_file.flush()
        self._file = lock_file
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._file is not None:
            fcntl.flock(self._file, fcntl.LOCK_UN)
            self._file.close()
            self._file = None


def set_aside_run(run_dir: Path, run_files: tuple[str, ...]) -> None:
    """Move the run files of `run_dir` into ``.replaced/`` (replacing an older set-aside)."""
    present = [run_dir / name for name in run_files if (run_dir / name).exists()]
    if not present:
        return
    aside = run_dir / REPLACED_NAME
    shutil.rmtree(aside, ignore_errors=True)
    aside.mkdir()
    for path in present:
        os.replace(path, aside / path.name)


def discard_replaced_run(run_dir: Path) -> None:
    """The new run has a checkpoint: the run it replaced is no longer needed."""
    shutil.rmtree(run_dir / REPLACED_NAME, ignore_errors=True)


def recover_replaced_run(run_dir: Path, run_files: tuple[str, ...]) -> bool:
    """Put a set-aside run back if its successor never wrote its first checkpoint (the first
    of `run_files`, ``last.npz``), removing what the successor left; drop the set-aside run
    if the successor did write one. Returns whether a run was put back."""
    aside = run_dir / REPLACED_NAME
    if not aside.is_dir():
        return False
    if (run_dir / run_files[0]).exists():
        discard_replaced_run(run_dir)
        return False
    for name in run_files:
        (run_dir / name).unlink(missing_ok=True)
    for path in aside.iterdir():
        os.replace(path, run_dir / path.name)
    aside.rmdir()
    return True


def check_recipe_change(path: Path, meta: dict[str, Any], recipe: dict[str, Any]) -> None:
    """Refuse to resume the checkpoint `path` (metadata `meta`) with `recipe` unless only the
    number of epochs differs and the run has not finished more epochs than it asks for.

    Raises:
        MinitorchError: naming each setting that differs (old and new value), or the epochs
            already finished.
    """
    old = meta.get("config")
    if not isinstance(old, dict):
        raise MinitorchError(f"{path} records no recipe; the file is corrupt (start afresh "
                             "with --overwrite)")
    changed = {key for key in old.keys() | recipe.keys() if old.get(key) != recipe.get(key)}
    if changed - {"epochs"}:
        differences = ", ".join(f"{key} {old.get(key)!r} -> {recipe.get(key)!r}"
                                for key in sorted(changed - {"epochs"}))
        raise MinitorchError(f"{path} was written with another recipe ({differences}); resume "
                             "with the run's settings (only --epochs may change) or use a fresh "
                             "--run-dir")
    done, planned = meta.get("epoch"), old.get("epochs")
    # a run that finished more epochs than it now asks for; an epoch beyond the file's own
    # recipe is corruption, which the trainer's progress check reports as such
    if (all(isinstance(n, int) and not isinstance(n, bool) for n in (done, planned))
            and recipe["epochs"] < done <= planned):
        raise MinitorchError(f"{path} has already finished {done} epochs, more than --epochs "
                             f"{recipe['epochs']}; give --epochs {done} or more to continue it "
                             "(its best.npz is the best of those epochs)")


class RecordProvenance:
    """A trainer hook that writes ``<run>/provenance.json`` (`record`, plus the planned
    ``epochs``) when training starts or resumes, so `snapshot` can show the command and
    "3 of 20 epochs" of a running command-line finetune. It writes from the first
    ``on_epoch_start``: after the resume checks and inside the run's lock, so a refused start
    or a second process never rewrites the record of the run in progress."""

    def __init__(self, record: dict[str, Any]) -> None:
        self.record = record
        self.written = False

    def on_epoch_start(self, trainer: Any, epoch: int) -> None:
        if self.written or trainer.run_dir is None:
            return
        text = json.dumps({**self.record, "epochs": trainer.config.epochs}, indent=2) + "\n"
        atomic_write(Path(trainer.run_dir) / PROVENANCE_NAME, lambda f: f.write(text.encode()))
        self.written = True
