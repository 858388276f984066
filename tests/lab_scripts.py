"""The lab scripts of labs/ as modules, for tests that call their `main(argv)` in-process."""

from __future__ import annotations

import importlib.util
from types import ModuleType

from minitorch_compress.paths import REPO_ROOT


def load_lab_script(name: str) -> ModuleType:
    """Import ``labs/<name>.py`` as the module `name` (labs/ is not a package: loaded from its
    path, no sys.path edit)."""
    spec = importlib.util.spec_from_file_location(name, REPO_ROOT / "labs" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
