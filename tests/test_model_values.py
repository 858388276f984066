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


def test_a_channel_pruned_export_reads_back(tmp_path):
    from minitorch_compress.io.torch_export import write_torch_state_dict
    from minitorch_compress.models.resnet import ResNet20

    widths = (10, 12, 11, 31, 29, 27, 64, 64, 49)
    model = ResNet20(mid_channels=widths)
    path = tmp_path / "pruned.pt"
    write_torch_state_dict(path, model.state_dict())
    loaded = load_pretrained(path)
    assert tuple(b.conv1[0].conv.weight.shape[0] for b in loaded.body_op) == widths
    for (name, a), (_, b) in zip(model.state_dict().items(), loaded.state_dict().items(),
                                 strict=True):
        np.testing.assert_array_equal(a, b, err_msg=name)
