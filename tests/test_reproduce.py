"""The main job end to end: `python -m minitorch_compress reproduce` in quick mode.

Runs every lab script as a subprocess, exactly as the README's first command does, on a
synthetic CIFAR-10 folder and random weights (so it needs no ../shared), and checks that
every result file and the report appear.
"""

from __future__ import annotations

import json

import pytest

from minitorch_compress.cli import build_parser, main
from minitorch_compress.io import mtc
from minitorch_compress.models.pretrained import load_pretrained
from minitorch_compress.reproduce import lab_commands, run_lab


def test_quick_mode_runs_every_lab_and_writes_the_report(tmp_path, synthetic_cifar10_dir,
                                                         random_resnet20_weights, capsys):
    out_dir, run_root = tmp_path / "results", tmp_path / "runs"
    argv = ["reproduce", "--data-dir", str(synthetic_cifar10_dir),
            "--weights", str(random_resnet20_weights), "--subset", "32", "--test-subset", "32",
            "--out-dir", str(out_dir), "--run-root", str(run_root), "--no-progress"]
    assert main(argv) == 0
    for name in ["lab1", "lab2_a", "lab2_b", "lab2_c", "lab2_d", "lab2_e", "lab3_b", "lab3_c",
                 "lab3_d", "lab3_e", "lab3_d_naive", "lab4_a", "lab4_b", "lab4_c", "lab4_d",
                 "lab4_e"]:
        assert (out_dir / f"{name}.json").is_file(), name
    smoke = json.loads((out_dir / "lab2_c.json").read_text())["_meta"]
    assert smoke["smoke"] is True
    report = (out_dir / "REPORT.md").read_text()
    assert "Quick mode" in report
    assert all(f"## Lab {n}" in report for n in (1, 2, 3, 4))
    assert "not run yet" not in report
    assert "**smoke run**" in report


def test_quick_mode_runs_every_lab_part_once_and_trims_only_repeats():
    """Issue #34, part 5: quick mode is to take under 3 minutes with every lab still there:
    every part of every lab runs, nothing twice, and what is trimmed is repetition (one
    width of the plain quantizer, one (e) method, two timed rounds)."""
    commands = lab_commands(build_parser().parse_args(["reproduce"]))
    parts = [(c[0], c[c.index("--part") + 1] if "--part" in c else "all",
              "--naive-quantizer" in c) for c in commands]
    assert len(parts) == len(set(parts))  # nothing run twice
    assert {(script, part) for script, part, _ in parts} >= {
        ("lab1_sparse_linear.py", "all"), *(("lab2_pruning.py", p) for p in "abcde"),
        *(("lab3_quantization.py", p) for p in "bcde"), ("lab4_structured.py", "all"),
        *(("lab5_claims.py", p) for p in "abc"), ("lab3_int8.py", "all")}
    lab4 = next(c for c in commands if c[0] == "lab4_structured.py")
    assert lab4[lab4.index("--methods") + 1:lab4.index("--methods") + 3][1].startswith("--")
    assert int(lab4[lab4.index("--speed-rounds") + 1]) < 5
    naive_d = next(c for c in commands if c[:3] == ["lab3_quantization.py", "--part", "d"]
                   and "--naive-quantizer" in c)
    assert naive_d[naive_d.index("--bits") + 1:naive_d.index("--bits") + 3][1].startswith("--")


def test_full_mode_resumes_and_never_writes_into_the_quick_folder():
    args = build_parser().parse_args(["reproduce", "--full"])
    commands = lab_commands(args)
    assert all("--resume" in c for c in commands if c[0] != "lab1_sparse_linear.py")
    assert all("quick" not in " ".join(c) for c in commands)
    quick = lab_commands(build_parser().parse_args(["reproduce"]))
    assert all(str(x).endswith("quick") for c in quick for i, x in enumerate(c)
               if i > 0 and c[i - 1] in ("--out-dir", "--run-root"))


def test_the_committed_reports_render_byte_identical_from_the_committed_json(tmp_path):
    """`report --all` on the committed JSON reproduces the committed pages exactly: a report
    is a pure function of its results (no time stamp, no machine path, no hand edits)."""
    import shutil

    from minitorch_compress.cli import main
    from minitorch_compress.paths import RESULTS_DIR

    for path in RESULTS_DIR.glob("*.json"):
        shutil.copy(path, tmp_path / path.name)
    assert main(["report", "--all", "--out-dir", str(tmp_path)]) == 0
    for page in ("lab1.md", "lab2.md", "lab3.md", "lab4.md", "compression.md", "sparse.md",
                 "lab5.md", "claims.md", "claims.json", "int8.md", "REPORT.md"):
        assert (tmp_path / page).read_text() == (RESULTS_DIR / page).read_text(), page


def test_the_summary_labels_say_what_was_run(tmp_path):
    """A 1-epoch smoke run on 2,000 test images is labelled as such, not "20 ep" and "all
    10,000 test images"."""
    import json

    from minitorch_compress.reports.summary import summary_table, write_report

    meta = {"smoke": True, "epochs": 1, "test_subset": 2000, "command": "python labs/x.py"}
    (tmp_path / "lab2_c.json").write_text(json.dumps({"best_accuracy": 0.3, "_meta": meta}))
    assert "| Lab 2 (c) prune 80 % + finetune (1 ep) | 0.3000 |" in summary_table(tmp_path)
    page = write_report(tmp_path, smoke=True).read_text()
    assert "on 2,000 test images" in page and "all 10,000" not in page


def test_each_bit_width_row_shows_its_own_run(tmp_path):
    """Lab 3 (d) runs one finetune per bit width, possibly by separate commands: each row of
    the summary shows that width's time and command, not the file's total and last."""
    import json

    from minitorch_compress.reports.summary import summary_table

    meta = {"epochs": 20, "command": "python labs/lab3_quantization.py --part d",
            "wall_s": 7000.0}
    result = {"after": {"4": 0.88, "2": 0.84}, "wall_s": {"4": 3300.0, "2": 3700.0},
              "run": {"4": {"command": "python labs/lab3_quantization.py --bits 4",
                            "commit": "abc1234"}}, "_meta": meta}
    (tmp_path / "lab3_d.json").write_text(json.dumps(result))
    rows = {line.split(" | ")[0]: line for line in summary_table(tmp_path).splitlines()}
    assert rows["| Lab 3 (d) 80 %-sparse + 4 bits, after finetune (20 ep)"].endswith(
        "3300 s |")
    assert rows["| Lab 3 (d) 80 %-sparse + 2 bits, after finetune (20 ep)"].endswith(
        "3700 s |")
    # and its own command where the file records it (else the file's last, from _meta)
    assert "--bits 4` @ `abc1234`" in rows["| Lab 3 (d) 80 %-sparse + 4 bits, after finetune "
                                         "(20 ep)"]
    assert "--part d` @ `?`" in rows["| Lab 3 (d) 80 %-sparse + 2 bits, after finetune (20 ep)"]
    assert "7000 s" not in summary_table(tmp_path)


def test_a_lab_run_in_process_ends_as_its_command_would(capsys):
    """reproduce runs each lab's main(argv) in its own process: a usage error is still the
    script's one line and exit status 2, not a SystemExit that ends reproduce."""
    assert run_lab(["lab2_pruning.py", "--part", "z"]) == 2
    assert "invalid choice: 'z'" in capsys.readouterr().err


def test_lab3_b_takes_its_float_row_from_lab2_a_instead_of_evaluating_again(
        tmp_path, synthetic_cifar10_dir, random_resnet20_weights):
    """Issue #34, part 5 (nothing evaluated twice): Lab 3 (b)'s float row is the pretrained
    model on the same test images, which Lab 2 (a) has just measured; it is read from
    lab2_a.json when that file measured the same weights on the same images, and evaluated
    when it did not."""
    from minitorch_compress.experiments import lab2, lab3

    common = {"data_dir": synthetic_cifar10_dir, "weights": random_resnet20_weights,
              "test_subset": 32, "out_dir": tmp_path, "run_root": tmp_path / "runs",
              "no_progress": True}
    lab2.run(lab2.Lab2Options(part="a", **common))
    path = tmp_path / "lab2_a.json"
    measured = json.loads(path.read_text())
    evaluated = measured["accuracy"]
    measured["accuracy"] = 0.123456  # no accuracy on 32 images: it can only come from the file
    path.write_text(json.dumps(measured))
    reused = lab3.part_b(lab3.Lab3Options(part="b", **common))
    assert reused["accuracy"]["float"] == 0.123456 and reused["float_from"] == "lab2_a.json"
    measured["accuracy"] = evaluated
    path.write_text(json.dumps(measured))
    for other in ({"test_subset": 16}, {"weights": None}):
        options = lab3.Lab3Options(part="b", **{**common, **other})
        assert lab3.lab2_float_accuracy(options, 16 if other.get("test_subset") else 32) \
            is None
    evaluated_here = lab3.part_b(lab3.Lab3Options(part="b", **{**common, "test_subset": 16}))
    assert evaluated_here["float_from"] is None
    assert (evaluated_here["accuracy"]["float"] * 16).is_integer()  # measured on 16 images


def test_missing_data_or_weights_are_refused_before_any_lab_runs(tmp_path, capsys,
                                                                 synthetic_cifar10_dir,
                                                                 random_resnet20_weights):
    """The README promises refusal before any work starts: a wrong --data-dir or --weights
    was found by Lab 2 (a), after Lab 1 had run and written its results."""
    out_dir = tmp_path / "results"
    for wrong in (["--data-dir", str(tmp_path / "nowhere"), "--weights",
                   str(random_resnet20_weights)],
                  ["--data-dir", str(synthetic_cifar10_dir), "--weights",
                   str(tmp_path / "none.pt")]):
        argv = ["reproduce", *wrong, "--out-dir", str(out_dir), "--run-root",
                str(tmp_path / "runs"), "--no-progress"]
        assert main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: ") and "\n" not in err
        assert not list(out_dir.glob("*.json"))


def test_data_or_weights_that_are_there_but_unreadable_are_refused_before_any_lab_runs(
        tmp_path, capsys, synthetic_cifar10_dir, random_resnet20_weights):
    """A --data-dir that is an empty file and a --weights that is not a model passed the
    existence check, so Lab 1 ran and wrote its results before Lab 2 (a) refused them."""
    out_dir = tmp_path / "results"
    (tmp_path / "empty.tar.gz").write_bytes(b"")
    (tmp_path / "junk.npz").write_bytes(b"not a zip file" * 50)
    folded = tmp_path / "folded.mtc"  # evaluates, but the labs' finetunes refuse it
    mtc.save(folded, load_pretrained(random_resnet20_weights), fold_batch_norm=True)
    for wrong in (["--data-dir", str(tmp_path / "empty.tar.gz"), "--weights",
                   str(random_resnet20_weights)],
                  ["--data-dir", str(synthetic_cifar10_dir), "--weights",
                   str(tmp_path / "junk.npz")],
                  ["--data-dir", str(synthetic_cifar10_dir), "--weights", str(folded)]):
        argv = ["reproduce", *wrong, "--out-dir", str(out_dir), "--run-root",
                str(tmp_path / "runs"), "--no-progress"]
        assert main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: ") and "\n" not in err
        assert not out_dir.exists() or not any(out_dir.iterdir())


def test_ctrl_c_in_a_lab_says_once_how_to_continue_reproduce(tmp_path, monkeypatch, capsys,
                                                             synthetic_cifar10_dir,
                                                             random_resnet20_weights):
    """Ctrl-C inside a lab run by reproduce: one line, naming reproduce (which takes no
    --resume), not the lab's "--resume" line as well; exit status 130 as after any Ctrl-C."""
    from minitorch_compress import reproduce
    from minitorch_compress.cli import RESUME_HINT, run_cli

    def interrupted() -> int:
        raise KeyboardInterrupt

    class InterruptedLab:  # a lab script's main: its arguments, then run_cli around the lab
        @staticmethod
        def main(argv):
            return run_cli(interrupted)

    monkeypatch.setattr(reproduce, "lab_script", lambda name: InterruptedLab)
    assert main(["reproduce", "--data-dir", str(synthetic_cifar10_dir), "--weights",
                 str(random_resnet20_weights), "--out-dir", str(tmp_path / "results"),
                 "--run-root", str(tmp_path / "runs"), "--no-progress"]) == 130
    err = capsys.readouterr().err.strip()
    assert err == f"interrupted: {reproduce.HOW_TO_CONTINUE}"
    assert run_cli(interrupted) == 130  # a lab script run by itself names --resume
    assert capsys.readouterr().err.strip() == f"interrupted: {RESUME_HINT}"
    assert "--resume" in RESUME_HINT


def test_folders_inside_the_checkout_that_git_would_list_are_refused(
        tmp_path, capsys, synthetic_cifar10_dir, random_resnet20_weights):
    """`reproduce --out-dir .` or `--out-dir results/lab2` wrote untracked files into the
    tracked tree (git status no longer clean); ignored folders stay allowed."""
    from minitorch_compress.paths import REPO_ROOT, is_in_working_tree
    if not (REPO_ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    assert is_in_working_tree(REPO_ROOT) and is_in_working_tree(REPO_ROOT / "results" / "x")
    assert not is_in_working_tree(REPO_ROOT / "results" / "quick")
    assert not is_in_working_tree(REPO_ROOT / "runs" / "quick")
    assert not is_in_working_tree(tmp_path)
    for option, folder in (("--out-dir", REPO_ROOT / "results" / "lab2_probe"),
                           ("--run-root", REPO_ROOT / "labs" / "runs_probe")):
        other = "--run-root" if option == "--out-dir" else "--out-dir"
        argv = ["reproduce", "--data-dir", str(synthetic_cifar10_dir), "--weights",
                str(random_resnet20_weights), option, str(folder), other,
                str(tmp_path / "other"), "--no-progress"]
        assert main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: ") and "\n" not in err and option in err
        assert not folder.exists()
