"""What is protected: no command destroys earlier work, every bad input is one line (exit 2),
and nothing non-finite is ever loaded or saved (README, "What is protected")."""

from __future__ import annotations

import json
import shutil
import warnings

import numpy as np
import pytest
from lab_scripts import load_lab_script
from test_torch_checkpoint import FakeStorage, FakeTensor, write_zip_pt

from minitorch_compress import cli, paths
from minitorch_compress.errors import CheckpointError
from minitorch_compress.experiments import common
from minitorch_compress.io.checkpoint import load_checkpoint, save_checkpoint, write_npz
from minitorch_compress.kernels import batchnorm
from minitorch_compress.models import pretrained, resnet20
from minitorch_compress.training import FinetuneConfig, Trainer
from minitorch_compress.training.trainer import RunExistsError, TrainingDivergedError

lab1_script, lab2_script = load_lab_script("lab1_sparse_linear"), load_lab_script("lab2_pruning")


def one_line_exit_2(capsys, call, *fragments):
    """Run `call`; it must end with exit status 2 and one line on stderr (no traceback)."""
    try:
        code = call()
    except SystemExit as stop:  # argparse usage errors
        code = stop.code
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    for fragment in fragments:
        assert fragment in err, err
    return err


def tiny_trainer(tiny_cifar, run_dir, epochs=2, hooks=(), lr=0.01):
    from minitorch_compress.nn import Conv2d, GlobalAvgPool2d, Linear, ReLU, Sequential

    model = Sequential(Conv2d(3, 4, 3, padding=1, rng=np.random.default_rng(0)), ReLU(),
                       GlobalAvgPool2d(), Linear(4, 10, rng=np.random.default_rng(1)))
    config = FinetuneConfig(epochs=epochs, batch_size=16, lr=lr)
    return Trainer(model, *tiny_cifar, config=config, hooks=hooks, run_dir=run_dir,
                   progress=False)


# ------------------------------------------------------------------------ 1. results/
def test_every_lab_writes_to_a_git_ignored_folder_by_default():
    ignored = (paths.REPO_ROOT / ".gitignore").read_text().splitlines()
    assert "results/local/" in ignored and "results/quick/" in ignored
    assert lab2_script.build_parser().parse_args([]).out_dir == paths.LOCAL_RESULTS_DIR
    assert lab1_script.parse_args([]).out_dir == paths.LOCAL_RESULTS_DIR  # not cwd-relative


def test_a_smoke_run_never_replaces_a_full_size_result(tmp_path, capsys, synthetic_cifar10_dir,
                                                        random_resnet20_weights):
    out = tmp_path / "results"
    out.mkdir()
    full = {"best_accuracy": 0.88, "_meta": {"smoke": False, "command": "python labs/..."}}
    (out / "lab2_c.json").write_text(json.dumps(full))
    argv = ["--part", "c", "--epochs", "1", "--subset", "64", "--test-subset", "32",
            "--data-dir", str(synthetic_cifar10_dir), "--weights", str(random_resnet20_weights),
            "--out-dir", str(out), "--run-root", str(tmp_path / "runs"), "--no-progress"]
    one_line_exit_2(capsys, lambda: lab2_script.main(argv), "holds a full-size result")
    assert json.loads((out / "lab2_c.json").read_text()) == full
    assert not (tmp_path / "runs").exists()  # refused before any work


# ------------------------------------------------------------------------ 2. run folders
def test_a_fresh_finetune_never_deletes_an_earlier_run(tmp_path, capsys, tiny_cifar,
                                                       synthetic_cifar10_dir,
                                                       random_resnet20_weights):
    run_dir = tmp_path / "run"
    tiny_trainer(tiny_cifar, run_dir, epochs=1).fit()
    before = {p.name: p.read_bytes() for p in run_dir.iterdir()}
    with pytest.raises(RunExistsError, match="--resume.*--overwrite"):
        tiny_trainer(tiny_cifar, run_dir, epochs=1).fit()
    assert {p.name: p.read_bytes() for p in run_dir.iterdir()} == before
    argv = ["finetune", "--data-dir", str(synthetic_cifar10_dir), "--weights",
            str(random_resnet20_weights), "--epochs", "1", "--run-dir", str(run_dir)]
    one_line_exit_2(capsys, lambda: cli.main(argv), "--resume", "--overwrite")
    assert {p.name: p.read_bytes() for p in run_dir.iterdir()} == before
    history = tiny_trainer(tiny_cifar, run_dir, epochs=1).fit(overwrite=True)  # explicit
    assert len(history) == 1


# ------------------------------------------------------------------------ 3. weights cache
@pytest.fixture
def cache_dir(tmp_path, monkeypatch):
    folder = tmp_path / "cache"
    monkeypatch.setattr(pretrained, "WEIGHTS_CACHE_DIR", folder)
    return folder


def _resnet20_pt(path, state):
    """A zip-format .pt of `state` (each tensor C-contiguous over its own storage)."""
    tensors = {}
    for i, (name, value) in enumerate(state.items()):
        value = np.array(value, order="C")  # (ascontiguousarray makes 0-d arrays 1-d)
        strides = tuple(s // value.itemsize for s in value.strides)
        tensors[name] = FakeTensor(FakeStorage(str(i), value), 0, value.shape, strides)
    return write_zip_pt(path, tensors)


def test_the_weights_cache_is_keyed_by_content_and_written_only_when_valid(tmp_path, cache_dir):
    state_a = resnet20(rng=np.random.default_rng(0)).state_dict()
    state_b = resnet20(rng=np.random.default_rng(1)).state_dict()
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    # two files of the same name and different content: two cache entries, no confusion
    a = _resnet20_pt(tmp_path / "a" / "pretrained_model.pt", state_a)
    b = _resnet20_pt(tmp_path / "b" / "pretrained_model.pt", state_b)
    got_a, got_b = pretrained.pretrained_state_dict(a), pretrained.pretrained_state_dict(b)
    assert len(list(cache_dir.iterdir())) == 2
    np.testing.assert_array_equal(got_a["final_fc.linear.weight"],
                                  state_a["final_fc.linear.weight"])
    np.testing.assert_array_equal(pretrained.pretrained_state_dict(a)["final_fc.linear.weight"],
                                  state_a["final_fc.linear.weight"])  # from the cache
    assert not np.array_equal(got_a["final_fc.linear.weight"], got_b["final_fc.linear.weight"])
    # an invalid file (wrong shape, or NaN) leaves nothing behind
    state_a["final_fc.linear.weight"] = np.zeros((100, 64), np.float32)
    with pytest.raises(CheckpointError, match="shape mismatch"):
        pretrained.pretrained_state_dict(_resnet20_pt(tmp_path / "wrong.pt", state_a))
    assert len(list(cache_dir.iterdir())) == 2


def test_a_damaged_weights_cache_entry_is_converted_again_not_a_dead_end(tmp_path, cache_dir,
                                                                         capsys):
    """The cache is the tool's own file: a truncated one used to make every command that names
    the .pt fail until the user found and deleted it."""
    state = resnet20(rng=np.random.default_rng(0)).state_dict()
    pt = _resnet20_pt(tmp_path / "pretrained_model.pt", state)
    pretrained.pretrained_state_dict(pt)
    (entry,) = cache_dir.iterdir()
    entry.write_bytes(entry.read_bytes()[:3000])
    got = pretrained.pretrained_state_dict(pt)
    assert "damaged" in capsys.readouterr().out
    np.testing.assert_array_equal(got["final_fc.linear.weight"], state["final_fc.linear.weight"])
    np.testing.assert_array_equal(  # and the entry is whole again
        pretrained.pretrained_state_dict(pt)["final_fc.linear.weight"],
        state["final_fc.linear.weight"])
    assert "damaged" not in capsys.readouterr().out


# ------------------------------------------------------------------------ 4. interrupted writes
def test_resume_cleans_stale_temporaries_and_rewrites_the_log(tmp_path, tiny_cifar):
    class StopBeforeEpoch3:
        def on_epoch_start(self, trainer, epoch):
            if epoch == 2:
                raise KeyboardInterrupt

    run_dir = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        tiny_trainer(tiny_cifar, run_dir, epochs=3, hooks=[StopBeforeEpoch3()]).fit()
    # what a SIGKILL during a checkpoint write leaves: a temp file, and a log line short
    (run_dir / ".last.npz.x1y2z3.tmp").write_bytes(b"\0" * 1000)
    lines = (run_dir / "log.jsonl").read_text().splitlines()
    (run_dir / "log.jsonl").write_text(lines[0] + "\n")
    trainer = tiny_trainer(tiny_cifar, run_dir, epochs=3)
    trainer.fit(resume=True)
    assert not list(run_dir.glob("*.tmp")) and not list(run_dir.glob(".*.tmp"))
    logged = [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]
    assert [e["epoch"] for e in logged] == [1, 2, 3]
    assert logged == json.loads(json.dumps(trainer.history))


# ------------------------------------------------------------------------ 5./6. non-finite
class _PoisonAtEpoch:
    """A hook that makes the model's state non-finite at the end of one epoch (as a
    diverging batch-norm running variance would)."""

    def __init__(self, epoch):
        self.epoch = epoch

    def on_epoch_end(self, trainer, epoch, metrics):
        if epoch + 1 == self.epoch:
            trainer.model[3].bias.data[0] = np.inf


def test_a_checkpoint_is_never_written_with_a_non_finite_value(tmp_path, tiny_cifar):
    run_dir = tmp_path / "run"
    with pytest.raises(TrainingDivergedError,
                       match=r"epoch 2 diverged.*last checkpoint, .*last.npz \(epoch 1\)"):
        tiny_trainer(tiny_cifar, run_dir, epochs=3, hooks=[_PoisonAtEpoch(2)]).fit()
    for name in ("last.npz", "best.npz"):
        arrays, meta = load_checkpoint(run_dir / name)
        assert meta["epoch"] == 1
        assert all(np.isfinite(a).all() for a in arrays.values() if a.dtype.kind == "f")


def test_a_huge_learning_rate_is_one_clear_error_without_numpy_warnings(tmp_path, tiny_cifar):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # numpy's overflow RuntimeWarning would raise here
        with pytest.raises(TrainingDivergedError, match="lower the learning rate"):
            tiny_trainer(tiny_cifar, tmp_path / "run", epochs=30, lr=1e8).fit()


def test_weights_with_nan_are_a_one_line_error_naming_the_tensor(tmp_path, capsys,
                                                                  synthetic_cifar10_dir):
    state = resnet20(rng=np.random.default_rng(0)).state_dict()
    state["body_op.2.conv1.0.conv.weight"][0, 0, 0, 0] = np.nan
    npz = tmp_path / "nan.npz"
    with open(npz, "wb") as f:
        write_npz(f, state)  # save_checkpoint itself would refuse to write it
    pt = _resnet20_pt(tmp_path / "nan.pt", state)
    for path in (npz, pt):
        argv = ["evaluate", "--data-dir", str(synthetic_cifar10_dir), "--weights", str(path)]
        one_line_exit_2(capsys, lambda a=argv: cli.main(a), "body_op.2.conv1.0.conv.weight",
                        "non-finite")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_relu_propagates_nan_as_pytorch_does(dtype):
    """ReLU used to map NaN to 0 (`not v > 0`), which hid NaN weights from the loss."""
    x = np.array([[[[np.nan, -1.0], [2.0, np.inf]]]], dtype)
    y = batchnorm.add_relu_forward(x, np.zeros_like(x))
    assert np.isnan(y[0, 0, 0, 0]) and y[0, 0, 0, 1] == 0 and y[0, 0, 1, 1] == np.inf
    one = np.ones(1)
    y = batchnorm.batchnorm_eval_forward(x, one, 0 * one, 0 * one, one, 1e-5, relu=True)
    assert np.isnan(y[0, 0, 0, 0]) and y[0, 0, 0, 1] == 0


# ------------------------------------------------------------------------ 7./10. bad values
@pytest.mark.parametrize("option,value", [
    ("--batch-size", "0"), ("--batch-size", "-1"), ("--lr", "-1"), ("--lr", "nan"),
    ("--epochs", "0"), ("--epochs", "-3"), ("--subset", "0"), ("--test-subset", "0"),
    ("--momentum", "1.5"), ("--weight-decay", "-1"), ("--epochs", "two"), ("--seed", "-1")])
def test_nonsense_finetune_options_are_one_line(capsys, option, value):
    one_line_exit_2(capsys, lambda: cli.main(["finetune", option, value]), option)


@pytest.mark.parametrize("argv", [["--epochs", "0"], ["--subset", "0"], ["--test-subset", "0"],
                                  ["--seed", "-1"]])
def test_nonsense_lab_options_are_one_line(capsys, argv):
    one_line_exit_2(capsys, lambda: lab2_script.main(["--part", "c", *argv]), argv[0])
    one_line_exit_2(capsys, lambda: cli.main(["evaluate", *argv[-2:]])
                    if argv[0] not in ("--epochs", "--seed") else cli.main(["finetune", *argv]),
                    argv[0])


def test_unwritable_output_folders_are_one_line_before_any_work(tmp_path, capsys,
                                                                synthetic_cifar10_dir,
                                                                random_resnet20_weights):
    a_file = tmp_path / "a_file"
    a_file.write_text("not a folder")
    data = ["--data-dir", str(synthetic_cifar10_dir), "--weights", str(random_resnet20_weights)]
    one_line_exit_2(capsys, lambda: cli.main(["finetune", *data, "--run-dir", str(a_file)]),
                    "is a file")
    one_line_exit_2(capsys, lambda: cli.main(["finetune", *data, "--run-dir",
                                              str(a_file / "below")]), "cannot be written")
    for option in ("--out-dir", "--run-root"):
        argv = ["--part", "c", "--epochs", "1", *data, option, str(a_file),
                "--run-root" if option == "--out-dir" else "--out-dir", str(tmp_path / "ok")]
        one_line_exit_2(capsys, lambda a=argv: lab2_script.main(a), option)
    one_line_exit_2(capsys, lambda: lab1_script.main(["--out-dir", str(a_file)]), "--out-dir")
    assert not list((tmp_path / "ok").rglob("*.json"))


# ------------------------------------------------------------------------ 11. smaller
def test_no_progress_hides_the_bars_but_not_the_epoch_lines(tmp_path, tiny_cifar, capsys):
    tiny_trainer(tiny_cifar, tmp_path / "run", epochs=2).fit()
    out = capsys.readouterr().out
    assert "epoch 1/2:" in out and "epoch 2/2:" in out


def test_the_top_level_help_names_every_command_and_options_have_help(capsys):
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    top = capsys.readouterr().out
    for command in ("evaluate", "finetune", "reproduce", "report", "snapshot"):
        assert command in top
    parser = cli.build_parser()
    finetune = parser._subparsers._group_actions[0].choices["finetune"]
    assert all(action.help for action in finetune._actions if action.dest != "help")


def test_evaluate_reads_no_training_batch(tmp_path, capsys, synthetic_cifar10_dir,
                                          random_resnet20_weights):
    data = tmp_path / "cifar-10-batches-py"
    shutil.copytree(synthetic_cifar10_dir, data)
    for i in range(1, 6):
        (data / f"data_batch_{i}").unlink()
    assert cli.main(["evaluate", "--data-dir", str(data), "--weights",
                     str(random_resnet20_weights), "--no-progress"]) == 0
    assert "test accuracy" in capsys.readouterr().out


def test_common_refusal_of_a_smoke_result_names_the_file(tmp_path):
    (tmp_path / "lab3_c.json").write_text(json.dumps({"_meta": {"smoke": False}}))
    with pytest.raises(Exception, match="lab3_c.json holds a full-size result"):
        common.refuse_smoke_over_full(tmp_path, "lab3_c", smoke=True)
    common.refuse_smoke_over_full(tmp_path, "lab3_c", smoke=False)  # publishing a full run


def test_save_checkpoint_refuses_what_the_loader_would_refuse(tmp_path):
    state = {"w": np.array([np.nan], np.float32)}
    with pytest.raises(CheckpointError, match="non-finite"):
        save_checkpoint(tmp_path / "x.npz", state, {})
    assert not list(tmp_path.iterdir())
