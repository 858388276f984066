"""Where things live in a checkout: the one home of every repository-relative folder.

* ``results/``        the committed, published results (only written when asked:
                      ``--out-dir results``);
* ``results/local/``  where a lab or ``reproduce --full`` writes by default (git-ignored), so
                      running a command from the README never modifies a tracked file;
* ``results/quick/``  ``reproduce``'s quick mode (git-ignored);
* ``runs/``           finetuning checkpoints (git-ignored);
* ``weights/cache/``  pretrained checkpoints converted to ``.npz``, keyed by the SHA-256 of the
                      file they came from, and this CPU's sparse-conv break-evens
                      (``kernels/sparse_break_even.py``) (git-ignored).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

#: The checkout this package was installed from (editable install).
REPO_ROOT = Path(__file__).resolve().parents[1]
RESULTS_DIR = REPO_ROOT / "results"
LOCAL_RESULTS_DIR = RESULTS_DIR / "local"
QUICK_RESULTS_DIR = RESULTS_DIR / "quick"
RUNS_DIR = REPO_ROOT / "runs"
WEIGHTS_CACHE_DIR = REPO_ROOT / "weights" / "cache"


def is_published_dir(folder: Path) -> bool:
    """Whether `folder` is the committed ``results/`` folder itself."""
    try:
        return Path(folder).resolve() == RESULTS_DIR.resolve()
    except OSError:
        return False


def shown(path: str | Path) -> str:
    """`path` as recorded in result files and printed: relative to the repository root when
    it lies inside the checkout (so the record works in any clone), else as given."""
    resolved = Path(path).resolve()
    return str(resolved.relative_to(REPO_ROOT)) if resolved.is_relative_to(REPO_ROOT) \
        else str(path)


def is_tracked(path: Path) -> bool:
    """Whether `path` is a file git tracks in this checkout (False outside one, or without
    git): commands that write a file the user names never replace one of these."""
    return _git_in_checkout(["ls-files", "--error-unmatch"], path) == 0


def is_in_working_tree(folder: Path) -> bool:
    """Whether files written into `folder` would show in `git status`: it lies inside this
    checkout and git does not ignore it (False outside a checkout, or without git). Quick
    runs write only into ignored folders (`results/quick/`, `results/local/`, `runs/`)."""
    # a probe name inside the folder: ignored exactly when the folder (or a parent) is
    status = _git_in_checkout(["check-ignore", "-q"], Path(folder) / ".minitorch-probe")
    return status == 1  # 0: ignored, 128: not a git checkout


def _git_in_checkout(command: list[str], path: str | Path) -> int | None:
    """Exit status of `git COMMAND -- PATH` run in the checkout; None when `path` lies outside
    it or git cannot run."""
    try:
        resolved = Path(path).resolve()
        resolved.relative_to(REPO_ROOT.resolve())
        return subprocess.run(["git", *command, "--", str(resolved)], cwd=REPO_ROOT,
                              capture_output=True, text=True).returncode
    except (OSError, ValueError):
        return None
