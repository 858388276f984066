"""Our own checkpoint format: one ``.npz`` file of named arrays plus a JSON metadata string.

Layout of a checkpoint (a plain NumPy ``.npz`` zip, readable with ``np.load``):

* one ``.npy`` member per array, named by the caller. By convention callers prefix the names:
  ``model.<parameter name>``, ``optim.<buffer name>``, ``mask.<layer name>``;
* one member ``__meta__``: a 0-d unicode array holding a JSON document (epoch, best accuracy,
  RNG state, ...). JSON rather than pickle so that loading a checkpoint can never run code:
  every load uses ``allow_pickle=False``.

Writes are atomic: the file is written to a temporary name in the same folder, flushed to disk
(``fsync``) and then moved over the target with ``os.replace``. An interrupted run (Ctrl-C,
out of memory, power loss) therefore leaves either the old checkpoint or the new one, never a
half-written file that the next run would choke on.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import zipfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO, Any

import numpy as np

from minitorch_compress.errors import CheckpointError, MinitorchError
from minitorch_compress.io.limits import check_zip_sizes, regular_file_size


class NonFiniteError(CheckpointError):
    """An array that is about to be saved or used holds NaN or infinity."""


def require_finite(arrays: Mapping[str, np.ndarray], what: str) -> None:
    """Raise `NonFiniteError` naming the first floating-point array with a NaN or infinity.

    Args:
        arrays: name -> array (non-float arrays, e.g. ``num_batches_tracked``, are skipped).
        what: how the message names their source, e.g. "weights file pretrained_model.pt".
    """
    for name, value in arrays.items():
        arr = np.asarray(value)
        if arr.dtype.kind in "fc" and not np.isfinite(arr).all():
            bad = int(arr.size - np.count_nonzero(np.isfinite(arr)))
            raise NonFiniteError(
                f"{what}: tensor {name} holds {bad} non-finite value(s) (NaN or inf) of "
                f"{arr.size}; refusing to use it")

__all__ = [
    "META_KEY",
    "NonFiniteError",
    "require_finite",
    "save_checkpoint",
    "load_checkpoint",
    "write_npz",
    "json_default",
    "atomic_write",
    "FileWriteError",
    "generator_state",
    "generator_from_state",
]

class FileWriteError(MinitorchError, OSError):
    """The file system refused a write (disk full, read-only folder, name too long).

    A `MinitorchError`, so the command line prints its one line; an `OSError` too, so code
    that tolerates a failed optional write (the weights cache) keeps catching it as one.
    """


#: Name of the npz member that holds the JSON metadata; reserved, callers cannot use it.
META_KEY = "__meta__"

# Bit generators we are willing to rebuild from a saved state. Looking the name up in this
# allow-list (instead of ``getattr(np.random, name)``) keeps a hand-edited checkpoint from
# making us call an arbitrary attribute of ``numpy.random``.
_BIT_GENERATORS = {
    "PCG64": np.random.PCG64,
    "PCG64DXSM": np.random.PCG64DXSM,
    "MT19937": np.random.MT19937,
    "Philox": np.random.Philox,
    "SFC64": np.random.SFC64,
}


def atomic_write(path: str | os.PathLike[str], write: Callable[[IO[bytes]], None]) -> None:
    """Write a file so that it either appears complete or not at all.

    ``write`` receives a binary file object opened on a temporary file in the same folder as
    ``path`` (same folder = same file system, so the final ``os.replace`` is atomic). On any
    exception, including ``KeyboardInterrupt``, the temporary file is removed and the previous
    content of ``path`` (if any) is untouched.

    Args:
        path: Destination file. Its parent folder is created if needed.
        write: Callback that writes the whole content to the file object it is given.

    Raises:
        FileWriteError: the file system refused (disk full, read-only, a name too long, a
            file where a folder should be): one line naming the file; nothing is left behind.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name[:64]}.", suffix=".tmp",
                                        dir=path.parent)
    except OSError as exc:
        raise FileWriteError(f"cannot write {path}: {exc.strerror or exc}") from None
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        # mkstemp creates files readable by their owner only; give the result the mode an
        # ordinary open() would (0666 minus the umask)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp_name, 0o666 & ~umask)
        os.replace(tmp_name, path)
    except BaseException as exc:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)
        if isinstance(exc, OSError) and not isinstance(exc, MinitorchError):
            raise FileWriteError(f"cannot write {path}: {exc.strerror or exc}; nothing was "
                                 "written there") from None
        raise
    # Make the rename itself durable. Not every platform lets us open a folder (Windows does
    # not), and losing only the rename on power loss still leaves a valid old file.
    with contextlib.suppress(OSError):
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def write_npz(f: IO[bytes], arrays: Mapping[str, np.ndarray]) -> None:
    """Write named arrays to an open binary file in NumPy's ``.npz`` format (uncompressed).

    Equivalent to ``np.savez(f, **arrays)`` except that any name works (``np.savez`` breaks on
    a key called ``file``) and object arrays are refused, so the result always loads with
    ``allow_pickle=False``.

    Args:
        f: Binary file object open for writing.
        arrays: Mapping from member name to array of any shape and non-object dtype.

    Raises:
        ValueError: If an array has dtype ``object``.
    """
    with zipfile.ZipFile(f, mode="w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
        for name, value in arrays.items():
            arr = np.asanyarray(value)
            if arr.dtype.hasobject:
                raise ValueError(f"array {name!r} has dtype object, which would need pickle")
            with zf.open(f"{name}.npy", mode="w", force_zip64=True) as member:
                np.lib.format.write_array(member, arr, allow_pickle=False)


def json_default(value: Any) -> Any:
    """``json.dumps(default=...)`` for NumPy scalars and arrays (e.g. an ``np.int64`` epoch)."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"metadata value of type {type(value).__name__} is not JSON-serialisable")


def save_checkpoint(
    path: str | os.PathLike[str], arrays: Mapping[str, np.ndarray], meta: Mapping[str, Any]
) -> None:
    """Save named arrays and JSON metadata to ``path`` (``.npz``), atomically.

    Args:
        path: Destination file, conventionally ending in ``.npz``.
        arrays: Name -> array (any shape, numeric or bool dtype). Use prefixed names, e.g.
            ``model.head_conv.0.conv.weight`` (C_out, C_in, k, k), ``optim.momentum.<name>``,
            ``mask.<layer>``.
        meta: JSON-serialisable metadata (epoch, accuracy, ``generator_state(rng)``, ...).
            NumPy scalars are converted to Python numbers.

    Raises:
        ValueError: If a name is the reserved ``META_KEY`` or an array has dtype object.
        TypeError: If ``meta`` is not JSON-serialisable.
        NonFiniteError: If a float array holds NaN or inf: such a checkpoint is never
            written (nothing on disk changes).
    """
    require_finite(arrays, f"checkpoint {Path(path).name} not written")
    if META_KEY in arrays:
        raise ValueError(f"{META_KEY!r} is reserved for the metadata; rename that array")
    # Serialise before opening the file so a bad meta value fails without touching the disk.
    meta_json = json.dumps(dict(meta), default=json_default, sort_keys=True)
    members = dict(arrays)
    members[META_KEY] = np.array(meta_json)
    atomic_write(path, lambda f: write_npz(f, members))


def load_checkpoint(path: str | os.PathLike[str]) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Load a checkpoint written by ``save_checkpoint`` (or any plain ``.npz`` of arrays).

    Args:
        path: The ``.npz`` file.

    Returns:
        ``(arrays, meta)``: name -> array (each with its saved shape and dtype), and the
        metadata dict (empty when the file has no ``__meta__`` member, e.g. converted
        pretrained weights).

    Raises:
        CheckpointError: If the file is missing, truncated, corrupt, not an ``.npz`` or would
            need pickle to load.
    """
    path = Path(path)
    regular_file_size(path, "checkpoint")
    _check_declared_sizes(path)
    try:
        with np.load(path, allow_pickle=False) as npz:
            if not isinstance(npz, np.lib.npyio.NpzFile):  # a bare .npy file
                raise CheckpointError(f"{path} is a single .npy array, not an .npz checkpoint")
            arrays = {name: npz[name] for name in npz.files}
    except CheckpointError:
        raise
    except _BROKEN_FILE_ERRORS as exc:
        raise _unreadable(path, exc) from exc
    meta: dict[str, Any] = {}
    if META_KEY in arrays:
        raw = arrays.pop(META_KEY)
        try:
            meta = json.loads(str(raw[()]))
        except (ValueError, IndexError, RecursionError) as exc:  # RecursionError: nested deep
            raise CheckpointError(f"{path}: the metadata member is not valid JSON") from exc
        if not isinstance(meta, dict):
            raise CheckpointError(f"{path}: the metadata member is not a JSON object")
    return arrays, meta


def _check_declared_sizes(path: Path) -> None:
    """Refuse an ``.npz`` whose members declare more bytes than they hold, before any array
    is allocated: a 100-byte member whose header claims 10**11 elements must not make
    ``np.load`` ask for 400 GB. Each ``.npy`` header (shape, dtype) is read on its own and its
    size checked against the member's real (uncompressed) size in the zip directory."""
    try:
        with zipfile.ZipFile(path) as zf:
            check_zip_sizes(zf, path)
            for info in zf.infolist():
                if not info.filename.endswith(".npy"):
                    continue
                with zf.open(info) as member:
                    version = np.lib.format.read_magic(member)
                    read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                                   else np.lib.format.read_array_header_2_0)
                    shape, _, dtype = read_header(member)
                    header = member.tell()
                if dtype.hasobject:
                    continue  # np.load refuses it below with allow_pickle=False
                declared = int(np.prod(shape, dtype=object)) * dtype.itemsize
                if header + declared > info.file_size:
                    raise CheckpointError(
                        f"{path}: array {info.filename[:-4]!r} declares shape {shape} "
                        f"({declared:,} bytes) but the file holds only "
                        f"{info.file_size - header:,}; the file is corrupt")
    except CheckpointError:
        raise
    except _BROKEN_FILE_ERRORS as exc:
        raise _unreadable(path, exc) from exc


# np.load and zipfile raise a zoo of types for broken files; each becomes one clear line
_BROKEN_FILE_ERRORS = (ValueError, OSError, EOFError, zipfile.BadZipFile, KeyError,
                       NotImplementedError)  # NotImplementedError: unknown compression


def _unreadable(path: Path, exc: BaseException) -> CheckpointError:
    reason = " ".join(str(exc).split()) or type(exc).__name__
    return CheckpointError(f"{path} is not a readable checkpoint (truncated or corrupt?): {reason}")


def _to_jsonable(value: Any) -> Any:
    """Recursively turn arrays in a bit-generator state into tagged JSON lists."""
    if isinstance(value, np.ndarray):
        return {"__ndarray__": value.tolist(), "dtype": value.dtype.str}
    if isinstance(value, dict):
        return {k: _to_jsonable(v) for k, v in value.items()}
    if isinstance(value, np.generic):
        return value.item()
    return value


def _from_jsonable(value: Any) -> Any:
    """Inverse of ``_to_jsonable``."""
    if isinstance(value, dict):
        if "__ndarray__" in value:
            return np.array(value["__ndarray__"], dtype=np.dtype(value["dtype"]))
        return {k: _from_jsonable(v) for k, v in value.items()}
    return value


def generator_state(rng: np.random.Generator) -> dict[str, Any]:
    """Return the state of a NumPy ``Generator`` as a JSON-serialisable dict.

    For the default PCG64 this is ``rng.bit_generator.state`` as is (Python ints); array
    fields of other bit generators (MT19937's key, Philox's counter) become tagged lists.

    Args:
        rng: The generator to snapshot. It is not advanced.

    Returns:
        A dict suitable for ``meta`` in ``save_checkpoint``.
    """
    return _to_jsonable(rng.bit_generator.state)


def generator_from_state(state: Mapping[str, Any]) -> np.random.Generator:
    """Rebuild a ``Generator`` that continues exactly where the saved one stopped.

    Args:
        state: A dict produced by ``generator_state`` (possibly after a JSON round trip).

    Returns:
        A new ``numpy.random.Generator`` whose next draws equal those the saved one would
        have produced.

    Raises:
        CheckpointError: If the state names an unknown bit generator or is malformed.
    """
    name = state.get("bit_generator") if isinstance(state, Mapping) else None
    if name not in _BIT_GENERATORS:
        raise CheckpointError(
            f"cannot restore random state: unknown bit generator {name!r} "
            f"(expected one of {', '.join(_BIT_GENERATORS)})"
        )
    bit_generator = _BIT_GENERATORS[name]()
    try:
        bit_generator.state = _from_jsonable(dict(state))
    except (ValueError, TypeError, KeyError) as exc:
        raise CheckpointError(f"cannot restore random state: {exc}") from exc
    return np.random.Generator(bit_generator)
