"""A damaged result file in a results folder is one line and exit 2, never a traceback."""

from __future__ import annotations

import pytest

from minitorch_compress.cli import main
from minitorch_compress.errors import MinitorchError
from minitorch_compress.results import read_json, read_result

DAMAGED = {
    "truncated": b'{"x": [1,',
    "not UTF-8": b"\xff\xfe{}",
    "nested too deeply": b"[" * 100_000 + b"]" * 100_000,
    "a list": b"[1, 2]",
}


@pytest.mark.parametrize("content", DAMAGED.values(), ids=DAMAGED.keys())
def test_a_damaged_result_file_is_a_one_line_error_naming_it(tmp_path, content):
    (tmp_path / "lab2_a.json").write_bytes(content)
    with pytest.raises(MinitorchError, match="lab2_a.json"):
        read_result(tmp_path, "lab2_a")
    with pytest.raises(MinitorchError, match="lab2_a.json"):
        read_json(tmp_path / "lab2_a.json")


# the summary reads lab2_a.json; only --all re-renders lab1.md from lab1.json
@pytest.mark.parametrize(("name", "every_page"),
                         [("lab2_a", False), ("lab2_a", True), ("lab1", True)])
def test_report_refuses_a_damaged_result_file_in_one_line(tmp_path, capsys, name, every_page):
    (tmp_path / f"{name}.json").write_bytes(DAMAGED["truncated"])
    status = main(["report", "--out-dir", str(tmp_path), *(["--all"] if every_page else [])])
    err = capsys.readouterr().err
    assert status == 2
    assert err.startswith("error: ") and err.count("\n") == 1 and f"{name}.json" in err
    assert not (tmp_path / "REPORT.md").exists()
