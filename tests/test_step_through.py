"""The stepping path: labs/step_through.py runs, and the README's pdb commands, run as written
from the repository root, stop in the function they name."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "labs" / "step_through.py"


def _env(**extra: str) -> dict[str, str]:
    return dict(os.environ, NUMBA_DISABLE_JIT="1", MINITORCH_NUM_THREADS="1", **extra)


def _readme_pdb_commands() -> list[list[str]]:
    """The ``python -m pdb`` commands of the README's stepping section, as argument lists
    (leading ``VAR=value`` words become part of the environment, see `_run_command`)."""
    text = (ROOT / "README.md").read_text()
    section = text[text.index("### Stepping through the code"):]
    section = section[:section.index("\n### ", 1)]
    blocks = re.findall(r"```bash\n(.*?)```", section, flags=re.DOTALL)
    commands = [shlex.split(block.replace("\\\n", " ")) for block in blocks]
    return [c for c in commands if "pdb" in c]


def _run_command(words: list[str], stdin: str) -> subprocess.CompletedProcess:
    env = dict(os.environ)  # nothing but what the README's command sets
    env.pop("NUMBA_DISABLE_JIT", None)
    while "=" in words[0]:  # VAR=value prefixes
        name, value = words[0].split("=", 1)
        env[name] = value
        words = words[1:]
    assert words[0] == "python"
    return subprocess.run([sys.executable, *words[1:]], cwd=ROOT, env=env, input=stdin,
                          capture_output=True, text=True, timeout=300)


def test_the_script_runs_a_step_on_the_reference_kernels_and_prints_each_shape():
    out = subprocess.run([sys.executable, str(SCRIPT)], cwd=ROOT, env=_env(),
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    shapes = dict(re.findall(r"^(\S+)\s+(\([\d, ]+\))", out.stdout, flags=re.MULTILINE))
    assert shapes["input"] == "(2, 3, 32, 32)"
    assert shapes["head_conv"] == "(2, 16, 32, 32)"
    assert shapes["body_op.3"] == "(2, 32, 16, 16)"
    assert shapes["body_op.8"] == "(2, 64, 8, 8)"
    assert shapes["final_fc"] == "(2, 10)"
    moved = float(re.search(r"SGD step moved it by ([\d.]+)", out.stdout).group(1))
    assert moved > 0


def test_a_bad_option_is_one_line():
    out = subprocess.run([sys.executable, str(SCRIPT), "--kernels", "slow"], cwd=ROOT,
                         env=_env(), capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and out.stderr.count("\n") == 1
    assert "invalid choice: 'slow'" in out.stderr


def test_the_readme_has_a_reference_and_a_fast_stepping_command():
    targets = [next(w for w in c if w.startswith("b ")) for c in _readme_pdb_commands()]
    assert targets == ["b minitorch_compress.kernels.reference.conv2d_forward",
                       "b minitorch_compress.kernels.direct_conv_tiled._tiled3x3"]


@pytest.mark.parametrize("which, stdin, stop, printed", [
    (0, "where\np x.shape, w.shape\nq\n", r"kernels/reference\.py\(\d+\)conv2d_forward\(\)",
     "((2, 3, 32, 32), (16, 3, 3, 3))"),
    (1, "where\np x.shape, w9.shape\nq\n",
     r"kernels/direct_conv_tiled\.py\(\d+\)_tiled3x3\(\)", "((2, 3, 8, 8), (16, 27))"),
])
def test_the_readme_pdb_command_stops_in_the_named_function(which, stdin, stop, printed):
    out = _run_command(_readme_pdb_commands()[which], stdin)
    current = [line for line in out.stdout.splitlines() if line.startswith("> ")]
    assert current and re.search(stop, current[0]), out.stdout[-3000:]
    assert "ops/conv.py" in out.stdout  # `where` shows the way down through the op
    assert printed in out.stdout
    assert "The program finished" not in out.stdout
