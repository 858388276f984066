"""Write a PyTorch ``state_dict`` file (``.pt``, zip format) without PyTorch.

This is how a model pruned or quantized here goes on to PyTorch (a GPU, a deployment tool):
``torch.load(path, weights_only=True)`` accepts the file and
``model.load_state_dict(state, strict=True)`` loads it into the course's PyTorch ResNet-20,
parameter names and all. A quantized model is exported with the float values it computes
with (its effective weights), so PyTorch computes what we computed.

The layout is ``torch.save``'s (PyTorch >= 1.6)::

    archive/data.pkl     the pickled OrderedDict {name: tensor}, protocol 2
    archive/data/<key>   one raw little-endian storage per tensor
    archive/byteorder    "little"
    archive/version      "3"

Each storage record starts on a 64-byte boundary of the file, as PyTorch writes it (so the
file can be memory-mapped); the padding is an extra field of the record's local header.

The pickle is written opcode by opcode (`_StateDictPickle`), not by `pickle.dumps`, because it
must name ``torch._utils._rebuild_tensor_v2`` and ``torch.FloatStorage`` without importing
torch. A tensor is ``_rebuild_tensor_v2(storage, offset, size, stride, requires_grad,
backward_hooks)``; its storage is a persistent id ``("storage", torch.FloatStorage, key,
"cpu", numel)`` that the loader resolves to ``archive/data/<key>``.
"""

from __future__ import annotations

import io
import struct
import zipfile
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from minitorch_compress.io.checkpoint import atomic_write

_STORAGE_CLASS = {np.dtype(np.float32): "FloatStorage", np.dtype(np.int64): "LongStorage"}
_ALIGN = 64


class _StateDictPickle:
    """Pickle protocol 2 opcodes for an OrderedDict of contiguous tensors."""

    def __init__(self) -> None:
        self.out = io.BytesIO()
        self.out.write(b"\x80\x02")  # PROTO 2

    def global_(self, module: str, name: str) -> None:
        self.out.write(b"c" + module.encode() + b"\n" + name.encode() + b"\n")  # GLOBAL

    def text(self, value: str) -> None:
        data = value.encode()
        self.out.write(b"X" + struct.pack("<I", len(data)) + data)  # BINUNICODE

    def integer(self, value: int) -> None:
        if 0 <= value < 2**31:
            self.out.write(b"J" + struct.pack("<i", value))  # BININT
        else:
            self.out.write(b"\x8a\x08" + struct.pack("<q", value))  # LONG1, 8 bytes

    def int_tuple(self, values: tuple[int, ...]) -> None:
        self.out.write(b"(")  # MARK
        for v in values:
            self.integer(v)
        self.out.write(b"t")  # TUPLE

    def empty_ordered_dict(self) -> None:
        self.global_("collections", "OrderedDict")
        self.out.write(b")R")  # EMPTY_TUPLE, REDUCE

    def tensor(self, key: str, kind: str, shape: tuple[int, ...], numel: int) -> None:
        self.global_("torch._utils", "_rebuild_tensor_v2")
        self.out.write(b"(")  # MARK: the arguments
        self.out.write(b"(")  # MARK: the persistent id
        self.text("storage")
        self.global_("torch", kind)
        self.text(key)
        self.text("cpu")
        self.integer(numel)
        self.out.write(b"tQ")  # TUPLE, BINPERSID
        self.integer(0)  # storage offset
        self.int_tuple(shape)
        strides = [1] * len(shape)
        for i in range(len(shape) - 2, -1, -1):
            strides[i] = strides[i + 1] * shape[i + 1]
        self.int_tuple(tuple(strides))
        self.out.write(b"\x89")  # NEWFALSE: requires_grad
        self.empty_ordered_dict()  # backward hooks
        self.out.write(b"tR")  # TUPLE, REDUCE

    def dump(self, state: Mapping[str, np.ndarray]) -> bytes:
        self.empty_ordered_dict()
        self.out.write(b"(")  # MARK
        for key, (name, value) in enumerate(state.items()):
            self.text(name)
            self.tensor(str(key), _STORAGE_CLASS[value.dtype], tuple(value.shape), value.size)
        self.out.write(b"u.")  # SETITEMS, STOP
        return self.out.getvalue()


def torch_state(state: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """`state` as PyTorch holds it: float32 tensors, int64 ``num_batches_tracked``."""
    out = {}
    for name, value in state.items():
        value = np.asarray(value)
        dtype = np.int64 if value.dtype.kind in "iub" else np.float32
        out[name] = np.array(value, dtype=dtype, order="C")
    return out


def _aligned(zf: zipfile.ZipFile, name: str, data: bytes) -> None:
    """Write one stored member whose data starts on a 64-byte boundary of the file."""
    info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
    info.compress_type = zipfile.ZIP_STORED
    start = zf.fp.tell() + 30 + len(name.encode())  # local header: 30 bytes + the name
    pad = (-start) % _ALIGN
    if 0 < pad < 4:
        pad += _ALIGN  # an extra field needs 4 bytes of its own header
    if pad:
        info.extra = struct.pack("<HH", 0xCAFE, pad - 4) + b"\0" * (pad - 4)
    zf.writestr(info, data)


def write_torch_state_dict(path: str | Path, state: Mapping[str, np.ndarray]) -> None:
    """Write `state` (name -> array) as a zip-format PyTorch checkpoint, atomically."""
    state = torch_state(state)
    pickled = _StateDictPickle().dump(state)

    def write(f) -> None:
        with zipfile.ZipFile(f, "w", compression=zipfile.ZIP_STORED) as zf:
            _aligned(zf, "archive/data.pkl", pickled)
            _aligned(zf, "archive/byteorder", b"little")
            for key, value in enumerate(state.values()):
                _aligned(zf, f"archive/data/{key}", value.astype(value.dtype.newbyteorder("<"))
                         .tobytes())
            _aligned(zf, "archive/version", b"3\n")

    atomic_write(path, write)
