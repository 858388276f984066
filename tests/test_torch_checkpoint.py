"""Tests for the torch-free PyTorch checkpoint reader (minitorch_compress.io.torch_checkpoint).

We cannot use torch to write test files, so ``_write_pt`` writes them the way ``torch.save``
does: ``data.pkl`` is pickled with protocol 2 from stand-in objects whose ``__module__`` and
``__qualname__`` say ``torch._utils._rebuild_tensor_v2`` / ``torch.FloatStorage``, so the
pickle holds exactly the GLOBAL opcodes and persistent ids a real checkpoint has. Pickle looks
those names up in ``sys.modules`` while *writing*, so fake ``torch`` modules are registered for
the duration of one ``dumps`` call only; the reader under test never imports anything.
"""

from __future__ import annotations

import hashlib
import io
import itertools
import math
import os
import pickle
import struct
import sys
import types
import zipfile
from collections import OrderedDict
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from minitorch_compress.errors import CheckpointError, UnsafeCheckpointError
from minitorch_compress.io.checkpoint import load_checkpoint
from minitorch_compress.io.torch_checkpoint import (
    LEGACY_MAGIC_NUMBER,
    convert_checkpoint,
    load_torch_state_dict,
    main,
)

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
PRETRAINED = SHARED / "weights" / "pretrained_model.pt"
PRETRAINED_MD5 = "5a5668bb68958097cca334bd1005f918"


# --------------------------------------------------------------------------------------------
# Writing .pt files without torch.
# --------------------------------------------------------------------------------------------


def _rebuild_tensor_v2(*args):  # never called: only its name ends up in the pickle
    raise AssertionError


_rebuild_tensor_v2.__module__ = "torch._utils"


def _rebuild_parameter(*args):
    raise AssertionError


_rebuild_parameter.__module__ = "torch._utils"

# numpy dtype -> torch storage class name
_STORAGE_NAMES = {
    np.dtype(np.float32): "FloatStorage",
    np.dtype(np.float64): "DoubleStorage",
    np.dtype(np.float16): "HalfStorage",
    np.dtype(np.int64): "LongStorage",
    np.dtype(np.int32): "IntStorage",
    np.dtype(np.int16): "ShortStorage",
    np.dtype(np.int8): "CharStorage",
    np.dtype(np.uint8): "ByteStorage",
    np.dtype(np.bool_): "BoolStorage",
}
_STORAGE_CLASSES = {
    name: type(name, (), {"__module__": "torch"})
    for name in [*_STORAGE_NAMES.values(), "BFloat16Storage"]
}


class FakeStorage:
    """A storage: flat data plus the torch storage class it pretends to be."""

    def __init__(self, key: str, flat: np.ndarray, kind: str | None = None) -> None:
        self.key, self.flat = key, np.array(flat).ravel()
        self.kind = kind or _STORAGE_NAMES[self.flat.dtype]


class FakeTensor:
    """Pickles like a torch tensor: ``_rebuild_tensor_v2(storage, offset, size, stride, ...)``."""

    def __init__(self, storage, offset, size, stride, parameter=False, build_state=None):
        self.args = (storage, offset, tuple(size), tuple(stride), False, OrderedDict())
        self.parameter = parameter
        self.build_state = build_state  # a hostile file could append a BUILD opcode

    def __reduce__(self):
        if self.parameter:  # nn.Parameter wraps the tensor in _rebuild_parameter
            return (_rebuild_parameter, (FakeTensor(*self.args[:4]), True, OrderedDict()))
        if self.build_state is not None:
            return (_rebuild_tensor_v2, self.args, self.build_state)
        return (_rebuild_tensor_v2, self.args)


def tensor(key: str, arr: np.ndarray) -> FakeTensor:
    """A contiguous tensor with its own storage."""
    arr = np.array(arr, order="C")  # not ascontiguousarray: it turns 0-d into 1-d
    strides = tuple(s // arr.itemsize for s in arr.strides)
    return FakeTensor(FakeStorage(key, arr), 0, arr.shape, strides)


@contextmanager
def _fake_torch_modules():
    fake_torch = types.ModuleType("torch")
    fake_utils = types.ModuleType("torch._utils")
    fake_utils._rebuild_tensor_v2 = _rebuild_tensor_v2
    fake_utils._rebuild_parameter = _rebuild_parameter
    for name, cls in _STORAGE_CLASSES.items():
        setattr(fake_torch, name, cls)
    fake_torch._utils = fake_utils
    saved = {name: sys.modules.get(name) for name in ("torch", "torch._utils")}
    sys.modules.update({"torch": fake_torch, "torch._utils": fake_utils})
    try:
        yield
    finally:
        for name, module in saved.items():
            if module is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module


def _collect_storages(obj) -> dict[str, FakeStorage]:
    """All storages reachable from a (nested) dict of FakeTensors, by key."""
    found: dict[str, FakeStorage] = {}
    stack = [obj]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, FakeTensor):
            storage = item.args[0]
            found[storage.key] = storage
    return found


def _dumps(obj, legacy: bool) -> bytes:
    def persistent_id(item):
        if isinstance(item, FakeStorage):
            pid = ("storage", _STORAGE_CLASSES[item.kind], item.key, "cuda:0", item.flat.size)
            return (*pid, None) if legacy else pid
        return None

    buffer = io.BytesIO()
    with _fake_torch_modules():
        pickler = pickle.Pickler(buffer, protocol=2)
        pickler.persistent_id = persistent_id
        pickler.dump(obj)
    return buffer.getvalue()


def _storage_bytes(storage: FakeStorage, byteorder: str) -> bytes:
    flat = storage.flat
    if flat.dtype.itemsize > 1:
        flat = flat.astype(flat.dtype.newbyteorder("<" if byteorder == "little" else ">"))
    return flat.tobytes()


def write_zip_pt(
    path: Path,
    obj,
    folder: str = "archive",
    byteorder: str | None = "little",
    skip: set[str] = frozenset(),
    data_pkl: bytes | None = None,
) -> Path:
    """Write ``obj`` like ``torch.save`` (zip format). ``skip`` drops storage members."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as zf:
        zf.writestr(f"{folder}/data.pkl", data_pkl or _dumps(obj, legacy=False))
        if byteorder is not None:
            zf.writestr(f"{folder}/byteorder", byteorder)
        for key, storage in _collect_storages(obj).items():
            if key not in skip:
                zf.writestr(f"{folder}/data/{key}", _storage_bytes(storage, byteorder or "little"))
        zf.writestr(f"{folder}/version", "3\n")
    return path


def write_legacy_pt(path: Path, obj) -> Path:
    """Write ``obj`` like ``torch.save(..., _use_new_zipfile_serialization=False)``."""
    storages = _collect_storages(obj)
    sys_info = {"protocol_version": 1001, "little_endian": True, "type_sizes": {"int": 4}}
    parts = [pickle.dumps(x, protocol=2) for x in (LEGACY_MAGIC_NUMBER, 1001, sys_info)]
    parts.append(_dumps(obj, legacy=True))
    parts.append(pickle.dumps(sorted(storages), protocol=2))
    for key in sorted(storages):
        parts.append(struct.pack("<q", storages[key].flat.size))
        parts.append(_storage_bytes(storages[key], "little"))
    path.write_bytes(b"".join(parts))
    return path


def _sample_arrays() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    conv = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
    flat = rng.standard_normal(40).astype(np.float32)
    return conv, flat


def _sample_state() -> dict:
    conv, flat = _sample_arrays()
    shared = FakeStorage("7", flat)
    return OrderedDict(
        [
            ("conv.weight", tensor("0", conv)),
            ("bn.num_batches_tracked", tensor("1", np.array(34017, dtype=np.int64))),
            # A transposed (non-contiguous) view with a storage offset, sharing storage "7".
            ("fc.weight_t", FakeTensor(shared, 5, (3, 4), (1, 3))),
            ("fc.bias", FakeTensor(shared, 20, (4,), (2,))),
            ("fc.weight", FakeTensor(shared, 0, (2, 3), (3, 1), parameter=True)),
            ("empty", tensor("2", np.zeros((0, 3), np.float32))),
        ]
    )


def _expected_sample() -> dict[str, np.ndarray]:
    """What the reader must return for ``_sample_state``, computed by plain indexing."""
    conv, flat = _sample_arrays()
    return {
        "conv.weight": conv,
        "bn.num_batches_tracked": np.array(34017, dtype=np.int64),
        "fc.weight_t": np.array([[flat[5 + i + 3 * j] for j in range(4)] for i in range(3)]),
        "fc.bias": flat[20:28:2],
        "fc.weight": flat[:6].reshape(2, 3),
        "empty": np.zeros((0, 3), np.float32),
    }


def _assert_state_equal(got: dict[str, np.ndarray], want: dict[str, np.ndarray]) -> None:
    assert list(got) == list(want)
    for name, value in want.items():
        assert got[name].dtype == value.dtype, name
        assert got[name].shape == value.shape, name
        assert got[name].flags.c_contiguous, name
        np.testing.assert_array_equal(got[name], value, err_msg=name)


def _one_line(exc_info) -> str:
    message = str(exc_info.value)
    assert message and "\n" not in message
    return message


# --------------------------------------------------------------------------------------------
# Round trips.
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("writer", ["zip", "legacy"])
def test_round_trip_exact_with_strides_offsets_and_shared_storage(tmp_path, writer):
    path = tmp_path / "m.pt"
    if writer == "zip":
        write_zip_pt(path, _sample_state())
    else:
        write_legacy_pt(path, _sample_state())
    got = load_torch_state_dict(path)
    _assert_state_equal(got, _expected_sample())


def test_reading_and_writing_checkpoints_never_imports_torch(tmp_path):
    """In a fresh process (other tests here may import torch themselves): the reader and
    the exporter import nothing named torch."""
    import subprocess

    code = (
        "import sys, numpy as np\n"
        "from minitorch_compress.io.torch_export import write_torch_state_dict\n"
        "from minitorch_compress.io.torch_checkpoint import load_torch_state_dict\n"
        f"path = {str(tmp_path / 'm.pt')!r}\n"
        "write_torch_state_dict(path, {'w': np.arange(6, dtype=np.float32).reshape(2, 3)})\n"
        "assert load_torch_state_dict(path)['w'].shape == (2, 3)\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
        "print('no torch')\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0 and "no torch" in out.stdout, out.stderr[-2000:]


def test_archive_folder_name_and_missing_byteorder_are_accepted(tmp_path):
    path = write_zip_pt(tmp_path / "m.pt", _sample_state(), folder="resnet20", byteorder=None)
    _assert_state_equal(load_torch_state_dict(path), _expected_sample())


def test_big_endian_storages(tmp_path):
    state = {"w": tensor("0", np.arange(6, dtype=np.float32).reshape(2, 3))}
    path = write_zip_pt(tmp_path / "m.pt", state, byteorder="big")
    np.testing.assert_array_equal(load_torch_state_dict(path)["w"], np.arange(6.0).reshape(2, 3))


@pytest.mark.parametrize(
    "dtype", [np.float64, np.float16, np.int64, np.int32, np.int16, np.int8, np.uint8, np.bool_]
)
def test_storage_dtypes(tmp_path, dtype):
    values = (np.arange(12) % 5 - 2).astype(dtype).reshape(3, 4)
    path = write_zip_pt(tmp_path / "m.pt", {"x": tensor("0", values)})
    got = load_torch_state_dict(path)["x"]
    expected_dtype = np.float32 if np.dtype(dtype).kind == "f" else np.dtype(dtype)
    assert got.dtype == expected_dtype
    np.testing.assert_array_equal(got, values.astype(expected_dtype))
    kept = load_torch_state_dict(path, float_dtype=None)["x"]
    assert kept.dtype == np.dtype(dtype)


def test_bfloat16_is_widened_to_float32(tmp_path):
    values = np.array([1.0, -2.5, 3.140625, 0.0], dtype=np.float32)  # exact in bfloat16
    top_halves = (values.view(np.uint32) >> 16).astype(np.uint16)
    state = {"x": FakeTensor(FakeStorage("0", top_halves, kind="BFloat16Storage"), 0, (4,), (1,))}
    got = load_torch_state_dict(write_zip_pt(tmp_path / "m.pt", state))["x"]
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, values)


@pytest.mark.parametrize("outer", ["state_dict", "model"])
def test_nested_state_dict_is_found(tmp_path, outer):
    obj = {"epoch": 12, "best_acc": 0.9151, outer: _sample_state()}
    got = load_torch_state_dict(write_zip_pt(tmp_path / "m.pt", obj))
    _assert_state_equal(got, _expected_sample())


def test_non_tensor_entry_without_nesting_is_refused(tmp_path):
    path = write_zip_pt(tmp_path / "m.pt", {"w": tensor("0", np.ones(2)), "epoch": 3})
    with pytest.raises(CheckpointError, match="'epoch' has type int, not a tensor") as info:
        load_torch_state_dict(path)
    _one_line(info)


@settings(
    deadline=None, max_examples=25, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    shape=st.lists(st.integers(1, 4), min_size=0, max_size=4),
    data=st.data(),
)
def test_arbitrary_strided_views_match_numpy(tmp_path, shape, data):
    """Any in-bounds (offset, stride) view reads what NumPy's own strided view shows."""
    strides = [data.draw(st.integers(0, 7)) for _ in shape]
    offset = data.draw(st.integers(0, 5))
    numel = offset + sum((n - 1) * s for n, s in zip(shape, strides, strict=True)) + 1
    numel += data.draw(st.integers(0, 3))  # storage may be longer than the view needs
    flat = np.arange(numel, dtype=np.float32) * 0.5
    state = {"v": FakeTensor(FakeStorage("0", flat), offset, shape, strides)}
    if math.prod(shape) > numel:  # a view that repeats its storage: never in a state_dict
        with pytest.raises(CheckpointError, match="stride-0 or overlapping"):
            load_torch_state_dict(write_zip_pt(tmp_path / "m.pt", state))
        return
    got = load_torch_state_dict(write_zip_pt(tmp_path / "m.pt", state))["v"]
    expected = [
        flat[offset + sum(i * s for i, s in zip(index, strides, strict=True))]
        for index in itertools.product(*(range(n) for n in shape))
    ]
    np.testing.assert_array_equal(got.ravel(), expected)
    assert got.shape == tuple(shape)


def test_a_huge_stride_0_view_is_refused_before_anything_is_allocated(tmp_path):
    """A tiny file declaring a 32768 x 16384 tensor over a 1-element storage (stride 0) must
    not make the loader build a 2 GB array (memory is bounded by the file's real size)."""
    state = {"v": FakeTensor(FakeStorage("0", np.zeros(1, np.float32)), 0, (32768, 16384),
                             (0, 0))}
    path = write_zip_pt(tmp_path / "m.pt", state)
    assert path.stat().st_size < 4096
    with pytest.raises(CheckpointError, match="536,870,912 elements but its storage holds 1"):
        load_torch_state_dict(path)


def test_out_of_bounds_view_is_refused_not_read(tmp_path):
    state = {"v": FakeTensor(FakeStorage("0", np.zeros(10, np.float32)), 4, (3, 3), (3, 1))}
    with pytest.raises(CheckpointError, match="reaches element 12 of a storage of 10") as info:
        load_torch_state_dict(write_zip_pt(tmp_path / "m.pt", state))
    _one_line(info)


def test_tensor_modified_after_validation_is_refused(tmp_path):
    """A BUILD opcode that enlarges a checked tensor must not lead to an out-of-bounds read."""
    storage = FakeStorage("0", np.zeros(4, np.float32))
    state = {"v": FakeTensor(storage, 0, (4,), (1,), build_state={"size": (10**6,)})}
    with pytest.raises(CheckpointError, match="modify a tensor") as info:
        load_torch_state_dict(write_zip_pt(tmp_path / "m.pt", state))
    _one_line(info)


# --------------------------------------------------------------------------------------------
# Malicious files: refused, and the payload never runs.
# --------------------------------------------------------------------------------------------


class _Evil:
    def __init__(self, func, arg):
        self.func, self.arg = func, arg

    def __reduce__(self):
        return (self.func, (self.arg,))


def _evil_payloads(marker: Path) -> list[tuple[str, bytes]]:
    """(global the pickle asks for, pickle bytes) pairs that would create ``marker``."""
    code = f"open({str(marker)!r}, 'w').write('pwned')"
    system = f"{os.system.__module__}.system"  # 'posix.system' on Linux, 'nt.system' on Windows
    return [
        (system, pickle.dumps(_Evil(os.system, f"touch {marker}"), protocol=2)),
        # Protocol 2 writes Python 3's 'builtins' under its Python 2 name.
        ("__builtin__.eval", pickle.dumps(_Evil(eval, code), protocol=2)),
        ("builtins.exec", pickle.dumps(_Evil(exec, code), protocol=4)),  # STACK_GLOBAL
        # Hand-written protocol-0 pickle, the classic exploit string.
        ("os.system", f"cos\nsystem\n(S'touch {marker}'\ntR.".encode()),
    ]


@pytest.mark.parametrize("container", ["zip", "legacy-main", "legacy-magic"])
def test_malicious_pickles_are_refused_and_never_run(tmp_path, container):
    marker = tmp_path / "pwned"
    for expected_global, payload in _evil_payloads(marker):
        path = tmp_path / "evil.pt"
        if container == "zip":
            write_zip_pt(path, {}, data_pkl=payload)
        elif container == "legacy-magic":
            path.write_bytes(payload)
        else:
            head = b"".join(pickle.dumps(x, protocol=2) for x in (LEGACY_MAGIC_NUMBER, 1001, {}))
            path.write_bytes(head + payload)
        with pytest.raises(UnsafeCheckpointError) as info:
            load_torch_state_dict(path)
        message = _one_line(info)
        assert f"global '{expected_global}'" in message and "refusing to load it" in message
        assert not marker.exists(), f"{expected_global} payload ran"


def test_refusal_message_names_the_global(tmp_path):
    path = write_zip_pt(tmp_path / "evil.pt", {}, data_pkl=b"cos\nsystem\n(S'true'\ntR.")
    with pytest.raises(UnsafeCheckpointError) as info:
        load_torch_state_dict(path)
    assert str(info.value) == (
        "checkpoint asks for global 'os.system', which a state_dict never needs; refusing to "
        "load it"
    )
    assert isinstance(info.value, CheckpointError)  # callers may catch the general class


def test_whole_pickled_module_is_refused(tmp_path):
    """torch.save(model) (not model.state_dict()) stores ('module', ...) records."""

    def persistent_id(item):
        return ("module", "Net", "source code") if item == "NET" else None

    buffer = io.BytesIO()
    pickler = pickle.Pickler(buffer, protocol=2)
    pickler.persistent_id = persistent_id
    pickler.dump({"net": "NET"})
    path = write_zip_pt(tmp_path / "m.pt", {}, data_pkl=buffer.getvalue())
    with pytest.raises(UnsafeCheckpointError, match="state_dict"):
        load_torch_state_dict(path)


# --------------------------------------------------------------------------------------------
# Broken files: one-line CheckpointError, never a zipfile/pickle traceback.
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("writer", ["zip", "legacy"])
def test_truncated_file(tmp_path, writer):
    path = tmp_path / "m.pt"
    (write_zip_pt if writer == "zip" else write_legacy_pt)(path, _sample_state())
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 10])
    with pytest.raises(CheckpointError) as info:
        load_torch_state_dict(path)
    assert "truncated" in _one_line(info)


@pytest.mark.parametrize("content", [b"", b"garbage bytes, not a checkpoint\n" * 4, b"\x80\x02}q"])
def test_garbage_bytes(tmp_path, content):
    path = tmp_path / "m.pt"
    path.write_bytes(content)
    with pytest.raises(CheckpointError) as info:
        load_torch_state_dict(path)
    assert str(path) in _one_line(info)


def test_missing_file(tmp_path):
    with pytest.raises(CheckpointError, match="not found") as info:
        load_torch_state_dict(tmp_path / "nope.pt")
    _one_line(info)


def test_missing_storage_member(tmp_path):
    path = write_zip_pt(tmp_path / "m.pt", _sample_state(), skip={"7"})
    with pytest.raises(CheckpointError, match="'archive/data/7' is missing") as info:
        load_torch_state_dict(path)
    _one_line(info)


def test_short_storage_member(tmp_path):
    state = {"w": FakeTensor(FakeStorage("0", np.zeros(3, np.float32)), 0, (3,), (1,))}
    pkl = _dumps(state, legacy=False)
    with zipfile.ZipFile(tmp_path / "m.pt", "w") as zf:
        zf.writestr("archive/data.pkl", pkl)
        zf.writestr("archive/data/0", b"\0" * 8)  # 2 floats instead of 3
    with pytest.raises(CheckpointError, match="holds 8 bytes, but 3 elements") as info:
        load_torch_state_dict(tmp_path / "m.pt")
    assert str(tmp_path / "m.pt") in _one_line(info)


@settings(
    deadline=None, max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    writer=st.sampled_from(["zip", "legacy"]),
    cut=st.floats(0.0, 1.0, exclude_max=True),
    flips=st.lists(
        st.tuples(st.floats(0.0, 1.0, exclude_max=True), st.integers(1, 255)), max_size=3
    ),
)
# a flip in a zip local-header field no reader uses (the general-purpose flags of
# archive/version): the file is still correct, and loads with the right values
@example(writer="zip", cut=0.0, flips=[(0.75, 1)])
# a flipped compression method that zipfile does not know (NotImplementedError)
@example(writer="zip", cut=0.0, flips=[(0.0, 1), (0.0, 1), (0.84, 1)])
def test_damaged_files_only_ever_raise_checkpoint_error(tmp_path, writer, cut, flips):
    """Fuzz: a truncated or bit-flipped file gives a one-line CheckpointError, never another
    exception or a crash, and never wrong values from a zip file: either an error, or exactly
    the undamaged file's tensors (a flip can land in a byte no reader uses). Truncation is
    always detected. The legacy format has no checksum, so there a flipped data byte can
    change a value unnoticed; nothing but the error type is asserted for it."""
    path = tmp_path / "m.pt"
    (write_zip_pt if writer == "zip" else write_legacy_pt)(path, _sample_state())
    intact = load_torch_state_dict(path)
    data = bytearray(path.read_bytes())
    for where, xor in flips:
        data[int(where * len(data))] ^= xor
    if cut > 0.0:
        data = data[: int(cut * len(data))]
    path.write_bytes(bytes(data))
    try:
        got = load_torch_state_dict(path)
    except CheckpointError as exc:
        assert str(exc) and "\n" not in str(exc)
    else:
        assert cut == 0.0
        assert all(isinstance(v, np.ndarray) for v in got.values())
        if writer == "zip":
            _assert_state_equal(got, intact)


# --------------------------------------------------------------------------------------------
# convert_checkpoint and the CLI.
# --------------------------------------------------------------------------------------------


def test_convert_checkpoint_writes_plain_npz(tmp_path):
    pt = write_legacy_pt(tmp_path / "m.pt", _sample_state())
    out = tmp_path / "weights" / "m.npz"
    state = convert_checkpoint(pt, out)
    _assert_state_equal(state, _expected_sample())
    with np.load(out, allow_pickle=False) as npz:
        assert sorted(npz.files) == sorted(state)
    arrays, meta = load_checkpoint(out)
    assert meta == {}
    _assert_state_equal({k: arrays[k] for k in state}, _expected_sample())
    assert [p.name for p in out.parent.iterdir()] == ["m.npz"]


def test_cli(tmp_path, capsys):
    pt = write_zip_pt(tmp_path / "m.pt", _sample_state())
    lines: list[str] = []
    assert main([str(pt), str(tmp_path / "m.npz")], print_fn=lines.append) == 0
    assert lines == [f"wrote {tmp_path / 'm.npz'}: 6 tensors, {1 + 108 + 12 + 4 + 6:,} values"]
    assert main([str(tmp_path / "missing.pt"), str(tmp_path / "x.npz")]) == 2
    assert capsys.readouterr().err.startswith("error: checkpoint not found")
    assert main(["only-one-arg"], print_fn=lines.append) == 2
    # issue #34: it replaced any OUT (README.md became an .npz), and wrote any suffix
    mine = tmp_path / "mine.npz"
    mine.write_bytes(b"mine")
    assert main([str(pt), str(mine)]) == 2
    assert "already exists; this command never replaces a file" in capsys.readouterr().err
    assert mine.read_bytes() == b"mine"
    assert main([str(pt), str(tmp_path / "README.md")]) == 2
    assert "ends in .npz" in capsys.readouterr().err
    assert not (tmp_path / "README.md").exists()


# --------------------------------------------------------------------------------------------
# The course's real checkpoint.
# --------------------------------------------------------------------------------------------


def _expected_pretrained_shapes() -> dict[str, tuple[int, ...]]:
    shapes: dict[str, tuple[int, ...]] = {}

    def conv_bn(prefix: str, c_out: int, c_in: int, k: int) -> None:
        shapes[f"{prefix}.0.conv.weight"] = (c_out, c_in, k, k)
        for name in ("weight", "bias", "running_mean", "running_var"):
            shapes[f"{prefix}.1.{name}"] = (c_out,)
        shapes[f"{prefix}.1.num_batches_tracked"] = ()

    conv_bn("head_conv", 16, 3, 3)
    c_in = 16
    for i in range(9):
        c_out = (16, 32, 64)[i // 3]
        conv_bn(f"body_op.{i}.conv1", c_out, c_in, 3)
        conv_bn(f"body_op.{i}.conv2", c_out, c_out, 3)
        if c_in != c_out:
            conv_bn(f"body_op.{i}.id_mapping", c_out, c_in, 1)
        c_in = c_out
    shapes["final_fc.linear.weight"] = (10, 64)
    shapes["final_fc.linear.bias"] = (10,)
    return shapes


@pytest.mark.skipif(not PRETRAINED.is_file(), reason=f"shared checkpoint absent: {PRETRAINED}")
def test_real_pretrained_checkpoint(tmp_path):
    assert hashlib.md5(PRETRAINED.read_bytes()).hexdigest() == PRETRAINED_MD5
    state = load_torch_state_dict(PRETRAINED)
    expected = _expected_pretrained_shapes()
    assert set(state) == set(expected)
    assert {k: v.shape for k, v in state.items()} == expected
    assert len(state) == 128
    # 270,896 = every conv weight (incl. the two 1x1 shortcut convs, 512 + 2,048) + FC weight;
    # biases and batch-norm tensors are not counted.
    weights = [k for k in state if k.endswith(".conv.weight") or k == "final_fc.linear.weight"]
    assert sum(state[k].size for k in weights) == 270_896
    for name, value in state.items():
        if name.endswith("num_batches_tracked"):
            assert value.dtype == np.int64 and value == 34017
        else:
            assert value.dtype == np.float32 and np.isfinite(value).all()
            assert value.flags.c_contiguous
    assert all((state[k] > 0).all() for k in state if k.endswith("running_var"))
    # convert_checkpoint produces the same arrays.
    converted = convert_checkpoint(PRETRAINED, tmp_path / "resnet20.npz")
    with np.load(tmp_path / "resnet20.npz", allow_pickle=False) as npz:
        for name in converted:
            np.testing.assert_array_equal(npz[name], state[name])


def test_converter_refuses_a_nan_checkpoint_and_writes_nothing(tmp_path, capsys):
    state = OrderedDict([("w", tensor("0", np.array([1.0, np.nan], np.float32)))])
    pt = write_zip_pt(tmp_path / "nan.pt", state)
    assert main([str(pt), str(tmp_path / "out.npz")]) == 2
    assert "nan" in capsys.readouterr().err.lower()
    assert not (tmp_path / "out.npz").exists()
