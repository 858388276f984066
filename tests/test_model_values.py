"""Silent wrong results refused (issue #34, part 4): a loaded model is validated as a model
(finite, batch-norm variances >= 0) and a run's checkpoint as a run of its recipe (epochs in
range). The tampered files are made here from a tiny model or run."""

from __future__ import annotations

import numpy as np
import pytest

from minitorch_compress.errors import CheckpointError
from minitorch_compress.io.checkpoint import load_checkpoint, save_checkpoint, write_npz
from minitorch_compress.models import resnet20
from minitorch_compress.models.pretrained import load_pretrained
from minitorch_compress.training import FinetuneConfig, Trainer


def _state_with(tmp_path, name: str, edit) -> str:
    state = {k: np.array(v) for k, v in resnet20(rng=np.random.default_rng(0))
             .state_dict().items()}
    edit(state[name])
    path = tmp_path / "edited.npz"
    with open(path, "wb") as f:
        write_npz(f, state)
    return str(path)


def test_negative_running_variance_is_refused(tmp_path):
    path = _state_with(tmp_path, "body_op.3.conv1.1.running_var",
                       lambda v: v.__setitem__(2, -0.5))
    with pytest.raises(CheckpointError, match="negative running variance"):
        load_pretrained(path)


def test_zero_running_variance_is_a_model(tmp_path):
    path = _state_with(tmp_path, "body_op.3.conv1.1.running_var",
                       lambda v: v.__setitem__(2, 0.0))
    assert load_pretrained(path) is not None


@pytest.mark.parametrize("field, value", [("epoch", -5), ("epoch", 9), ("epoch", "x"),
                                          ("epoch", True), ("best_accuracy", 3.0),
                                          ("history", "none")])
def test_tampered_progress_in_last_checkpoint_is_refused(tiny_cifar, tmp_path, field, value):
    train, test = tiny_cifar
    config = FinetuneConfig(epochs=2, batch_size=16, seed=7, eval_batch_size=16)
    Trainer(resnet20(), train, test, config, run_dir=tmp_path, progress=False).fit()
    arrays, meta = load_checkpoint(tmp_path / "last.npz")
    meta[field] = value
    save_checkpoint(tmp_path / "last.npz", arrays, meta)
    with pytest.raises(CheckpointError, match=field.replace("_", " ").split()[0]):
        Trainer(resnet20(), train, test, config, run_dir=tmp_path, progress=False).fit(
            resume=True)
