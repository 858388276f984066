"""The README says true things: how many lines each folder holds ("Reading the code"), and
what quick `reproduce` runs and how long it took."""

from __future__ import annotations

import re

from minitorch_compress.paths import REPO_ROOT
from minitorch_compress.reproduce import QUICK_EPOCHS, QUICK_SUBSET, QUICK_TEST_SUBSET

PACKAGE = REPO_ROOT / "minitorch_compress"


def _lines(folder: str) -> int:
    files = (PACKAGE.glob("*.py") if folder == "top level"
             else (PACKAGE / folder.strip("`/")).glob("*.py"))
    return sum(len(path.read_text().splitlines()) for path in files)


def test_the_line_counts_per_folder_are_true_within_15_percent():
    readme = (REPO_ROOT / "README.md").read_text()
    rows = re.findall(r"^\| (`[a-z_]+/`(?:, `[a-z_]+/`)*|top level) \| (\d+) \|", readme, re.M)
    assert len(rows) >= 12, "the table of folders is gone from the README"
    counted = {f.strip("`/") for folders, _ in rows for f in folders.split(", ")}
    assert counted >= {p.name for p in PACKAGE.iterdir()
                       if p.is_dir() and any(p.glob("*.py"))}, "a folder is missing"
    for folders, stated in rows:
        actual = sum(_lines(f) for f in folders.split(", "))
        assert abs(actual - int(stated)) <= 0.15 * actual, (folders, stated, actual)


def test_the_quick_mode_paragraph_names_reproduces_sizes_and_one_measured_time():
    """Issue #34, part 5: the README says how long the first command takes, in one sentence
    that names the commit it was measured at (so a new measurement changes one line), and the
    smoke sizes it describes are the ones `reproduce` passes to the labs."""
    readme = (REPO_ROOT / "README.md").read_text()
    text = " ".join(readme.split())
    times = re.findall(r"Quick mode takes \*\*(\d+) min (\d+) s\*\* \(measured from a fresh "
                       r"clone of `([0-9a-f]{7,40})` on ", text)
    assert len(times) == 1, "the quick-mode time is to be stated once, with its commit"
    assert len(re.findall(r"\d+ min \d+ s", text.split("## ")[0])) == 1
    epochs = f"{QUICK_EPOCHS} epoch" + ("s" if QUICK_EPOCHS > 1 else "")
    assert f"*smoke run* ({epochs} on {QUICK_SUBSET:,} training images, tested on the first " \
           f"{QUICK_TEST_SUBSET:,} test images" in text
