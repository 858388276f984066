"""Result files as the experiments write them and the reports read them: reading one, looking
a number up in it, and the commit a result was made at.

It imports nothing of the package but `paths` and `errors`, so a report that reads results
loads no kernel and no training code.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from minitorch_compress.errors import MinitorchError
from minitorch_compress.paths import REPO_ROOT


def read_json(path: Path) -> dict[str, Any]:
    """The JSON object in `path`; a file that is not one (truncated, not UTF-8, nested too
    deeply, a list) is a one-line MinitorchError naming it, not a traceback."""
    try:
        document = json.loads(Path(path).read_text(encoding="utf-8"))
    except (ValueError, RecursionError) as exc:  # JSONDecodeError, UnicodeDecodeError
        raise MinitorchError(f"{path} is not a readable result file ({type(exc).__name__}); "
                             "delete it, or rerun the lab that writes it") from None
    if not isinstance(document, dict):
        raise MinitorchError(f"{path} is not a result file (it holds a "
                             f"{type(document).__name__}, not a JSON object); delete it, or "
                             "rerun the lab that writes it")
    return document


def read_result(out_dir: Path, name: str) -> dict[str, Any] | None:
    """The JSON ``out_dir/name.json`` (as `experiments.common.write_result` writes it), or
    None when that part has not been run."""
    path = Path(out_dir) / f"{name}.json"
    return read_json(path) if path.is_file() else None


def lookup(document: dict[str, Any] | None, path: Sequence[str]) -> float | None:
    """The number at `path` in a result document (e.g. ("after", "4")), or None."""
    value: Any = document
    for key in path:
        if not isinstance(value, dict) or key not in value:
            return None
        value = value[key]
    return float(value) if isinstance(value, (int, float)) else None


def git_commit(scope: Sequence[str] = (".", ":(exclude)results"),
               dirty_note: str = "+dirty") -> str:
    """The current commit, with `dirty_note` appended when tracked files in `scope` (git
    pathspecs) are modified; "unknown" outside a git checkout.

    The default scope leaves out ``results/``: those are the outputs of runs like this one
    (an earlier part of the same lab rewrites its JSON and tables), not the code that ran.
    """
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO_ROOT,
                                capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--",
                                *scope],
                               cwd=REPO_ROOT, capture_output=True, text=True).stdout.strip()
        return commit + (dirty_note if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
