"""Lab 2 end to end on a synthetic CIFAR-10 and random weights, plus what the lab adds.

The end-to-end run uses a tiny official-format CIFAR-10 folder and a randomly initialised
ResNet-20 as ``--weights`` (conftest `synthetic_cifar10_dir`, `random_resnet20_weights`), so
it needs neither ../shared nor the course checkpoint. Its numbers mean nothing; the tests
check shapes, sparsity, files, resume and the "best only with the final mask" rule.
"""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
from lab_scripts import load_lab_script

from minitorch_compress.compression import IterativePruningHook, prunable_layers, sparsity_report
from minitorch_compress.errors import MinitorchError
from minitorch_compress.experiments import common, lab2
from minitorch_compress.io.checkpoint import load_checkpoint
from minitorch_compress.models import resnet20
from minitorch_compress.nn import Conv2d, GlobalAvgPool2d, Linear, ReLU, Sequential
from minitorch_compress.reports import format as report_format
from minitorch_compress.reports import lab2 as lab2_report
from minitorch_compress.training import FinetuneConfig, Trainer
from minitorch_compress.training.trainer import RunExistsError

EPOCHS = 2
FINETUNED = ("c", "d", "e")


@pytest.fixture(scope="module")
def smoke(tmp_path_factory, synthetic_cifar10_dir, random_resnet20_weights):
    """One `--part all` smoke run; returns its folders, options and a snapshot of its outputs."""
    root = tmp_path_factory.mktemp("lab2")
    out_dir, run_root = root / "results", root / "runs"
    argv = ["--data-dir", str(synthetic_cifar10_dir), "--weights", str(random_resnet20_weights),
            "--subset", "64", "--test-subset", "64", "--epochs", str(EPOCHS),
            "--out-dir", str(out_dir), "--run-root", str(run_root), "--no-progress"]
    script = load_lab_script("lab2_pruning")
    assert script.main(["--part", "all", *argv]) == 0
    snapshot = {p: (out_dir / f"lab2_{p}.json").read_text() for p in lab2.PARTS}
    checkpoints = {p: {f: (run_root / f"lab2_{p}" / f).read_bytes()
                       for f in ("best.npz", "last.npz", "log.jsonl")} for p in FINETUNED}
    return {"script": script, "argv": argv, "out": out_dir, "runs": run_root,
            "json": snapshot, "checkpoints": checkpoints}


def result(smoke, part: str) -> dict:
    return json.loads(smoke["json"][part])


def test_json_shapes(smoke):
    a = result(smoke, "a")
    assert isinstance(a["accuracy"], float) and 0.0 <= a["accuracy"] <= 1.0
    b = result(smoke, "b")
    assert set(b["accuracy"]) == {"0.4", "0.6", "0.8"}
    assert all(isinstance(v, float) for v in b["accuracy"].values())
    for q, total in b["total_sparsity"].items():  # one-shot pruning hits q in every layer
        assert total == pytest.approx(float(q), abs=1e-3)
    for part in FINETUNED:
        r = result(smoke, part)
        assert r["epochs"] == EPOCHS and len(r["history"]) == EPOCHS
        assert r["best_accuracy"] == max(h["test_accuracy"] for h in r["log"]
                                         if h["eligible_for_best"])
        assert r["final_accuracy"] == r["history"][-1]
        assert list(r["sparsity"]) == list(prunable_layers(resnet20()))
        assert isinstance(r["total_sparsity"], float) and r["wall_s"] > 0
    for part in lab2.PARTS:  # test subset 64 < 10,000: every part is a smoke result
        meta = result(smoke, part)["_meta"]
        assert meta["smoke"] is True and meta["command"] and meta["commit"]
    assert result(smoke, "a")["_meta"]["epochs"] is None  # (a)/(b) train nothing
    # the command is the lab's own, not pytest's, even though main(argv) ran in-process
    assert result(smoke, "c")["_meta"]["command"].startswith(
        "python labs/lab2_pruning.py --part all --data-dir ")
    assert result(smoke, "d")["prune_epochs"] == lab2.prune_epochs_for(EPOCHS) == 1


def _assert_about_80_percent(zeros: int, size: int, where: str, thresholds: int = 1) -> None:
    # q = 0.8 prunes ceil(0.8 (n - 1)) of n distinct magnitudes, within one weight of 0.8 n
    # per threshold (one per layer, or one global)
    assert abs(zeros - 0.8 * size) <= thresholds, f"{where}: {zeros} zeros of {size}"


@pytest.mark.parametrize("part", FINETUNED)
def test_best_models_are_80_percent_sparse(smoke, part):
    with pytest.warns(UserWarning, match="smoke run"):
        model, masks = lab2.load_sparse_best(smoke["runs"], part)
    layers = prunable_layers(model)
    assert set(masks) == set(layers)
    for name, layer in layers.items():
        assert np.all(layer.weight.data[masks[name] == 0] == 0), name  # the mask held
        if part in ("c", "d"):
            _assert_about_80_percent(int((layer.weight.data == 0).sum()), layer.weight.size,
                                     name)
    zeros = sum(int((layer.weight.data == 0).sum()) for layer in layers.values())
    _assert_about_80_percent(zeros, sum(layer.weight.size for layer in layers.values()), part,
                             thresholds=1 if part == "e" else len(layers))
    per_layer, total = sparsity_report(model)
    r = result(smoke, part)
    assert r["sparsity"] == pytest.approx(per_layer) and r["total_sparsity"] == pytest.approx(total)
    if part == "e":  # one global threshold: the layers end up unequally sparse
        assert max(per_layer.values()) - min(per_layer.values()) > 0.1


def test_report_and_figures(smoke):
    report = (smoke["out"] / "lab2.md").read_text()
    for needle in ("0.9151", "0.8790", "0.8739", "0.8868", "SMOKE", "not a reproduction",
                   "body_op.8.conv2.0.conv", "~0.16", "0.8000",
                   result(smoke, "c")["_meta"]["command"], result(smoke, "c")["_meta"]["commit"]):
        assert needle in report, needle
    for figure in ("accuracy_per_epoch", "pruning_fraction", "sparsity_c", "sparsity_d",
                   "sparsity_e"):
        path = smoke["out"] / "lab2" / f"{figure}.png"
        assert path.stat().st_size > 0 and f"lab2/{figure}.png" in report


def test_resume_after_a_finished_run_does_not_retrain(smoke):
    assert smoke["script"].main(["--part", "all", "--resume", *smoke["argv"]]) == 0
    for part in ("a", "b"):  # reused as they were
        assert (smoke["out"] / f"lab2_{part}.json").read_text() == smoke["json"][part]
    for part in FINETUNED:
        now = json.loads((smoke["out"] / f"lab2_{part}.json").read_text())
        before = result(smoke, part)
        assert now["history"] == before["history"] and now["log"] == before["log"]
        assert now["sparsity"] == before["sparsity"]
        for name, content in smoke["checkpoints"][part].items():
            assert (smoke["runs"] / f"lab2_{part}" / name).read_bytes() == content, name


def test_resume_with_other_data_is_refused(smoke, capsys):
    argv = [a if a != "64" else "32" for a in smoke["argv"]]  # --subset/--test-subset 32
    assert smoke["script"].main(["--part", "c", "--resume", *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "subset" in err and len(err.splitlines()) == 1


def test_missing_data_is_one_line(tmp_path, capsys):
    script = load_lab_script("lab2_pruning")
    assert script.main(["--part", "a", "--data-dir", str(tmp_path / "nowhere"),
                        "--out-dir", str(tmp_path)]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


def test_load_sparse_best_says_which_command_to_run(tmp_path):
    with pytest.raises(MinitorchError, match=r"python labs/lab2_pruning.py --part c"):
        lab2.load_sparse_best(tmp_path)
    with pytest.raises(MinitorchError, match="c, d or e"):
        lab2.load_sparse_best(tmp_path, "b")


def test_report_without_results(tmp_path):
    text = lab2_report.write_report(tmp_path).read_text()
    assert "No part has been run yet" in text


@pytest.mark.parametrize(("epochs", "prune_epochs"),
                         [(20, 10), (30, 10), (19, 9), (4, 2), (3, 1), (2, 1), (1, 1)])
def test_smoke_runs_compress_the_iterative_schedule(epochs, prune_epochs):
    assert lab2.prune_epochs_for(epochs) == prune_epochs
    assert prune_epochs <= epochs  # the final mask is always reached within the run


def test_only_epochs_with_the_final_mask_can_be_best(tmp_path, tiny_cifar):
    """Before the last pruning step the model is less sparse: such epochs never win."""
    train, test = tiny_cifar
    rng = np.random.default_rng(0)
    model = Sequential(Conv2d(3, 6, 3, stride=2, padding=1, rng=rng), ReLU(), GlobalAvgPool2d(),
                       Linear(6, 10, rng=rng))
    pruning = IterativePruningHook(0.8, prune_epochs=2)
    trainer = Trainer(model, train, test, FinetuneConfig(epochs=3, batch_size=16, lr=0.05,
                                                         seed=1, eval_batch_size=32),
                      hooks=[pruning, lab2.BestOnlyWithFinalMask(pruning)], run_dir=tmp_path,
                      progress=False)
    history = trainer.fit()
    assert [h["eligible_for_best"] for h in history] == [False, True, True]
    assert trainer.best_accuracy == max(h["test_accuracy"] for h in history[1:])
    arrays, meta = load_checkpoint(tmp_path / "best.npz")
    assert meta["epoch"] >= 2 and any(k.startswith("hook.pruning.mask.") for k in arrays)
    weights = [arrays["model.0.weight"], arrays["model.3.weight"]]
    for name, w in zip(("conv", "linear"), weights, strict=True):
        _assert_about_80_percent(int((w == 0).sum()), w.size, name)


def test_a_fresh_run_never_deletes_an_old_one_silently_and_resume_keeps_it(tmp_path):
    run_dir = tmp_path / "lab2_d"
    run_dir.mkdir()
    for name in ("best.npz", "last.npz"):
        (run_dir / name).write_bytes(b"previous run")
    options = lab2.Lab2Options(run_root=tmp_path, resume=True, epochs=2, subset=8,
                               test_subset=8)
    common.prepare_run_dir(options, lab2.run_name("d"))  # resumable: nothing removed
    assert (run_dir / "best.npz").read_bytes() == b"previous run"
    options = replace(options, resume=False)
    with pytest.raises(RunExistsError, match="--resume.*--overwrite"):
        common.prepare_run_dir(options, lab2.run_name("d"))  # fresh, without --overwrite: refused
    assert (run_dir / "best.npz").read_bytes() == (run_dir / "last.npz").read_bytes()
    options = replace(options, overwrite=True)
    common.prepare_run_dir(options, lab2.run_name("d"))  # explicit: recorded, replaced by fit()
    assert json.loads((run_dir / "provenance.json").read_text())["train_subset"] == 8


def test_evaluations_are_smoke_only_on_a_cut_test_set():
    """(a)/(b) use neither --epochs nor --subset: on all 10,000 test images they are full."""
    options = lab2.Lab2Options(epochs=2, subset=64, argv=("--part", "all"))
    assert common.is_smoke(options) and not common.is_smoke(options, trains=False)
    meta = common.provenance(options, trains=False, script=lab2.SCRIPT)
    assert (meta["epochs"], meta["train_subset"], meta["smoke"]) == (None, 0, False)
    assert meta["command"] == "python labs/lab2_pruning.py --part all"
    assert common.is_smoke(replace(options, test_subset=100), trains=False)


@pytest.mark.parametrize(("best", "history", "best_epoch", "rising", "beyond_noise"), [
    (0.8835, [0.8800, 0.8820, 0.8835], 3, True, False),   # best at the end, still rising
    (0.8835, [0.8835, 0.8820, 0.8810], 1, False, False),  # best early: no trend claimed
    (0.8700, [0.8600, 0.8650, 0.8700], 3, True, True),    # 0.0168 short: beyond seed noise
])
def test_shortfall_note_reads_the_run_history(best, history, best_epoch, rising, beyond_noise):
    note = report_format.shortfall_note("(x)", best, 0.8868, history, best_epoch, 20,
                                 above="(y)", context="Extra.")
    gap = 0.8868 - best
    assert note.startswith(f"* (x) is {gap:.4f} below the published figure "
                           f"({gap * 10000:.0f} of 10,000")
    assert ("still rising" in note) == rising
    assert ("more than we would put down" in note) == beyond_noise
    assert "(our (y) came out above theirs)" in note and note.endswith(". Extra.")


def test_recorded_commands_hold_no_machine_path(tmp_path):
    """Options that name what the default search finds, or output folders outside the
    checkout, are left out of a recorded command; a path of the user's own stays."""
    from minitorch_compress.data.cifar10 import find_cifar10
    from minitorch_compress.models.pretrained import find_pretrained_checkpoint

    argv = ["--part", "c", "--run-root", str(tmp_path / "runs"), "--out-dir", "results"]
    try:
        argv += ["--data-dir", str(find_cifar10(None)), "--weights",
                 str(find_pretrained_checkpoint())]
    except MinitorchError:
        pass  # no shared data here: the folders alone are tested
    assert common.portable(argv) == ["--part", "c", "--out-dir", "results"]
    own = ["--weights", str(tmp_path / "mine.npz")]
    assert common.portable(own) == own


def test_parts_run_from_python_with_the_options_dataclass(tmp_path, synthetic_cifar10_dir,
                                                          random_resnet20_weights):
    """What a student types at a prompt: no script, no argparse; each part loads the data
    itself, returns its payload, and what it records names the options it ran with."""
    options = lab2.Lab2Options(data_dir=synthetic_cifar10_dir, weights=random_resnet20_weights,
                               test_subset=32, out_dir=tmp_path / "results",
                               run_root=tmp_path / "runs", no_progress=True)
    a = lab2.part_a(options)
    assert 0.0 <= a["accuracy"] <= 1.0 and a["test_images"] == 32
    b = lab2.part_b(options)
    assert set(b["accuracy"]) == set(lab2.FRACTIONS)
    assert b["total_sparsity"]["0.8"] == pytest.approx(0.8, abs=1e-3)

    c = lab2.part_c(replace(options, epochs=1, subset=64))
    assert c["epochs"] == 1 and len(c["history"]) == 1
    assert (c["train_images"], c["test_images"]) == (64, 32)
    assert c["total_sparsity"] == pytest.approx(0.8, abs=1e-3)
    assert (tmp_path / "results" / "models" / "lab2_c.mtc").is_file()
    started = json.loads((tmp_path / "runs" / "lab2_c" / "provenance.json").read_text())
    # built in Python, the run records the command that gives the same options
    assert started["command"].startswith("python labs/lab2_pruning.py ")
    assert "--epochs 1" in started["command"] and "--subset 64" in started["command"]
    assert (started["epochs"], started["train_subset"]) == (1, 64)
    assert started["options"]["epochs"] == 1 and started["options"]["part"] == "all"

    # `run` shares one data set between parts and writes each result with its options
    written = lab2.run(replace(options, part="a"))
    meta = json.loads((tmp_path / "results" / "lab2_a.json").read_text())["_meta"]
    assert written[0]["accuracy"] == a["accuracy"]
    assert "--part a" in meta["command"] and "--test-subset 32" in meta["command"]
    assert meta["options"] == {"subset": 0, "test_subset": 32, "part": "a", "epochs": 20,
                               "seed": 0, "resume": False, "overwrite": False}
    assert str(tmp_path) not in json.dumps(meta["options"])  # where-options are not recorded


def test_options_are_frozen_and_checked():
    options = lab2.Lab2Options(epochs=3)
    with pytest.raises(AttributeError):
        options.epochs = 4  # type: ignore[misc]
    assert replace(options, epochs=4).epochs == 4 and options.epochs == 3
    for bad in ({"epochs": 0}, {"part": "z"}, {"subset": -1}, {"test_subset": 0}):
        with pytest.raises(MinitorchError):
            lab2.Lab2Options(**bad)
    assert lab2.Lab2Options(part="c").parts() == ["c"]
    assert lab2.Lab2Options().parts() == list(lab2.PARTS)


def test_a_parts_headline_is_printed_to_4_decimals():
    """Issue #34, part 6: (b)'s accuracies were printed raw ({'0.4': 0.8766666666666667})."""
    assert lab2.headline_text({"accuracy": {"0.4": 263 / 300, "0.8": 0.5}}) == \
        "q = 0.4: 0.8767, q = 0.8: 0.5000"
    assert lab2.headline_text({"best_accuracy": 28 / 300}) == "0.0933"
