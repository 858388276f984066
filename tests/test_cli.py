"""The command line: user mistakes end in one clear line (exit 2), never a traceback."""

from __future__ import annotations

import json
import pickle
import zipfile

import numpy as np
import pytest
from lab_scripts import load_lab_script

from minitorch_compress.cli import main
from minitorch_compress.io.checkpoint import save_checkpoint
from minitorch_compress.models import resnet20


def run(argv, capsys):
    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.err.strip()


@pytest.fixture
def empty_data_dir(tmp_path, monkeypatch):
    monkeypatch.delenv("MINITORCH_DATA", raising=False)
    monkeypatch.chdir(tmp_path)
    folder = tmp_path / "nothing_here"
    folder.mkdir()
    return folder


def assert_one_line(code, err, *fragments):
    assert code == 2
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err
    for fragment in fragments:
        assert fragment in err, err


def test_missing_data_folder(empty_data_dir, capsys):
    code, err = run(["evaluate", "--data-dir", str(empty_data_dir)], capsys)
    assert_one_line(code, err, "--download")


def test_corrupt_checkpoint(tmp_path, capsys, synthetic_cifar10_dir):
    bad = tmp_path / "broken.pt"
    bad.write_bytes(b"PK\x03\x04 this is not really a zip archive")
    code, err = run(["evaluate", "--data-dir", str(synthetic_cifar10_dir), "--weights", str(bad)],
                    capsys)
    assert_one_line(code, err, "broken.pt")


def test_checkpoint_asking_for_a_foreign_global(tmp_path, capsys, synthetic_cifar10_dir):
    class Evil:
        def __reduce__(self):
            import os

            return (os.system, ("echo pwned > /dev/null",))

    path = tmp_path / "evil.pt"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("archive/data.pkl", pickle.dumps({"w": Evil()}, protocol=2))
    code, err = run(["evaluate", "--data-dir", str(synthetic_cifar10_dir), "--weights", str(path)],
                    capsys)
    assert_one_line(code, err, "system")


def test_state_dict_of_the_wrong_shape(tmp_path, capsys, synthetic_cifar10_dir):
    state = resnet20().state_dict()
    state["final_fc.linear.weight"] = np.zeros((100, 64), np.float32)
    path = tmp_path / "wrong.npz"
    save_checkpoint(path, state, {})
    code, err = run(["evaluate", "--data-dir", str(synthetic_cifar10_dir), "--weights", str(path)],
                    capsys)
    assert_one_line(code, err, "final_fc.linear.weight: checkpoint (100, 64) vs model (10, 64)")


def test_evaluate_and_finetune_run_on_tiny_data(tmp_path, capsys, synthetic_cifar10_dir,
                                                random_resnet20_weights):
    weights = random_resnet20_weights
    assert main(["evaluate", "--data-dir", str(synthetic_cifar10_dir), "--weights", str(weights),
                 "--no-progress"]) == 0
    assert "test accuracy:" in capsys.readouterr().out
    argv = ["finetune", "--data-dir", str(synthetic_cifar10_dir), "--weights", str(weights),
            "--epochs", "1", "--batch-size", "16", "--run-dir", str(tmp_path / "run"),
            "--no-progress"]
    assert main(argv) == 0
    assert (tmp_path / "run" / "best.npz").is_file()
    assert main([*argv, "--resume"]) == 0  # nothing left to do: resumes and stops
    assert "resumed" in capsys.readouterr().out


def test_snapshot_of_a_running_finetune_is_linked_from_the_report(tmp_path, capsys):
    run_dir, results = tmp_path / "runs" / "lab2_e", tmp_path / "results"
    run_dir.mkdir(parents=True)
    epochs = [
        {"epoch": 1, "train_loss": 0.5, "train_accuracy": 0.8, "test_accuracy": 0.85,
         "sparsity": 0.0, "sparsity_target": 0.4, "train_img_per_s": 300.0,
         "epoch_wall_s": 170.0, "eligible_for_best": False},
        {"epoch": 2, "train_loss": 0.4, "train_accuracy": 0.85, "test_accuracy": 0.84,
         "sparsity": 0.8, "sparsity_target": 0.8, "train_img_per_s": 310.0,
         "epoch_wall_s": 165.0, "eligible_for_best": True},
    ]
    (run_dir / "log.jsonl").write_text("".join(json.dumps(e) + "\n" for e in epochs))
    (run_dir / "provenance.json").write_text(json.dumps(
        {"command": "python labs/lab2_pruning.py --part e --resume", "commit": "abc1234",
         "epochs": 4}))
    assert main(["snapshot", str(run_dir), "--out-dir", str(results)]) == 0
    page = (results / "lab2_e_in_progress.md").read_text()
    assert "**2 of 4 epochs**" in page
    assert "python labs/lab2_pruning.py --part e --resume" in page
    # epoch 1 scored higher but may not be reported (its mask was not final)
    assert "**0.8400** at epoch 2" in page
    assert "| 1 | 0.40 | 0.5000 | 0.8000 | 0.8500 | 0.0000 | 300 | 170 | no |" in page
    report = (results / "REPORT.md").read_text()
    assert "run in progress, see [lab2_e_in_progress.md](lab2_e_in_progress.md)" in report
    capsys.readouterr()

    empty = tmp_path / "runs" / "lab3_e"
    empty.mkdir()
    assert main(["snapshot", str(empty), "--out-dir", str(results)]) == 2
    assert "has no finished epoch yet" in capsys.readouterr().err


def test_compress_and_export_never_replace_what_they_did_not_make(tmp_path, capsys,
                                                                  random_resnet20_weights):
    """Issue #34: --out that exists needs --overwrite; a tracked file of the repository or the
    command's own input is refused even then; all before any work."""
    from minitorch_compress.paths import REPO_ROOT

    existing = tmp_path / "m.mtc"
    existing.write_bytes(b"mine")
    weights = str(random_resnet20_weights)
    for argv in (["compress", "--weights", weights, "--out", str(existing)],
                 ["export", "--weights", weights, "--out", str(tmp_path / "x.pt")]):
        if argv[0] == "export":
            (tmp_path / "x.pt").write_bytes(b"mine")
        assert main(argv) == 2
        assert "already exists; add --overwrite" in capsys.readouterr().err
    assert existing.read_bytes() == b"mine" and (tmp_path / "x.pt").read_bytes() == b"mine"
    committed = REPO_ROOT / "results" / "models" / "lab2_c.mtc"
    for argv in (["compress", "--prune", "0.9", "--weights", weights, "--out", str(committed),
                  "--overwrite"],
                 ["export", "--weights", weights, "--out", str(REPO_ROOT / "README.md"),
                  "--overwrite"]):
        assert main(argv) == 2
        assert "is a file of the repository" in capsys.readouterr().err
    assert main(["export", "--weights", str(existing), "--out", str(existing),
                 "--overwrite"]) == 2
    assert "also this command's input" in capsys.readouterr().err
    assert main(["compress", "--weights", weights, "--prune", "0.5", "--out", str(existing),
                 "--overwrite"]) == 0
    assert existing.read_bytes()[:8] != b"mine"


def test_a_file_name_too_long_is_one_line(tmp_path, capsys, random_resnet20_weights):
    assert main(["compress", "--weights", str(random_resnet20_weights), "--out",
                 str(tmp_path / ("a" * 300 + ".mtc"))]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: File name too long") and err.count("\n") == 1


def test_snapshot_of_a_command_line_finetune(tmp_path, capsys, synthetic_cifar10_dir,
                                             random_resnet20_weights):
    """Issue #34: the snapshot of a CLI finetune showed '1 of ? epochs', command '?', and
    promised a result JSON that a CLI finetune never writes."""
    run_dir = tmp_path / "try"
    argv = ["finetune", "--data-dir", str(synthetic_cifar10_dir), "--weights",
            str(random_resnet20_weights), "--epochs", "1", "--batch-size", "16", "--run-dir",
            str(run_dir), "--no-progress"]
    assert main(argv) == 0
    assert main(["snapshot", str(run_dir), "--out-dir", str(tmp_path / "results")]) == 0
    page = (tmp_path / "results" / "try_in_progress.md").read_text()
    assert "**1 of 1 epochs**" in page
    assert "python -m minitorch_compress finetune --data-dir" in page
    assert "try.json" not in page and "`best.npz` is its result" in page
    capsys.readouterr()


@pytest.mark.parametrize("line", [
    b"{not json", b"[1, 2]", b'{"epoch": 1}', b'{"epoch": 1, "test_accuracy": "x"}',
    b'{"epoch": 1, "test_accuracy": 0.5, "train_loss": "x"}', b'{"epoch": 0, "test_accuracy": 0.5}',
    b'{"epoch": 1, "test_accuracy": NaN}', b"\xff\xfe{}", b"[" * 100_000])
def test_snapshot_skips_a_malformed_log_line_with_a_warning(tmp_path, capsys, line):
    """Issue #34, part 3: a malformed log.jsonl line is skipped with a one-line warning (and a
    log with no good line is one error line), never a traceback."""
    run_dir = tmp_path / "lab2_e"
    run_dir.mkdir()
    good = json.dumps({"epoch": 1, "test_accuracy": 0.85, "train_loss": 0.5}).encode()
    (run_dir / "log.jsonl").write_bytes(line + b"\n" + good + b"\n")
    (run_dir / "provenance.json").write_bytes(line)  # unreadable too: '?' shown
    assert main(["snapshot", str(run_dir), "--out-dir", str(tmp_path / "results")]) == 0
    err = capsys.readouterr().err
    assert "log.jsonl line 1" in err and "skipped" in err and "Traceback" not in err
    page = (tmp_path / "results" / "lab2_e_in_progress.md").read_text()
    assert "**1 of ? epochs**" in page and "| 1 |" in page

    (run_dir / "log.jsonl").write_bytes(line + b"\n")
    code, err = run(["snapshot", str(run_dir), "--out-dir", str(tmp_path / "results")], capsys)
    assert code == 2 and err.splitlines()[-1].startswith("error: ")
    assert "has no finished epoch yet" in err and "Traceback" not in err


def test_snapshot_of_a_folder_whose_name_is_not_utf8(tmp_path, capsys):
    run_dir = tmp_path / b"run\xff".decode("utf-8", "surrogateescape")
    run_dir.mkdir()
    (run_dir / "log.jsonl").write_text(json.dumps({"epoch": 1, "test_accuracy": 0.5}) + "\n")
    code, err = run(["snapshot", str(run_dir), "--out-dir", str(tmp_path / "results")], capsys)
    assert_one_line(code, err, "not valid UTF-8", "--name")
    assert main(["snapshot", str(run_dir), "--name", "run", "--out-dir",
                 str(tmp_path / "results")]) == 0
    assert (tmp_path / "results" / "run_in_progress.md").is_file()


def test_a_batch_larger_than_memory_is_refused_before_training(tmp_path, capsys, monkeypatch,
                                                                 synthetic_cifar10_dir,
                                                                 random_resnet20_weights):
    """Issue #34, part 3: a huge --batch-size ended in a MemoryError traceback in the first
    step; it is refused in one line before any batch is allocated (the memory is made small
    here so that the synthetic data set's batch is too big)."""
    from minitorch_compress.training import batch_memory

    monkeypatch.setattr(batch_memory, "available_memory", lambda: 50 * 2**20)
    argv = ["finetune", "--data-dir", str(synthetic_cifar10_dir), "--weights",
            str(random_resnet20_weights), "--epochs", "1", "--run-dir", str(tmp_path / "run"),
            "--no-progress"]
    code, err = run([*argv, "--batch-size", str(10**9)], capsys)
    assert_one_line(code, err, "--batch-size 1000000000", "GiB available", "use at most 16")
    assert not (tmp_path / "run" / "last.npz").exists()
    assert main([*argv, "--batch-size", "16"]) == 0  # 16 images x 3 MiB fit in 50 MiB


def _help(argv, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "1000")  # one help entry per line
    with pytest.raises(SystemExit) as exit_status:
        main([*argv, "--help"])
    assert exit_status.value.code == 0
    return " ".join(capsys.readouterr().out.split())


def test_help_texts_say_what_the_commands_do(capsys, monkeypatch):
    """Issue #34, part 6: the words of --help."""
    top = _help([], capsys, monkeypatch)
    assert "snapshot (each with its own --help)." in top and "models," in top  # not cut off
    reproduce_help = _help(["reproduce"], capsys, monkeypatch)
    assert "default: results/quick/, or results/local/ with --full" in reproduce_help
    evaluate_help = _help(["evaluate"], capsys, monkeypatch)
    assert "--subset" not in evaluate_help.replace("--test-subset", "")  # it reads no training
    assert ".mtc" in evaluate_help and "./weights/pretrained_model.pt" in evaluate_help
    assert "--subset" not in _help(["models"], capsys, monkeypatch).replace("--test-subset", "")
    report_help = _help(["report"], capsys, monkeypatch)
    for page in ("lab1", "lab2", "lab3", "compression", "lab4", "sparse", "lab5", "claims"):
        assert f"{page}.md" in report_help


def test_inspect_columns_fit_the_longest_name(tmp_path, capsys):
    """Issue #34, part 6: inspect's shape column ran into long tensor names."""
    from minitorch_compress.compression.pipeline import write_model_file

    path = tmp_path / "m.mtc"
    write_model_file(resnet20(), path)
    assert main(["inspect", str(path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    start = lines[1].index("shape")
    rows = [line for line in lines[2:] if line.split()[0].endswith("weight")]
    assert rows and all(row[start - 1] == " " and row[start] == "(" for row in rows)


def test_a_warning_is_one_line_without_file_and_line(capsys):
    """Issue #34, part 6: reproduce's output showed 'lab3.py:467: UserWarning: ...' and the
    source line; every command and lab script (all run through run_cli) prints one line."""
    import warnings

    from minitorch_compress.cli import run_cli

    def warns() -> int:
        warnings.warn("runs/quick/lab2_c is a smoke run of Lab 2 (c), not the full recipe",
                      stacklevel=1)
        return 0

    assert run_cli(warns) == 0
    assert capsys.readouterr().err == ("warning: runs/quick/lab2_c is a smoke run of Lab 2 "
                                       "(c), not the full recipe\n")


def test_a_new_users_bad_inputs_are_one_line(tmp_path, capsys):
    """Issue #34's hostile pass, again: each of these tracebacked, wrote outside the results
    folder, or wrote a file of the wrong kind."""
    from minitorch_compress.compression.pipeline import write_model_file

    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "log.jsonl").write_text(json.dumps({"epoch": 1, "test_accuracy": 0.5}) + "\n")
    results = tmp_path / "results"
    code, err = run(["snapshot", str(run_dir), "--name", "../escaped", "--out-dir",
                     str(results)], capsys)
    assert_one_line(code, err, "is a path, not a result name")
    assert not (tmp_path / "escaped_in_progress.md").exists()
    a_file = tmp_path / "a_file"
    a_file.write_text("")
    code, err = run(["snapshot", str(run_dir), "--out-dir", str(a_file)], capsys)
    assert_one_line(code, err, "is a file, not a folder")
    code, err = run(["report", "--out-dir", str(tmp_path / "missing")], capsys)
    assert_one_line(code, err, "is not a folder")
    assert not (tmp_path / "missing").exists()
    empty = tmp_path / "empty"
    empty.mkdir()
    code, err = run(["report", "--all", "--out-dir", str(empty)], capsys)
    assert_one_line(code, err, "holds no result files", "reproduce")
    assert list(empty.iterdir()) == []  # no lab3.md, no REPORT.md of blanks
    model = tmp_path / "m.mtc"
    write_model_file(resnet20(), model)
    code, err = run(["export", "--weights", str(model), "--out", str(tmp_path / "m.txt")],
                    capsys)
    assert_one_line(code, err, "ends in .pt")
    assert not (tmp_path / "m.txt").exists()


def test_lab1_refuses_more_steps_than_memory_and_time_allow(tmp_path, capsys):
    lab1_script = load_lab_script("lab1_sparse_linear")
    code = lab1_script.main(["--steps", str(10**14), "--out-dir", str(tmp_path)])
    assert_one_line(code, capsys.readouterr().err.strip(), "steps must be a whole number from 1")
    assert not list(tmp_path.iterdir())
