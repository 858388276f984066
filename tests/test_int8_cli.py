"""`evaluate --int8`, `compress --int8`, `inspect` and `labs/lab3_int8.py` on a tiny synthetic
CIFAR-10 and random weights: the integer paths run, say where their activation ranges come
from, and refuse bad combinations in one line."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from minitorch_compress.cli import main
from minitorch_compress.compression.pipeline import compress_model, write_model_file
from minitorch_compress.experiments import int8
from minitorch_compress.io import mtc
from minitorch_compress.io.checkpoint import save_checkpoint
from minitorch_compress.models.pretrained import load_pretrained
from minitorch_compress.models.resnet import ResNet20


def run(argv, capsys):
    try:
        code = main(argv)
    except SystemExit as stop:  # argparse's own one-line refusals
        code = stop.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err.strip()


@pytest.fixture(scope="module")
def narrow_weights(tmp_path_factory):
    """A random ResNet-20 with narrow blocks (its files are written in a second) as .npz."""
    path = tmp_path_factory.mktemp("int8_weights") / "narrow.npz"
    model = ResNet20(rng=np.random.default_rng(0), mid_channels=[2, 3, 2, 4, 2, 3, 4, 2, 3])
    save_checkpoint(path, model.state_dict(), {})
    return path


@pytest.fixture(scope="module")
def int8_file(tmp_path_factory, synthetic_cifar10_dir, narrow_weights):
    """`compress --int8` of the random weights, pruned and at 2 bits (a Lab 3-like grid)."""
    out = tmp_path_factory.mktemp("int8_cli") / "small.mtc"
    code = main(["compress", "--weights", str(narrow_weights), "--prune", "0.5",
                 "--bits", "2", "--int8", "--calibration-images", "16",
                 "--data-dir", str(synthetic_cifar10_dir), "--out", str(out)])
    assert code == 0
    return out


def test_compress_int8_stores_ranges_that_inspect_and_evaluate_use(int8_file, capsys,
                                                                   synthetic_cifar10_dir):
    code, out, _ = run(["inspect", str(int8_file)], capsys)
    assert code == 0
    assert "activation ranges by percentile on the first 16 CIFAR-10 training images" in out
    integer_part = out.split("integer inference:")[1].splitlines()
    lines = {line.split()[0]: line for line in integer_part if line.startswith("body_op")}
    assert "grid2" in lines["body_op.0.conv1"]  # the 2-bit levels, used as they are
    assert len([n for n in lines if n.startswith("body_op.3.")]) == 3  # conv1, 1x1, conv2
    code, out, _ = run(["evaluate", "--weights", str(int8_file), "--int8", "--data-dir",
                        str(synthetic_cifar10_dir), "--test-subset", "16"], capsys)
    assert code == 0
    assert out.splitlines()[0].startswith("activation ranges from the file (percentile")
    assert "int8 test accuracy:" in out and "(16 images" in out


def test_evaluate_int8_calibrates_a_file_without_ranges(capsys, synthetic_cifar10_dir,
                                                        narrow_weights):
    code, out, _ = run(["evaluate", "--weights", str(narrow_weights), "--int8",
                        "--calibration-images", "8", "--calibration", "minmax",
                        "--data-dir", str(synthetic_cifar10_dir), "--test-subset", "8"],
                       capsys)
    assert code == 0
    first = out.splitlines()[0]
    assert "has no activation ranges: calibrated on the first 8 training images (minmax)" \
        in first


def test_inspect_says_when_a_file_has_no_ranges(tmp_path, capsys, narrow_weights):
    plain = tmp_path / "plain.mtc"
    mtc.save(plain, load_pretrained(narrow_weights), compress=())
    code, out, _ = run(["inspect", str(plain)], capsys)
    assert code == 0 and "no activation ranges for integer inference" in out


@pytest.mark.parametrize("argv,fragment", [
    (["evaluate", "--int8", "--sparse"], "--int8 and --sparse"),
    (["evaluate", "--calibration-images", "5"], "--calibration-images is an option of --int8"),
    (["evaluate", "--calibration", "minmax"], "--calibration is an option of --int8"),
    (["compress", "--data-dir", "x", "--out", "o.mtc"], "--data-dir is an option of --int8"),
    (["evaluate", "--int8", "--calibration-images", "0"], "--calibration-images"),
])
def test_bad_int8_combinations_are_one_line_errors(argv, fragment, capsys, tmp_path,
                                                   monkeypatch, synthetic_cifar10_dir):
    monkeypatch.chdir(tmp_path)
    if argv[0] == "evaluate":
        argv = [*argv, "--data-dir", str(synthetic_cifar10_dir)]
    code, _, err = run(argv, capsys)
    assert code == 2 and "error: " in err and "\n" not in err and "Traceback" not in err
    assert fragment in err, err


def test_stored_ranges_refuse_a_second_calibration(int8_file, capsys, synthetic_cifar10_dir):
    code, _, err = run(["evaluate", "--weights", str(int8_file), "--int8", "--calibration",
                        "minmax", "--data-dir", str(synthetic_cifar10_dir)], capsys)
    assert code == 2 and "stores its activation ranges" in err


def test_the_experiment_measures_every_model_and_renders_its_page(
        tmp_path, synthetic_cifar10_dir, narrow_weights):
    """The pretrained stand-in and a Lab 3-like file (a 2-bit grid with a table value in
    lab3_d.json); the page is rendered from the JSON written."""
    models = tmp_path / "models"
    model = compress_model(load_pretrained(narrow_weights), 0.5, 2, "masked")
    write_model_file(model, models / "lab3_d_2bit.mtc")
    (tmp_path / "lab3_d.json").write_text(json.dumps({"after": {"2": 0.125}}))
    options = int8.Int8Options(data_dir=synthetic_cifar10_dir, weights=narrow_weights,
                               out_dir=tmp_path, test_subset=24, calibration_images=16,
                               no_progress=True)
    assert [e.name for e in int8.models_to_run(options)] == ["pretrained", "lab3_d_2bit"]
    payload = int8.run(options)
    row = payload["models"]["lab3_d_2bit"]
    assert row["table_accuracy"] == 0.125 and row["body_on_grid"]
    assert row["weight_kinds"]["grid2"] == 20
    assert payload["models"]["pretrained"]["weight_kinds"] == {"s8": 21}
    assert len(payload["layers"]) == 21
    assert payload["layers"][0]["macs"] == 16 * 3 * 9 * 32 * 32
    assert payload["layers"][1]["weights"] == [2, 16, 3, 3]  # body_op.0.conv1, narrow
    assert [r["output"][1] for r in payload["layers"]][-1] == 8
    written = json.loads((tmp_path / "int8.json").read_text())
    assert written["_meta"]["smoke"] is True and written["test_images"] == 24
    from minitorch_compress.reports import int8 as report

    page = report.write_report(tmp_path).read_text()
    assert "lab3_d_2bit" in page and "grid2 x20" in page
    again = dataclasses.replace(options, resume=True)
    assert int8.reusable(again, int8.models_to_run(again)) == written  # nothing to redo
    other = dataclasses.replace(again, calibration_images=8)
    assert int8.reusable(other, int8.models_to_run(other)) is None  # calibrated otherwise
    with pytest.raises(Exception, match="--only lab3_x"):
        int8.models_to_run(int8.Int8Options(out_dir=tmp_path, only=("lab3_x",)))
    assert np.isfinite(row["int8_accuracy"])
