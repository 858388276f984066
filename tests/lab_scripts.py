"""The lab scripts of labs/ as modules, for tests that call their `main(argv)` in-process."""

from __future__ import annotations

import importlib.util
import sys
from types import ModuleType
from typing import Any

from minitorch_compress.paths import REPO_ROOT


def load_lab_script(name: str, monkeypatch: Any = None) -> ModuleType:
    """Import ``labs/<name>.py`` as the module `name` (labs/ is not a package: loaded from its
    path, no sys.path edit). With pytest's `monkeypatch` the module is also registered in
    sys.modules for the length of the test, as a script defining dataclasses needs while it
    executes."""
    spec = importlib.util.spec_from_file_location(name, REPO_ROOT / "labs" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    if monkeypatch is not None:
        monkeypatch.setitem(sys.modules, name, module)
    spec.loader.exec_module(module)
    return module
