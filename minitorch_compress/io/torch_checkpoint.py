"""Read a PyTorch ``state_dict`` file (``.pt`` / ``.pth``) into NumPy arrays, without torch.

``torch.save`` has used two on-disk formats, and both are read here:

* **zip** (PyTorch >= 1.6, the default today): a zip archive with one top folder (usually
  ``archive/``, but the name varies) holding ``data.pkl`` (the pickled object), one member
  ``data/<key>`` per storage with its raw bytes, and optionally ``byteorder`` ("little"/"big").
  Persistent ids in the pickle are ``('storage', storage_type, key, location, numel)``.
* **legacy** (PyTorch < 1.6, or ``_use_new_zipfile_serialization=False``): five things one
  after the other in a plain file: a pickled magic number, a pickled protocol version (1001),
  a pickled ``sys_info`` dict (endianness), the pickled object, the pickled list of storage
  keys, and then, for each key in that order, an int64 element count followed by the raw
  storage bytes. Persistent ids are ``('storage', storage_type, root_key, location, numel,
  view_metadata)``. **The course's ``pretrained_model.pt`` is in this legacy format.**

Either way a tensor is rebuilt by ``torch._utils._rebuild_tensor_v2(storage, storage_offset,
size, stride, ...)``: the tensor's element ``[i0, i1, ...]`` is element ``storage_offset +
sum(i_k * stride_k)`` of the flat storage. We do the same with
``np.lib.stride_tricks.as_strided`` and copy the result to a contiguous array.

Safety: unpickling runs code named by the file, so a plain ``pickle.load`` of a downloaded
checkpoint is remote code execution. ``_StateDictUnpickler.find_class`` resolves only the
handful of globals a state_dict needs, each mapped to a harmless stand-in defined here;
any other global (``os.system``, ``builtins.eval``, ...) raises ``UnsafeCheckpointError``
before it is even imported. Sizes/strides/offsets are bounds-checked before ``as_strided``,
which would otherwise read arbitrary memory.
"""

from __future__ import annotations

import io
import os
import pickle
import struct
import sys
import zipfile
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from minitorch_compress.errors import CheckpointError, MinitorchError, UnsafeCheckpointError
from minitorch_compress.io.checkpoint import atomic_write, require_finite, write_npz
from minitorch_compress.io.limits import check_zip_sizes, read_model_file

__all__ = ["load_torch_state_dict", "convert_checkpoint", "main"]

#: First pickle of a legacy-format file (``torch.serialization.MAGIC_NUMBER``).
LEGACY_MAGIC_NUMBER = 0x1950A86A20F9469CFC6C
#: Second pickle of a legacy-format file (``torch.serialization.PROTOCOL_VERSION``).
LEGACY_PROTOCOL_VERSION = 1001

# Keys under which training scripts commonly nest the state_dict inside a bigger dict.
_NESTED_KEYS = ("state_dict", "model_state_dict", "model")


# --------------------------------------------------------------------------------------------
# Stand-ins for the torch objects a state_dict pickle refers to.
# --------------------------------------------------------------------------------------------


class _NoSetState:
    """Refuse pickle's BUILD opcode on our stand-ins.

    BUILD would otherwise overwrite the fields of an object *after* it was validated (e.g.
    give a checked tensor a bigger size), and ``as_strided`` would then read outside the
    storage. A real state_dict never does this.
    """

    def __setstate__(self, state: Any) -> None:
        raise CheckpointError("the pickle tries to modify a tensor/storage record after creation")


@dataclass(frozen=True)
class _StorageType(_NoSetState):
    """Stand-in for ``torch.FloatStorage`` & co.: remembers only the element dtype.

    ``bfloat16`` has no NumPy dtype; its raw 16-bit patterns are read as ``uint16`` and widened
    to float32 when the tensor is built (bfloat16 is the top half of a float32).
    """

    name: str
    dtype: np.dtype
    bfloat16: bool = False


def _storage_types() -> dict[str, _StorageType]:
    table = {
        "DoubleStorage": "f8",
        "FloatStorage": "f4",
        "HalfStorage": "f2",
        "LongStorage": "i8",
        "IntStorage": "i4",
        "ShortStorage": "i2",
        "CharStorage": "i1",
        "ByteStorage": "u1",
        "BoolStorage": "?",
        "ComplexDoubleStorage": "c16",
        "ComplexFloatStorage": "c8",
        # Untyped storages (torch >= 2.0 when a bare storage is saved) count bytes.
        "UntypedStorage": "u1",
    }
    types = {name: _StorageType(name, np.dtype(code)) for name, code in table.items()}
    types["BFloat16Storage"] = _StorageType("BFloat16Storage", np.dtype("u2"), bfloat16=True)
    return types


_STORAGE_TYPES = _storage_types()


@dataclass
class _Storage:
    """One storage of the file; ``data`` (flat, native byte order) is filled in later."""

    key: str
    kind: _StorageType
    numel: int
    data: np.ndarray | None = None


@dataclass(frozen=True)
class _StorageView(_NoSetState):
    """What ``persistent_load`` hands to the rebuild functions: (part of) a storage."""

    storage: _Storage
    start: int  # in elements; non-zero only for legacy-format storage views
    numel: int


@dataclass(frozen=True)
class _TensorRef(_NoSetState):
    """A tensor described by the pickle, built into a NumPy array once storages are read."""

    view: _StorageView
    offset: int
    size: tuple[int, ...]
    stride: tuple[int, ...]


class _TensorTypeMarker(_NoSetState):
    """Stand-in for ``torch.Tensor`` / ``torch.nn.Parameter`` (only used as a type tag)."""


def _rebuild_tensor_v2(
    storage: Any,
    storage_offset: Any,
    size: Any,
    stride: Any,
    requires_grad: Any = False,
    backward_hooks: Any = None,
    metadata: Any = None,
) -> _TensorRef:
    """Stand-in for ``torch._utils._rebuild_tensor_v2``: record, check, build later."""
    if not isinstance(storage, _StorageView):
        raise CheckpointError(f"a tensor refers to {type(storage).__name__}, not a storage")
    if not (isinstance(size, tuple) and isinstance(stride, tuple) and len(size) == len(stride)):
        raise CheckpointError(f"tensor with malformed size {size!r} / stride {stride!r}")
    numbers = (storage_offset, *size, *stride)
    if not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in numbers):
        raise CheckpointError(f"tensor with malformed size {size!r} / stride {stride!r}")
    # as_strided trusts its arguments and would read past the buffer: check the largest index.
    if all(size):
        last = storage_offset + sum((n - 1) * s for n, s in zip(size, stride, strict=True))
        if last >= storage.numel:
            raise CheckpointError(
                f"tensor of size {tuple(size)} with stride {tuple(stride)} at offset "
                f"{storage_offset} reaches element {last} of a storage of {storage.numel}"
            )
    # A state_dict's tensors are plain views: never more elements than their storage holds.
    # A stride-0 tensor of 32768 x 16384 over a 1-element storage would otherwise turn a
    # 655-byte file into a 2 GB copy; this bounds memory use by the file's real size.
    elements = 1
    for n in size:
        elements *= n
    if elements > storage.numel:
        raise CheckpointError(
            f"tensor of size {tuple(size)} has {elements:,} elements but its storage holds "
            f"{storage.numel:,} (a stride-0 or overlapping view, which a state_dict never has)")
    return _TensorRef(storage, storage_offset, tuple(size), tuple(stride))


def _rebuild_tensor(storage: Any, storage_offset: Any, size: Any, stride: Any) -> _TensorRef:
    """Stand-in for the older ``torch._utils._rebuild_tensor``."""
    return _rebuild_tensor_v2(storage, storage_offset, size, stride)


def _rebuild_parameter(data: Any, requires_grad: Any, backward_hooks: Any, *state: Any) -> Any:
    """Stand-in for ``_rebuild_parameter(_with_state)``: a Parameter is just its tensor here."""
    return data


def _rebuild_from_type_v2(func: Any, new_type: Any, args: Any, state: Any) -> Any:
    """Stand-in for ``torch._tensor._rebuild_from_type_v2`` (tensor subclasses).

    ``func`` came out of ``find_class``, so it is one of our own stand-ins.
    """
    if new_type is not _TensorTypeMarker or not callable(func) or not isinstance(args, tuple):
        raise CheckpointError("malformed tensor-subclass record in the checkpoint")
    return func(*args)


# (module, name) -> object. Everything not listed here is refused.
_ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    ("collections", "OrderedDict"): OrderedDict,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
    ("torch._tensor", "_rebuild_from_type_v2"): _rebuild_from_type_v2,
    ("torch", "Tensor"): _TensorTypeMarker,
    ("torch.nn.parameter", "Parameter"): _TensorTypeMarker,
    ("torch", "Size"): tuple,
    **{("torch", name): kind for name, kind in _STORAGE_TYPES.items()},
}


class _StateDictUnpickler(pickle.Unpickler):
    """Unpickler that resolves only state_dict globals and collects storage references."""

    def __init__(self, file: BinaryIO, storages: dict[str, _Storage], legacy: bool) -> None:
        super().__init__(file, encoding="utf-8")
        self._storages = storages
        self._legacy = legacy

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise UnsafeCheckpointError(
                f"checkpoint asks for global '{module}.{name}', which a state_dict never "
                "needs; refusing to load it"
            ) from None

    def persistent_load(self, pid: Any) -> _StorageView:
        if not (isinstance(pid, tuple) and pid and pid[0] == "storage"):
            kind = pid[0] if isinstance(pid, tuple) and pid else pid
            raise UnsafeCheckpointError(
                f"checkpoint contains a pickled {kind!r} record, not just tensors (a whole "
                "model saved with torch.save(model)?); save model.state_dict() instead"
            )
        expected = 6 if self._legacy else 5
        if len(pid) != expected:
            raise CheckpointError(f"malformed storage record {pid!r}")
        _, kind, key, _location, numel = pid[:5]
        if not (isinstance(kind, _StorageType) and isinstance(key, str)):
            raise CheckpointError(f"malformed storage record {pid!r}")
        if not (isinstance(numel, int) and numel >= 0):
            raise CheckpointError(f"storage {key!r} has a bad element count {numel!r}")
        storage = self._storages.setdefault(key, _Storage(key, kind, numel))
        if storage.kind != kind or storage.numel != numel:
            raise CheckpointError(f"storage {key!r} is declared twice with different types")
        if self._legacy and pid[5] is not None:
            # Legacy views: (view_key, offset, view_size) into the root storage, in elements.
            view = pid[5]
            start, count = view[1:] if isinstance(view, tuple) and len(view) == 3 else (-1, -1)
            if not (isinstance(start, int) and isinstance(count, int)) or min(start, count) < 0:
                raise CheckpointError(f"malformed storage view {view!r}")
            if start + count > numel:
                raise CheckpointError(f"storage view {view!r} runs past its storage ({numel})")
            return _StorageView(storage, start, count)
        return _StorageView(storage, 0, numel)


def _unpickle(
    data: bytes | BinaryIO, path: Path, storages: dict[str, _Storage], legacy: bool
) -> Any:
    """Run the restricted unpickler; turn every failure into a one-line CheckpointError."""
    stream = io.BytesIO(data) if isinstance(data, bytes) else data
    try:
        return _StateDictUnpickler(stream, storages, legacy).load()
    except MinitorchError:
        raise
    except Exception as exc:
        # Only our own stand-ins run during this load, so anything else raised here
        # (UnpicklingError, EOFError, ValueError, KeyError on the memo, ...) means the bytes
        # are not a valid pickle: report that, whatever the type.
        raise CheckpointError(f"{path}: corrupt pickle data ({_one_line(exc)})") from exc


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


# --------------------------------------------------------------------------------------------
# The two container formats.
# --------------------------------------------------------------------------------------------


def _decode_storage(
    raw: bytes, storage: _Storage, byteorder: str, path: Path, where: str
) -> np.ndarray:
    """Flat array (native byte order) of ``storage.numel`` elements from raw file bytes."""
    itemsize = storage.kind.dtype.itemsize
    need = storage.numel * itemsize
    if len(raw) < need:
        raise CheckpointError(
            f"{path}: storage {where} holds {len(raw)} bytes, but {storage.numel} elements of "
            f"{storage.kind.name} need {need}: the file is truncated or corrupt"
        )
    dtype = storage.kind.dtype.newbyteorder("<" if byteorder == "little" else ">")
    flat = np.frombuffer(raw, dtype=dtype, count=storage.numel)
    return flat.astype(storage.kind.dtype.newbyteorder("="), copy=False)


def _load_zip(path: Path, raw: bytes) -> tuple[Any, dict[str, _Storage]]:
    try:
        with zipfile.ZipFile(io.BytesIO(raw)) as zf:
            check_zip_sizes(zf, path)
            names = zf.namelist()
            pickles = sorted((n for n in names if n.endswith("data.pkl")), key=len)
            if not pickles:
                raise CheckpointError(f"{path} is a zip archive without a data.pkl entry")
            prefix = pickles[0][: -len("data.pkl")]  # e.g. "archive/"; the name varies
            byteorder = "little"
            if prefix + "byteorder" in names:
                byteorder = zf.read(prefix + "byteorder").decode("ascii", "replace").strip()
                if byteorder not in ("little", "big"):
                    raise CheckpointError(f"{path}: unknown byte order {byteorder!r}")
            storages: dict[str, _Storage] = {}
            obj = _unpickle(zf.read(pickles[0]), path, storages, legacy=False)
            for key, storage in storages.items():
                member = f"{prefix}data/{key}"
                if member not in names:
                    raise CheckpointError(
                        f"{path}: storage '{member}' is missing from the archive "
                        "(truncated or incomplete file)"
                    )
                storage.data = _decode_storage(zf.read(member), storage, byteorder, path, member)
    except MinitorchError:
        raise
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, ValueError,
            NotImplementedError) as exc:  # NotImplementedError: an unknown compression method
        # zipfile reports truncation and CRC mismatches with assorted types and messages.
        raise CheckpointError(
            f"{path} is a damaged zip archive (truncated or corrupt): {_one_line(exc)}"
        ) from exc
    return obj, storages


def _load_legacy(path: Path, raw: bytes) -> tuple[Any, dict[str, _Storage]]:
    stream = io.BytesIO(raw)
    storages: dict[str, _Storage] = {}
    try:
        magic = _unpickle(stream, path, storages, legacy=True)
    except UnsafeCheckpointError:
        raise
    except CheckpointError:
        raise CheckpointError(
            f"{path} is not a PyTorch checkpoint (neither a zip archive nor the legacy format)"
        ) from None
    if magic != LEGACY_MAGIC_NUMBER:
        raise CheckpointError(f"{path} is a pickle but not a PyTorch checkpoint (wrong magic)")
    version = _unpickle(stream, path, storages, legacy=True)
    if version != LEGACY_PROTOCOL_VERSION:
        raise CheckpointError(f"{path}: unsupported legacy checkpoint version {version!r}")
    sys_info = _unpickle(stream, path, storages, legacy=True)
    little = sys_info.get("little_endian", True) if isinstance(sys_info, dict) else True
    byteorder = "little" if little else "big"
    obj = _unpickle(stream, path, storages, legacy=True)
    keys = _unpickle(stream, path, storages, legacy=True)
    if not (isinstance(keys, list) and all(isinstance(k, str) for k in keys)):
        raise CheckpointError(f"{path}: malformed list of storage keys")
    count_format = "<q" if little else ">q"
    for key in keys:
        storage = storages.get(key)
        if storage is None:
            raise CheckpointError(f"{path}: storage {key!r} has data but no tensor uses it")
        header = stream.read(8)
        if len(header) < 8:
            raise CheckpointError(f"{path} is truncated: the data of storage {key!r} is missing")
        (numel,) = struct.unpack(count_format, header)
        if numel != storage.numel:
            raise CheckpointError(
                f"{path}: storage {key!r} has {numel} elements on disk, "
                f"but the pickle says {storage.numel}"
            )
        data = stream.read(numel * storage.kind.dtype.itemsize)
        storage.data = _decode_storage(data, storage, byteorder, path, repr(key))
    missing = sorted(set(storages) - set(keys))
    if missing:
        raise CheckpointError(f"{path}: storage {missing[0]!r} is missing from the file")
    return obj, storages


# --------------------------------------------------------------------------------------------
# Turning the unpickled structure into arrays.
# --------------------------------------------------------------------------------------------


def _build_array(ref: _TensorRef, float_dtype: np.dtype | None) -> np.ndarray:
    flat = ref.view.storage.data
    assert flat is not None  # every referenced storage was read or an error was raised
    flat = flat[ref.view.start : ref.view.start + ref.view.numel]
    # Checked again against the bytes really in memory (``_rebuild_tensor_v2`` checked against
    # the declared size): as_strided must never be handed a view that leaves the buffer.
    if 0 not in ref.size:
        last = ref.offset + sum((n - 1) * s for n, s in zip(ref.size, ref.stride, strict=True))
        if last >= flat.size:
            raise CheckpointError(f"a tensor of size {ref.size} reaches past its storage")
    try:
        if 0 in ref.size:
            arr = np.empty(ref.size, dtype=flat.dtype)
        else:
            strides = tuple(s * flat.itemsize for s in ref.stride)
            view = np.lib.stride_tricks.as_strided(
                flat[ref.offset :], shape=ref.size, strides=strides, writeable=False
            )
            arr = np.array(view, order="C")  # copy: own, contiguous memory, independent of file
    except (ValueError, OverflowError, MemoryError) as exc:
        # Only reachable with absurd sizes (e.g. a stride-0 dimension of 10**12 elements).
        raise CheckpointError(
            f"cannot build a tensor of size {ref.size}: {_one_line(exc)}"
        ) from exc
    if ref.view.storage.kind.bfloat16:
        arr = (arr.astype(np.uint32) << 16).view(np.float32)
    if float_dtype is not None and arr.dtype.kind == "f":
        arr = arr.astype(float_dtype, copy=False)
    return arr


def _select_state_dict(obj: Any, path: Path) -> dict[str, _TensorRef]:
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path} holds a {type(obj).__name__}, not a state_dict")
    if not all(isinstance(v, _TensorRef) for v in obj.values()):
        for key in _NESTED_KEYS:
            if isinstance(obj.get(key), dict):
                return _select_state_dict(obj[key], path)
        key, value = next((k, v) for k, v in obj.items() if not isinstance(v, _TensorRef))
        raise CheckpointError(
            f"{path}: entry {key!r} has type {type(value).__name__}, not a tensor, and there is no "
            f"nested {'/'.join(_NESTED_KEYS)} dict; this is not a state_dict"
        )
    if not all(isinstance(k, str) for k in obj):
        raise CheckpointError(f"{path}: state_dict keys must be strings")
    return obj


def _check_shapes(state: Mapping[str, _TensorRef], expected: Mapping[str, tuple[int, ...]],
                  path: Path) -> None:
    """One error listing every missing, unexpected and mis-shaped entry of `state`."""
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    mismatched = [f"{k}: checkpoint {state[k].size} vs model {tuple(shape)}"
                  for k, shape in expected.items() if k in state and state[k].size != tuple(shape)]
    problems = [f"{label}: {', '.join(items[:4])}{' ...' if len(items) > 4 else ''}"
                for label, items in (("missing keys", missing), ("unexpected keys", unexpected),
                                     ("shape mismatch", mismatched)) if items]
    if problems:
        raise CheckpointError(f"{path} does not fit the model: " + " | ".join(problems))


def load_torch_state_dict(
    path: str | os.PathLike[str], float_dtype: np.dtype | type | None = np.float32,
    expected_shapes: Mapping[str, tuple[int, ...]] | None = None,
) -> dict[str, np.ndarray]:
    """Read a PyTorch ``state_dict`` saved with ``torch.save`` (zip or legacy format).

    Tensors saved on a GPU are read like CPU tensors (the location tag is ignored). A
    state_dict nested under ``"state_dict"``, ``"model_state_dict"`` or ``"model"`` in a bigger
    training checkpoint is found and returned.

    Args:
        path: The ``.pt`` / ``.pth`` file.
        float_dtype: Dtype for floating-point tensors (half, bfloat16, float, double);
            ``None`` keeps each tensor's own dtype (bfloat16 becomes float32 either way).
            Integer and bool tensors always keep theirs, so ``num_batches_tracked`` stays int64.
        expected_shapes: name -> shape of the model the file is for. When given, the
            names and shapes are checked *before* any tensor is materialised, so a file
            that does not fit costs nothing but its own bytes.

    Returns:
        Parameter name -> C-contiguous array with the tensor's shape, in the file's order,
        e.g. ``"head_conv.0.conv.weight"`` -> float32 (16, 3, 3, 3).

    Raises:
        CheckpointError: If the file is missing, truncated, corrupt or not a state_dict.
        UnsafeCheckpointError: If the pickle asks for anything besides tensors and storages.
    """
    path = Path(path)
    raw = read_model_file(path, "checkpoint")
    if raw.startswith(b"PK\x03\x04") or raw.startswith(b"PK\x05\x06"):
        obj, _ = _load_zip(path, raw)
    else:
        # Anything else is read as the legacy format, whose first item is a pickle; the
        # restricted unpickler reports a hostile pickle as such and garbage as garbage.
        obj, _ = _load_legacy(path, raw)
    state = _select_state_dict(obj, path)
    if expected_shapes is not None:
        _check_shapes(state, expected_shapes, path)
    dtype = None if float_dtype is None else np.dtype(float_dtype)
    return {name: _build_array(ref, dtype) for name, ref in state.items()}


def convert_checkpoint(
    pt_path: str | os.PathLike[str], npz_path: str | os.PathLike[str]
) -> dict[str, np.ndarray]:
    """Convert a PyTorch ``state_dict`` file to a plain ``.npz`` (one member per tensor).

    The ``.npz`` is written atomically (temporary file + ``os.replace``), has no metadata
    member, and loads with ``np.load(npz_path, allow_pickle=False)`` or ``load_checkpoint``.

    Args:
        pt_path: The PyTorch checkpoint to read.
        npz_path: Where to write the arrays; parent folders are created.

    Returns:
        The state_dict as returned by ``load_torch_state_dict(pt_path)``.

    Raises:
        CheckpointError: See ``load_torch_state_dict``.
    """
    state = load_torch_state_dict(pt_path)
    require_finite(state, f"{pt_path} (nothing written)")
    atomic_write(npz_path, lambda f: write_npz(f, state))
    return state


def main(argv: list[str] | None = None, print_fn: Callable[[str], Any] = print) -> int:
    """Command line: ``python -m minitorch_compress.io.torch_checkpoint IN.pt OUT.npz``.

    Args:
        argv: Arguments without the program name (default ``sys.argv[1:]``).
        print_fn: Where the summary line goes (tests pass a collector).

    Returns:
        The process exit code: 0 on success, 2 on bad usage, an OUT that exists or does not
        end in .npz, or a checkpoint that cannot be converted (unreadable, hostile, or
        holding a NaN or inf).
    """
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2 or args[0] in ("-h", "--help"):
        print_fn("usage: python -m minitorch_compress.io.torch_checkpoint IN.pt OUT.npz")
        return 2
    out = Path(args[1])
    try:
        if out.suffix != ".npz":  # what --weights reads as converted weights
            raise MinitorchError(f"{out}: a converted checkpoint ends in .npz")
        if out.exists() or out.is_symlink():  # never replaces a file (README.md was)
            raise MinitorchError(f"{out} already exists; this command never replaces a file: "
                                 "give a new name")
        state = convert_checkpoint(args[0], out)
    except MinitorchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    values = sum(a.size for a in state.values())
    print_fn(f"wrote {args[1]}: {len(state)} tensors, {values:,} values")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
