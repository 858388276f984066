"""The package's layers import one way, and a report renderer loads no kernel.

From the bottom: base utilities -> engine -> models, data, io, compression, training,
linear -> experiments -> reports -> command line (`LAYERS`). A module may import its own
layer and the layers below it, never one above; and it imports package modules at its top,
never inside a function, where an import that would close a cycle can hide.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

import minitorch_compress
from minitorch_compress.experiments import lab4_layout
from minitorch_compress.models import resnet

PACKAGE = "minitorch_compress"
PACKAGE_DIR = Path(minitorch_compress.__file__).resolve().parent

# Each layer, bottom first, as the first name after ``minitorch_compress.`` (the package's own
# __init__ re-exports the engine, so it sits with it).
LAYERS: list[tuple[str, set[str]]] = [
    ("base", {"errors", "paths", "published", "options", "recipe", "results"}),
    ("engine", {"", "autograd", "ops", "nn", "kernels", "optim"}),
    ("models, data, io, compression, training, linear",
     {"models", "data", "io", "compression", "training", "linear"}),
    ("experiments", {"experiments"}),
    ("reports", {"reports"}),
    ("command line", {"cli", "reproduce", "__main__"}),
]


def layer_of(module: str) -> int:
    """The index in `LAYERS` of a dotted module name of the package."""
    parts = module.split(".")
    head = parts[1] if len(parts) > 1 else ""
    for index, (_, members) in enumerate(LAYERS):
        if head in members:
            return index
    raise AssertionError(f"{module} belongs to no layer: add it to LAYERS in {__file__}")


def package_modules() -> dict[str, Path]:
    """{dotted name: file} of every module of the package."""
    modules = {}
    for path in sorted(PACKAGE_DIR.rglob("*.py")):
        parts = path.relative_to(PACKAGE_DIR).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        modules[".".join((PACKAGE, *parts))] = path
    return modules


MODULES = package_modules()


def imported_modules(node: ast.Import | ast.ImportFrom, module: str, path: Path) -> list[str]:
    """The package modules an import statement of `module` (in file `path`) loads."""
    if isinstance(node, ast.Import):
        names = [alias.name for alias in node.names]
    else:
        base = node.module or ""
        if node.level:  # relative: from the module's own package upwards
            package = module if path.name == "__init__.py" else module.rpartition(".")[0]
            anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
            base = f"{anchor}.{base}" if base else anchor
        # ``from package import name`` loads package.name when that is a module
        names = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base
                 for alias in node.names]
    return [name for name in names if name == PACKAGE or name.startswith(PACKAGE + ".")]


def _imports(node: ast.AST, in_function: bool = False):
    """Yield (import statement, whether it is inside a function or class) under `node`,
    leaving out ``if TYPE_CHECKING:`` blocks (they never run)."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
            for statement in child.orelse:  # an ``else:`` does run
                yield from _imports(ast.Module(body=[statement], type_ignores=[]), in_function)
            continue
        if isinstance(child, (ast.Import, ast.ImportFrom)):
            yield child, in_function
        inside = in_function or isinstance(
            child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda))
        yield from _imports(child, inside)


def import_edges() -> list[tuple[str, str, int, bool]]:
    """(importing module, imported module, line, whether the import is at module level)."""
    edges = []
    for module, path in MODULES.items():
        tree = ast.parse(path.read_text(), filename=str(path))
        for node, in_function in _imports(tree):
            for target in imported_modules(node, module, path):
                edges.append((module, target, node.lineno, not in_function))
    return edges


EDGES = import_edges()


def test_every_module_has_a_layer():
    for module in MODULES:
        layer_of(module)


def test_no_module_imports_a_higher_layer():
    upward = [f"{module}:{line} ({LAYERS[layer_of(module)][0]}) imports {target} "
              f"({LAYERS[layer_of(target)][0]})"
              for module, target, line, _ in EDGES if layer_of(target) > layer_of(module)]
    assert not upward, "imports that run up the layers:\n" + "\n".join(upward)


# Function-local imports of package modules that remain, each with its reason. Every one is
# within one layer (the upward test holds for them too); the list may only shrink: an entry
# that no longer exists fails `test_known_local_imports_still_exist`, so it is removed with
# the import.
KNOWN_LOCAL_IMPORTS = {
    # the engine's one cycle: Tensor's operators and backward call the ops and the engine,
    # which build Tensors
    ("minitorch_compress.autograd.function", "minitorch_compress.autograd.engine"),
    ("minitorch_compress.autograd.function", "minitorch_compress.autograd.tensor"),
    ("minitorch_compress.autograd.tensor", "minitorch_compress.autograd.engine"),
    ("minitorch_compress.autograd.tensor", "minitorch_compress.ops"),
    # the model file's reader builds the model (no cycle: they can move to the top)
    ("minitorch_compress.io.mtc", "minitorch_compress.models.resnet"),
    ("minitorch_compress.io.mtc", "minitorch_compress.autograd.engine"),
    ("minitorch_compress.io.mtc", "minitorch_compress.compression.masks"),
    ("minitorch_compress.io.mtc", "minitorch_compress.nn.layers"),
    ("minitorch_compress.io.mtc", "minitorch_compress.kernels.batchnorm"),
}


def test_package_modules_are_imported_at_module_level():
    """A function-local import of a package module is how a cycle hides; a heavy optional
    dependency (matplotlib) may be imported in a function, the package's own modules not."""
    local = [f"{module}:{line} imports {target} inside a function or class"
             for module, target, line, top in EDGES
             if not top and (module, target) not in KNOWN_LOCAL_IMPORTS]
    assert not local, "\n".join(local)


def test_known_local_imports_still_exist():
    local = {(module, target) for module, target, _, top in EDGES if not top}
    assert not KNOWN_LOCAL_IMPORTS - local, "fixed: remove from KNOWN_LOCAL_IMPORTS: " + \
        ", ".join(f"{m} -> {t}" for m, t in sorted(KNOWN_LOCAL_IMPORTS - local))


def test_the_walk_sees_the_edges_it_must():
    """The test above would pass on a walk that found nothing: check edges known to exist."""
    edges = {(module, target) for module, target, _, _ in EDGES}
    assert ("minitorch_compress.cli", "minitorch_compress.options") in edges
    assert ("minitorch_compress.experiments.lab2", "minitorch_compress.experiments.common") in edges
    assert ("minitorch_compress.reports.lab2", "minitorch_compress.experiments.lab2_layout") \
        in edges
    assert layer_of("minitorch_compress.reports.lab2") > layer_of(
        "minitorch_compress.experiments.lab2")
    assert all(module in MODULES for module, _, _, _ in EDGES)


def test_importing_a_report_loads_no_kernel_and_no_training_code():
    """Reports are pure functions of result files: importing every one of them, in a fresh
    interpreter, adds no kernel module and no training code to what importing the package
    itself loads, and never loads numba (so no numba kernel can be compiled or cached)."""
    reports = sorted(m for m in MODULES if m.startswith(f"{PACKAGE}.reports."))
    assert len(reports) >= 5
    code = "\n".join([
        "import json, sys",
        f"import {PACKAGE}",
        "before = set(sys.modules)",
        *[f"import {module}" for module in reports],
        "print(json.dumps({'before': sorted(before), 'after': sorted(sys.modules)}))",
    ])
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    loaded = json.loads(out.stdout)
    added = set(loaded["after"]) - set(loaded["before"])
    assert "numba" not in loaded["after"]
    heavy = sorted(m for m in added if m.startswith((f"{PACKAGE}.kernels", f"{PACKAGE}.training",
                                                     f"{PACKAGE}.ops", f"{PACKAGE}.models")))
    assert not heavy, f"importing the reports loaded {heavy}"
    assert set(reports) <= set(loaded["after"])  # the imports really ran


@pytest.mark.parametrize(("layout_name", "model_name"), [
    ("STAGE_CHANNELS", "STAGE_CHANNELS"), ("BLOCKS_PER_STAGE", "BLOCKS_PER_STAGE")])
def test_lab4_layout_agrees_with_the_model(layout_name, model_name):
    """Lab 4's report quotes ResNet-20's channel counts without importing the model."""
    assert getattr(lab4_layout, layout_name) == getattr(resnet, model_name)
