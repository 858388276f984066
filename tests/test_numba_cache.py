"""numba's cache of a kernel goes stale when a helper module it inlines changes
(`kernels/numba_cache.py`)."""

from __future__ import annotations

import os
import subprocess
import sys

from minitorch_compress.kernels import int8_conv, numba_cache

KERNELS_FOLDER = os.path.dirname(os.path.realpath(int8_conv.__file__))


def test_the_folder_digest_follows_every_python_file(tmp_path):
    (tmp_path / "kernel.py").write_text("x = 1\n")
    (tmp_path / "helper.py").write_text("def f():\n    return 1\n")
    (tmp_path / "notes.txt").write_text("not code")
    before = numba_cache.folder_digest(str(tmp_path))
    assert numba_cache.folder_digest(str(tmp_path)) == before
    (tmp_path / "notes.txt").write_text("still not code")
    assert numba_cache.folder_digest(str(tmp_path)) == before
    (tmp_path / "helper.py").write_text("def f():\n    return 2\n")
    assert numba_cache.folder_digest(str(tmp_path)) != before


def test_an_editors_lock_file_beside_the_kernels_is_ignored(tmp_path):
    (tmp_path / "simd.py").write_text("x = 1\n")
    before = numba_cache.folder_digest(str(tmp_path))
    # Emacs's lock file while simd.py is edited: a symlink to nowhere with a .py name
    os.symlink("user@host.1234:1700000000", tmp_path / ".#simd.py")
    assert numba_cache.folder_digest(str(tmp_path)) == before


def test_the_kernels_cache_stamp_covers_the_whole_kernels_folder():
    compiled = int8_conv._quantize_into  # any cache=True function of kernels/
    locator = compiled._cache._impl.locator
    assert isinstance(locator, numba_cache.FolderStampLocator)
    _, digest = locator.get_source_stamp()
    assert digest == numba_cache.folder_digest(KERNELS_FOLDER)


def test_the_package_imports_without_numba_and_the_locator_comes_with_numba():
    code = ("import sys\n"
            "from minitorch_compress.kernels import numba_cache\n"
            "print('numba' in sys.modules)\n"
            "import numba\n"
            "print(numba_cache.FolderStampLocator in numba_cache._numba_locator_classes(),\n"
            "      numba.__loader__.__class__.__name__ != '_ThenAddLocator')\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=120)
    assert out.stdout.split() == ["False", "True", "True"]


HELPER = """\
from numba import njit


@njit(inline="always")
def value():
    return {}
"""

KERNEL = """\
from numba import njit

from helper import value


@njit(cache=True)
def kernel(x):
    return x + value()
"""

RUN = """\
import sys

from minitorch_compress.kernels import numba_cache

numba_cache.install(sys.argv[1])
sys.path.insert(0, sys.argv[1])
from kernel import kernel

print(kernel(0))
"""


def test_an_edited_helper_module_is_compiled_again_not_loaded_stale(tmp_path):
    """A cache=True kernel that inlines a helper of another module of its folder: after an
    edit to the helper alone, the next process runs the new helper (numba by itself
    would load the cached machine code of the old one)."""
    package = tmp_path / "package"
    package.mkdir()
    (package / "kernel.py").write_text(KERNEL)
    (tmp_path / "run.py").write_text(RUN)
    env = {name: value for name, value in os.environ.items()
           if name not in ("NUMBA_CACHE_DIR", "NUMBA_DISABLE_JIT", "NUMBA_CACHE_LOCATOR_CLASSES")}
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env["PYTHONPATH"] = os.pathsep.join([root, env.get("PYTHONPATH", "")])
    env["NUMBA_DEBUG_CACHE"] = "1"  # prints "[cache] data loaded from ..." on a hit

    def run() -> tuple[str, bool]:
        """The kernel's result, and whether it came from the cache."""
        out = subprocess.run([sys.executable, str(tmp_path / "run.py"), str(package)],
                             capture_output=True, text=True, env=env, check=True)
        lines = out.stdout.strip().splitlines()
        return lines[-1], any("data loaded" in line for line in lines)

    (package / "helper.py").write_text(HELPER.format(1))
    assert run() == ("1", False)
    assert run() == ("1", True)  # unchanged: the cache serves it
    (package / "helper.py").write_text(HELPER.format(2))
    assert run() == ("2", False)
    assert run() == ("2", True)

