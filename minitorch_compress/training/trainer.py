"""The finetuning loop every lab shares: SGD recipe, hooks, progress, logs, best/last checkpoints.

A run lives in a folder `run_dir`:

* `last.npz`  - everything needed to continue (model, momentum buffers, hook state such as
  pruning masks, epoch, RNG state, history), rewritten atomically after every epoch;
* `best.npz`  - the model (and masks) of the epoch with the best test accuracy so far;
* `log.jsonl` - one JSON line per finished epoch, rewritten (atomically) from the checkpoint's
  own history after every epoch and on resume, so it always agrees with `last.npz`.

Nothing non-finite is ever saved: after every epoch the model and optimizer state are checked,
and a NaN or inf (a weight, a momentum buffer, a batch-norm running variance) stops the run
with an error naming the last checkpoint, which is therefore always finite. A folder that
already holds a run is never cleared silently: a fresh `fit` there needs ``overwrite=True``.

With a `teacher` the loss is knowledge distillation (`training/distill.py`) instead of plain
cross-entropy; its settings and the teacher's fingerprint are part of the recipe a resume
must match.

`fit(resume=True)` continues after the last completed epoch and produces exactly the numbers an
uninterrupted run would have: the data order and augmentation come from one
`numpy.random.Generator` whose state is checkpointed with the rest.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from minitorch_compress import ops
from minitorch_compress.autograd.tensor import Tensor
from minitorch_compress.data.loader import iterate_batches
from minitorch_compress.errors import CheckpointError, MinitorchError
from minitorch_compress.io.checkpoint import (
    NonFiniteError,
    atomic_write,
    generator_from_state,
    generator_state,
    load_checkpoint,
    require_finite,
    save_checkpoint,
)
from minitorch_compress.nn.module import Module
from minitorch_compress.optim.sgd import SGD
from minitorch_compress.recipe import FinetuneConfig
from minitorch_compress.training.batch_memory import check_batch_fits
from minitorch_compress.training.distill import (
    DistillConfig,
    distillation_loss,
    model_fingerprint,
    teacher_logits,
)
from minitorch_compress.training.evaluate import evaluate
from minitorch_compress.training.run_folder import (
    RunLock,
    check_recipe_change,
    discard_replaced_run,
    recover_replaced_run,
    set_aside_run,
)


class TrainingDivergedError(MinitorchError):
    """The loss, a weight or a buffer became NaN or infinite."""


class RunExistsError(MinitorchError):
    """A fresh run was asked for in a folder that already holds one."""


RUN_FILES = ("last.npz", "best.npz", "log.jsonl")


def existing_run(run_dir: Path) -> str | None:
    """A description of the run already in `run_dir` ("3 of 20 epochs"), or None if none."""
    last = run_dir / "last.npz"
    if last.is_file():
        try:
            _, meta = load_checkpoint(last)
            return f"{meta.get('epoch', '?')} of {meta.get('config', {}).get('epochs', '?')} epochs"
        except MinitorchError:
            return "an unreadable last.npz"
    if (run_dir / "best.npz").is_file():
        return "a best.npz"
    return None


def refuse_existing_run(run_dir: Path, alternative: str = "another run folder") -> None:
    """Raise `RunExistsError` (naming --resume and --overwrite) if `run_dir` holds a run."""
    found = existing_run(run_dir)
    if found is not None:
        raise RunExistsError(
            f"{run_dir} already holds a run ({found}); add --resume to continue it, "
            f"--overwrite to replace it, or choose {alternative}")


def remove_stale_temporaries(run_dir: Path) -> list[Path]:
    """Delete the ``.<name>.*.tmp`` files an interrupted `atomic_write` can leave behind (a
    SIGKILL gives it no chance to clean up); returns what was removed."""
    stale = [p for name in RUN_FILES for p in run_dir.glob(f".{name}.*.tmp")]
    for path in stale:
        path.unlink(missing_ok=True)
    return stale


class Hook:
    """Base class of trainer hooks (pruning, quantization, ...); every method is optional.

    A hook with state (`state_dict`) names it with ``state_name``: checkpoints store it
    under ``hook.<state_name>.<key>``, so the layout does not depend on the hooks' order.
    """

    state_name: str = "hook"

    def on_epoch_start(self, trainer: Trainer, epoch: int) -> None:
        """Before the first step of `epoch` (0-based)."""

    def after_step(self, trainer: Trainer) -> None:
        """Right after each `optimizer.step()`."""

    def on_epoch_end(self, trainer: Trainer, epoch: int, metrics: dict[str, Any]) -> None:
        """After the epoch's test evaluation; may add entries to `metrics` for the log.

        Setting `metrics["eligible_for_best"] = False` keeps this epoch from becoming `best`.
        """

    def state_dict(self) -> dict[str, np.ndarray]:
        """Arrays to checkpoint for resume (e.g. masks)."""
        return {}

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        """Restore what `state_dict` returned."""


def hook_key_prefix(hook: Any) -> str:
    """``hook.<state_name>.``: where a hook's state lives in a checkpoint."""
    return f"hook.{getattr(hook, 'state_name', type(hook).__name__)}."


def hook_state(arrays: dict[str, np.ndarray], hook: Any, index: int) -> dict[str, np.ndarray]:
    """The state `hook` saved in a checkpoint's `arrays` (``hook.<state_name>.*``); for
    checkpoints written before hooks had names, the ``hook<index>.*`` of its position."""
    for prefix in (hook_key_prefix(hook), f"hook{index}."):
        state = {k[len(prefix):]: v for k, v in arrays.items() if k.startswith(prefix)}
        if state:
            return state
    return {}


def _hook_arrays(hooks: Sequence[Any]) -> dict[str, np.ndarray]:
    """Every hook's state, under its stable name."""
    arrays: dict[str, np.ndarray] = {}
    for hook in hooks:
        state = hook.state_dict() if hasattr(hook, "state_dict") else {}
        arrays.update({hook_key_prefix(hook) + k: v for k, v in state.items()})
    return arrays


def _call_hooks(hooks: Sequence[Any], name: str, *args: Any) -> None:
    for hook in hooks:
        method = getattr(hook, name, None)
        if method is not None:
            method(*args)


def _checked_progress(meta: dict[str, Any], epochs: int,
                      path: Path) -> tuple[int, list[Any], float]:
    """(completed epochs, history, best accuracy) of a checkpoint's metadata, checked to be a
    run of this recipe: 0 <= epoch <= epochs, one history entry per completed epoch and an
    accuracy in [0, 1]. A tampered file would otherwise train "epoch -4/4".

    Raises:
        CheckpointError: naming the field that is out of range or of the wrong type.
    """
    epoch, history, best = meta.get("epoch"), meta.get("history"), meta.get("best_accuracy")
    if isinstance(epoch, bool) or not isinstance(epoch, int) or not 0 <= epoch <= epochs:
        raise CheckpointError(f"{path}: its epoch {epoch!r} is not a whole number from 0 to "
                              f"{epochs}; the file is corrupt (start afresh with --overwrite)")
    if not isinstance(history, list) or len(history) != epoch:
        raise CheckpointError(f"{path}: its history does not hold one entry per completed "
                              "epoch; the file is corrupt (start afresh with --overwrite)")
    if isinstance(best, bool) or not isinstance(best, (int, float)) or not 0 <= best <= 1:
        raise CheckpointError(f"{path}: its best accuracy {best!r} is not in [0, 1]; the file "
                              "is corrupt (start afresh with --overwrite)")
    return epoch, list(history), float(best)


class Trainer:
    """Finetunes `model` on (train_images, train_labels), testing after every epoch.

    Args:
        model: the network; its parameters are optimised in place.
        train: (uint8 images (N, 3, 32, 32), int labels (N,)).
        test: the same for the test set (all 10,000 images in the labs).
        config: the recipe.
        hooks: objects with any of the `Hook` methods (duck-typed).
        run_dir: where checkpoints and the log go; None keeps everything in memory.
        progress: show tqdm bars.
        teacher: with a teacher the loss is `distill.distillation_loss` against its logits
            on the same augmented batch (the teacher is not trained); None: cross-entropy.
        distill: temperature and weight of the distillation (default `DistillConfig()`);
            only with a teacher.
    """

    def __init__(self, model: Module, train: tuple[np.ndarray, np.ndarray],
                 test: tuple[np.ndarray, np.ndarray], config: FinetuneConfig | None = None,
                 hooks: Sequence[Any] = (), run_dir: str | Path | None = None,
                 progress: bool = True, teacher: Module | None = None,
                 distill: DistillConfig | None = None) -> None:
        if getattr(model, "batch_norm_folded", False):
            raise MinitorchError("this model was loaded from a file written with "
                                 "--fold-batch-norm: its batch statistics are gone, so it is "
                                 "for inference only; finetune from the unfolded .mtc file")
        self.model = model
        self.train_images, self.train_labels = train
        self.test_images, self.test_labels = test
        self.config = config or FinetuneConfig()
        if distill is not None and teacher is None:
            raise MinitorchError("distillation settings were given without a teacher model")
        if teacher is model:  # its eval() for the teacher's logits would stop the training
            raise MinitorchError("the teacher must be another model than the one trained")
        self.teacher = teacher
        check_batch_fits(self.config.batch_size, len(self.train_images), teacher is not None)
        self.distill = (distill or DistillConfig()) if teacher is not None else None
        # part of the recipe a resume must match: the settings and which teacher
        self.distill_recipe = None if teacher is None else {
            **asdict(self.distill), "teacher": model_fingerprint(teacher)}
        self.hooks = list(hooks)
        names = [hook_key_prefix(h) for h in self.hooks if hasattr(h, "state_dict")]
        if len(set(names)) != len(names):
            raise ValueError(f"two hooks with state share a state_name: {names}")
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.progress = progress
        self.optimizer = SGD(model.parameters(), lr=self.config.lr,
                             momentum=self.config.momentum,
                             weight_decay=self.config.weight_decay)
        self.rng = np.random.default_rng(self.config.seed)
        self.epoch = 0  # number of completed epochs
        self.history: list[dict[str, Any]] = []
        self.best_accuracy = -1.0
        self.best_state: dict[str, np.ndarray] | None = None

    # ------------------------------------------------------------------ checkpoints
    def _checkpoint_arrays(self) -> dict[str, np.ndarray]:
        arrays = {f"model.{k}": v for k, v in self.model.state_dict().items()}
        arrays.update({f"optim.{k}": v for k, v in self.optimizer.state_dict().items()})
        arrays.update(_hook_arrays(self.hooks))
        return arrays

    def _write_log(self) -> None:
        """log.jsonl from `history`, atomically: it can never disagree with last.npz."""
        text = "".join(json.dumps(h, sort_keys=True) + "\n" for h in self.history)
        atomic_write(self.run_dir / "log.jsonl", lambda f: f.write(text.encode()))

    def _check_finite(self, epoch: int) -> None:
        """Stop before saving if training left a NaN/inf anywhere in the state."""
        try:
            require_finite(self.model.state_dict(), "model")
            require_finite(self.optimizer.state_dict(), "optimizer")
        except NonFiniteError as error:
            raise TrainingDivergedError(
                f"epoch {epoch + 1} diverged: {str(error).split(': ', 1)[1].split(';')[0]}; "
                f"nothing of it was saved and {self._last_checkpoint(epoch)}; lower the "
                "learning rate") from None

    def _last_checkpoint(self, epoch: int) -> str:
        """What a divergence message says of the checkpoint left on disk (always finite)."""
        last = self.run_dir / "last.npz" if self.run_dir is not None else None
        if last is not None and last.is_file() and epoch > 0:
            return f"the last checkpoint, {last} (epoch {epoch}), is finite"
        return "no checkpoint of this run was written"

    def _save(self) -> None:
        if self.run_dir is None:
            return
        self.run_dir.mkdir(parents=True, exist_ok=True)
        meta = {
            "epoch": self.epoch, "history": self.history, "best_accuracy": self.best_accuracy,
            "rng": generator_state(self.rng), "config": asdict(self.config),
            "distill": self.distill_recipe, "data": self._data_signature(),
        }
        save_checkpoint(self.run_dir / "last.npz", self._checkpoint_arrays(), meta)
        discard_replaced_run(self.run_dir)  # this run has a checkpoint now

    def _data_signature(self) -> dict[str, int]:
        """Sizes of the data a run trains and tests on: resuming on other data is refused."""
        return {"train_images": len(self.train_images), "test_images": len(self.test_images)}

    def _save_best(self, accuracy: float) -> None:
        self.best_state = self.model.state_dict()
        if self.run_dir is None:
            return
        arrays = {f"model.{k}": v for k, v in self.best_state.items()}
        arrays.update(_hook_arrays(self.hooks))
        save_checkpoint(self.run_dir / "best.npz", arrays,
                        {"epoch": self.epoch, "accuracy": accuracy,
                         "config": asdict(self.config), "distill": self.distill_recipe,
                         "data": self._data_signature()})

    def _resume(self) -> bool:
        path = self.run_dir / "last.npz" if self.run_dir is not None else None
        if path is None or not path.exists():
            return False
        arrays, meta = load_checkpoint(path)
        check_recipe_change(path, meta, asdict(self.config))  # only --epochs may change
        if meta.get("distill") != self.distill_recipe:  # a run before distillation: None
            raise MinitorchError(
                f"{path} was written with other distillation settings ({meta.get('distill')}, "
                f"now {self.distill_recipe}); resume with the same teacher and settings or "
                "use a fresh --run-dir")
        require_finite(arrays, str(path))
        if meta.get("data") != self._data_signature():
            raise MinitorchError(
                f"{path} was trained on other data ({meta.get('data')}, now "
                f"{self._data_signature()}); resume with the same --subset/--test-subset or use "
                "a fresh --run-dir"
            )
        self.model.load_state_dict(
            {k[len("model."):]: v for k, v in arrays.items() if k.startswith("model.")})
        self.optimizer.load_state_dict(
            {k[len("optim."):]: v for k, v in arrays.items() if k.startswith("optim.")})
        for i, hook in enumerate(self.hooks):
            if hasattr(hook, "load_state_dict"):
                hook.load_state_dict(hook_state(arrays, hook, i))
        self.epoch, self.history, self.best_accuracy = _checked_progress(
            meta, self.config.epochs, path)
        self.rng = generator_from_state(meta["rng"])
        best_path = self.run_dir / "best.npz"
        if best_path.exists():
            best_arrays, _ = load_checkpoint(best_path)
            self.best_state = {k[len("model."):]: v for k, v in best_arrays.items()
                               if k.startswith("model.")}
        return True

    # ------------------------------------------------------------------ training
    def train_one_epoch(self, epoch: int) -> dict[str, float]:
        """One pass over the shuffled, augmented training set; returns loss/accuracy/img/s."""
        self.model.train()
        n = len(self.train_images)
        start = time.perf_counter()
        bar = tqdm(total=n, desc=f"epoch {epoch + 1}/{self.config.epochs}", unit="img",
                   disable=not self.progress, leave=False, dynamic_ncols=True, mininterval=1.0)
        batches = iterate_batches(self.train_images, self.train_labels, self.config.batch_size,
                                  rng=self.rng, shuffle=True, augment=True)
        # overflow shows up as inf/NaN, which the checks below turn into one clear error;
        # numpy's RuntimeWarnings before it would only be noise
        with np.errstate(over="ignore", invalid="ignore"):
            return self._train_batches(epoch, batches, bar, start)

    def _train_batches(self, epoch: int, batches: Any, bar: Any,
                       start: float) -> dict[str, float]:
        total_loss, correct, seen = 0.0, 0, 0
        try:
            for step, (images, labels) in enumerate(batches):
                logits = self.model(Tensor(images))
                loss = self._loss(images, logits, labels)
                loss_value = float(loss.data)
                if not math.isfinite(loss_value):
                    raise TrainingDivergedError(
                        f"loss became {loss_value} at epoch {epoch + 1}, step {step + 1}; "
                        f"{self._last_checkpoint(epoch)}; lower the learning rate or check "
                        "the inputs")
                self.optimizer.zero_grad()
                loss.backward()
                self.optimizer.step()
                _call_hooks(self.hooks, "after_step", self)
                batch = len(labels)
                total_loss += loss_value * batch
                correct += int((logits.data.argmax(axis=1) == labels).sum())
                seen += batch
                bar.update(batch)
                bar.set_postfix(loss=f"{total_loss / seen:.4f}", acc=f"{correct / seen:.4f}",
                                img_s=f"{seen / (time.perf_counter() - start):.0f}")
        finally:
            bar.close()
        wall = time.perf_counter() - start
        return {"train_loss": total_loss / max(seen, 1), "train_accuracy": correct / max(seen, 1),
                "train_img_per_s": seen / wall, "train_wall_s": wall}

    def _loss(self, images: np.ndarray, logits: Tensor, labels: np.ndarray) -> Tensor:
        """The batch's loss: cross-entropy, or with a teacher the distillation loss against
        the teacher's logits on the same (augmented) images."""
        if self.teacher is None:
            return ops.cross_entropy(logits, labels)
        return distillation_loss(logits, teacher_logits(self.teacher, images), labels,
                                 self.distill)

    def fit(self, resume: bool = False, overwrite: bool = False) -> list[dict[str, Any]]:
        """Train for `config.epochs` epochs (continuing a saved run when `resume`).

        Args:
            resume: continue the run in `run_dir` after its last completed epoch (a fresh
                run if there is none).
            overwrite: start afresh even if `run_dir` holds a run, replacing its files once
                the new run has its first checkpoint (training/run_folder.py).

        Returns:
            The per-epoch history: dicts with epoch, train_loss, train_accuracy, test_accuracy,
            wall times and whatever the hooks add.

        Raises:
            RunExistsError: a fresh run (neither flag) in a folder that holds one.
            RunLockedError: another process is training in `run_dir`.
            TrainingDivergedError: the loss or the state became non-finite.
        """
        if self.run_dir is None:
            return self._train_epochs()
        with RunLock(self.run_dir):  # one process per run folder
            recover_replaced_run(self.run_dir, RUN_FILES)
            remove_stale_temporaries(self.run_dir)
            if resume and self._resume():
                self._write_log()
                print(f"resumed {self.run_dir} after epoch {self.epoch}/{self.config.epochs}")
            else:
                if resume and not overwrite and (self.run_dir / "best.npz").exists():
                    raise RunExistsError(
                        f"{self.run_dir} holds a best.npz but no last.npz to continue from; "
                        "--overwrite starts the run afresh (the old files are kept until "
                        "the new run's first checkpoint)")
                if not overwrite:
                    refuse_existing_run(self.run_dir)
                # a fresh run: nothing of an earlier run may be mistaken for this one's (a
                # stale best.npz), yet the earlier run is only set aside until this one has
                # a checkpoint (see training/run_folder.py)
                set_aside_run(self.run_dir, RUN_FILES)
            try:
                return self._train_epochs()
            except BaseException:
                recover_replaced_run(self.run_dir, RUN_FILES)  # only if nothing was saved
                raise

    def _train_epochs(self) -> list[dict[str, Any]]:
        """The epochs still to run, checkpointing after each (see `fit`)."""
        while self.epoch < self.config.epochs:
            epoch = self.epoch
            epoch_start = time.perf_counter()
            _call_hooks(self.hooks, "on_epoch_start", self, epoch)
            metrics: dict[str, Any] = {"epoch": epoch + 1}
            metrics.update(self.train_one_epoch(epoch))
            metrics["test_accuracy"] = evaluate(
                self.model, self.test_images, self.test_labels, self.config.eval_batch_size,
                progress=self.progress, desc=f"test {epoch + 1}")
            _call_hooks(self.hooks, "on_epoch_end", self, epoch, metrics)
            self._check_finite(epoch)
            metrics["epoch_wall_s"] = time.perf_counter() - epoch_start
            self.epoch += 1
            self.history.append(metrics)
            # a hook can veto an epoch as "best", e.g. iterative pruning before the final
            # sparsity is reached (an 8 %-sparse model must not win an 80 % experiment)
            eligible = metrics.setdefault("eligible_for_best", True)
            if eligible and metrics["test_accuracy"] > self.best_accuracy:
                self.best_accuracy = metrics["test_accuracy"]
                self._save_best(self.best_accuracy)
            self._save()
            if self.run_dir is not None:
                self._write_log()
            print(f"epoch {epoch + 1}/{self.config.epochs}: "
                      f"loss {metrics['train_loss']:.4f}  train acc "
                      f"{metrics['train_accuracy']:.4f}  test acc {metrics['test_accuracy']:.4f}"
                      f"  ({metrics['train_img_per_s']:.0f} img/s, "
                      f"{metrics['epoch_wall_s']:.0f} s)", flush=True)
        return self.history
