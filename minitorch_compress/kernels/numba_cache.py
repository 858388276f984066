"""numba's on-disk cache of the kernels, made stale by an edit to any module of `kernels/`.

Why. ``@njit(cache=True)`` keeps a function's machine code on disk and reuses it while the
one file that defines the function is unchanged. But a kernel's machine code also holds
the code of what it inlines or calls from other modules: the vector operations of
`simd.py` and `simd_int8.py`, `rows.py`'s row helpers, `int8_epilogue.py`'s epilogue. After
an edit to one of those, numba alone would go on loading the old machine code, and the edit
would seem to do nothing. So every function defined in a folder given to `install` (the
package does it for `kernels/` when it is imported) gets a source stamp that also covers the
contents of every ``.py`` file in that folder: any edit there makes all of their cache
entries stale, and numba compiles each again, once, the next time it runs.

How. numba asks a list of cache locators, in turn, where a function's cache lives and
which stamp its index must carry to be fresh. `FolderStampLocator`, first in that list,
takes for a function of an installed folder the locator numba would have chosen
(``NUMBA_CACHE_DIR``, else ``__pycache__`` beside the source, else the user-wide cache)
and only adds the folder's digest to its stamp. (Where ``NUMBA_CACHE_LOCATOR_CLASSES``
replaces numba's list, the list is the user's and this module stays out of it.)

When. The locator must be in the list before the first kernel is compiled or loaded, and
importing the package must not import numba (a fraction of a second that the command
line's help and the report renderers never need). So `install` adds it at once where numba
is loaded already, else right after numba's own import finishes (`_AfterNumbaImport`, a
one-shot import hook).
"""

from __future__ import annotations

import functools
import hashlib
import importlib.abc
import importlib.util
import os
import sys

#: The folders whose functions' cache stamps cover the whole folder (real paths).
_FOLDERS: set[str] = set()


def folder_digest(folder: str) -> str:
    """The sha256 hex digest of the names and contents of the modules (``.py`` files) in `folder`
    (re-read only when a file's size or modification time changes)."""
    stats = []
    for name in sorted(os.listdir(folder)):
        # only importable module names: an editor's lock file, such as Emacs's `.#simd.py`
        # (a symlink to nowhere while simd.py is being edited), is neither code nor readable
        if name.endswith(".py") and name[:-3].isidentifier():
            try:
                st = os.stat(os.path.join(folder, name))
            except FileNotFoundError:  # removed since the listing
                continue
            stats.append((name, st.st_mtime_ns, st.st_size))
    return _digest(folder, tuple(stats))


@functools.lru_cache(maxsize=16)
def _digest(folder: str, stats: tuple) -> str:
    digest = hashlib.sha256()
    for name, _, _ in stats:
        with open(os.path.join(folder, name), "rb") as f:
            digest.update(name.encode() + b"\0" + f.read() + b"\0")
    return digest.hexdigest()


def _numba_locator_classes() -> list:
    """numba's list of cache locator classes, which it tries in order."""
    from numba.core import caching

    impl = getattr(caching, "CacheImpl", None) or caching._CacheImpl  # numba < 0.61
    return impl._locator_classes


class FolderStampLocator:
    """The cache locator numba would choose for a function, with the digest of the
    function's folder added to its source stamp; everything else (the cache's folder, the
    file names) is that locator's."""

    def __init__(self, inner, folder: str) -> None:
        self._inner = inner
        self._folder = folder

    def __getattr__(self, name: str):
        return getattr(self._inner, name)

    def get_source_stamp(self):
        return self._inner.get_source_stamp(), folder_digest(self._folder)

    @classmethod
    def from_function(cls, py_func, py_file):
        folder = os.path.dirname(os.path.realpath(py_file))
        if folder not in _FOLDERS:
            return None  # not ours: numba's next locator decides
        for other in _numba_locator_classes():
            if other is not cls:
                inner = other.from_function(py_func, py_file)
                if inner is not None:
                    return cls(inner, folder)
        return None


def _add_locator() -> None:
    classes = _numba_locator_classes()
    if FolderStampLocator not in classes:
        classes.insert(0, FolderStampLocator)


class _AfterNumbaImport(importlib.abc.MetaPathFinder):
    """An import hook that lets numba's import run as usual, then calls `_add_locator`."""

    def find_spec(self, name, path=None, target=None):
        if name != "numba":
            return None
        sys.meta_path.remove(self)  # once; and the search below must not find this hook
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.loader is not None:
            spec.loader = _ThenAddLocator(spec.loader)
        return spec


class _ThenAddLocator:
    """numba's loader, which adds the locator once numba is imported and then steps aside
    (the module keeps numba's own loader)."""

    def __init__(self, loader) -> None:
        self._loader = loader

    def __getattr__(self, name: str):
        return getattr(self._loader, name)

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module) -> None:
        module.__loader__ = module.__spec__.loader = self._loader
        self._loader.exec_module(module)
        _add_locator()


def install(folder: str) -> None:
    """Make the cache of every ``cache=True`` function that is defined in `folder` from now
    on stale whenever any ``.py`` file in `folder` changes (call before importing them)."""
    _FOLDERS.add(os.path.realpath(folder))
    if "numba" in sys.modules:
        _add_locator()
    elif not any(isinstance(finder, _AfterNumbaImport) for finder in sys.meta_path):
        sys.meta_path.insert(0, _AfterNumbaImport())
