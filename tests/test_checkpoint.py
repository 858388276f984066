"""Tests for our own .npz checkpoint format (minitorch_compress.io.checkpoint)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from minitorch_compress.errors import CheckpointError, MinitorchError
from minitorch_compress.io import checkpoint as ckpt
from minitorch_compress.io.checkpoint import (
    META_KEY,
    generator_from_state,
    generator_state,
    load_checkpoint,
    save_checkpoint,
)


def _sample_state(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "model.head_conv.0.conv.weight": rng.standard_normal((16, 3, 3, 3)).astype(np.float32),
        "model.head_conv.1.num_batches_tracked": np.array(34017, dtype=np.int64),
        "optim.momentum.final_fc.linear.weight": rng.standard_normal((10, 64)),
        "mask.body_op.0.conv1.0.conv": rng.random((16, 16, 3, 3)) > 0.8,
        "file": np.arange(3),  # np.savez(file, **kw) would choke on this name; we must not
    }


def _assert_same(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> None:
    assert a.keys() == b.keys()
    for name in a:
        assert a[name].dtype == b[name].dtype, name
        assert a[name].shape == b[name].shape, name
        np.testing.assert_array_equal(a[name], b[name])


def _litter(folder) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


def test_round_trip_arrays_and_meta(tmp_path):
    arrays = _sample_state()
    rng = np.random.default_rng(123)
    rng.random(7)  # advance so the state is not the seed's initial one
    meta = {"epoch": np.int64(4), "best_acc": 0.8790, "rng": generator_state(rng), "tag": "é"}
    path = tmp_path / "run" / "last.npz"  # parent folder is created on demand

    save_checkpoint(path, arrays, meta)
    loaded, loaded_meta = load_checkpoint(path)

    _assert_same(arrays, loaded)
    assert loaded_meta["epoch"] == 4 and loaded_meta["best_acc"] == 0.8790
    assert loaded_meta["tag"] == "é"
    restored = generator_from_state(loaded_meta["rng"])
    np.testing.assert_array_equal(restored.random(5), rng.random(5))
    assert _litter(path.parent) == []


def test_file_is_a_plain_npz_without_pickle(tmp_path):
    path = tmp_path / "c.npz"
    save_checkpoint(path, {"model.w": np.ones(3, np.float32)}, {"epoch": 1})
    with np.load(path, allow_pickle=False) as npz:
        assert set(npz.files) == {"model.w", META_KEY}
        assert json.loads(str(npz[META_KEY][()])) == {"epoch": 1}


@settings(deadline=None, max_examples=30)
@given(
    arrays=st.dictionaries(
        keys=st.text(alphabet="abcdefghijklmnopqrstuvwxyz._0123456789", min_size=1, max_size=12),
        values=hnp.arrays(
            dtype=st.sampled_from([np.float32, np.float64, np.int64, np.uint8, np.bool_]),
            shape=hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=4),
            elements={"allow_nan": False, "allow_infinity": False},
        ),
        max_size=5,
    )
)
def test_round_trip_property(tmp_path_factory, arrays):
    path = tmp_path_factory.mktemp("prop") / "c.npz"
    save_checkpoint(path, arrays, {"n": len(arrays)})
    loaded, meta = load_checkpoint(path)
    _assert_same(arrays, loaded)
    assert meta == {"n": len(arrays)}


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_a_checkpoint_with_a_non_finite_value_is_never_written(tmp_path, bad):
    path = tmp_path / "last.npz"
    save_checkpoint(path, _sample_state(seed=1), {"epoch": 1})
    before = path.read_bytes()
    state = _sample_state(seed=2)
    state["model.head_conv.1.running_var"] = np.array([1.0, bad, 2.0], np.float32)
    with pytest.raises(ckpt.NonFiniteError, match="running_var"):
        save_checkpoint(path, state, {"epoch": 2})
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.npz"]


def test_a_header_declaring_a_huge_shape_is_refused_before_allocating(tmp_path):
    """A tiny member whose .npy header claims 10**11 float32 elements: refused from the
    header, with no attempt to allocate 400 GB."""
    import io
    import zipfile

    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        header, {"descr": "<f4", "fortran_order": False, "shape": (10**11,)})
    path = tmp_path / "huge.npz"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("model.w.npy", header.getvalue() + b"\0" * 64)
    with pytest.raises(CheckpointError, match="declares shape"):
        load_checkpoint(path)


def test_interrupted_write_keeps_previous_file_and_leaves_no_litter(tmp_path, monkeypatch):
    path = tmp_path / "best.npz"
    old = _sample_state(seed=1)
    save_checkpoint(path, old, {"epoch": 1})
    before = path.read_bytes()

    # Fail after a few members were written, i.e. with a half-written temp file on disk.
    real_write_array = np.lib.format.write_array
    calls = {"n": 0}

    def failing_write_array(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt  # the harshest case: not even an Exception subclass
        return real_write_array(*args, **kwargs)

    monkeypatch.setattr(np.lib.format, "write_array", failing_write_array)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(path, _sample_state(seed=2), {"epoch": 2})
    monkeypatch.undo()

    assert calls["n"] == 3
    assert path.read_bytes() == before
    assert _litter(tmp_path) == []
    loaded, meta = load_checkpoint(path)
    _assert_same(old, loaded)
    assert meta == {"epoch": 1}


def test_bad_meta_fails_before_touching_disk(tmp_path):
    path = tmp_path / "c.npz"
    with pytest.raises(TypeError, match="not JSON-serialisable"):
        save_checkpoint(path, {"w": np.zeros(2)}, {"bad": object()})
    assert list(tmp_path.iterdir()) == []


def test_reserved_and_object_names_are_refused(tmp_path):
    with pytest.raises(ValueError, match="reserved"):
        save_checkpoint(tmp_path / "a.npz", {META_KEY: np.zeros(1)}, {})
    with pytest.raises(ValueError, match="object"):
        save_checkpoint(tmp_path / "b.npz", {"w": np.array([None, 1], dtype=object)}, {})
    assert _litter(tmp_path) == []


def _one_line_error(path) -> str:
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    message = str(info.value)
    assert "\n" not in message and message
    assert isinstance(info.value, MinitorchError)
    return message


def test_missing_file_gives_clear_error(tmp_path):
    assert "not found" in _one_line_error(tmp_path / "nope.npz")


@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty", "flip"])
def test_corrupt_file_gives_clear_error(tmp_path, damage):
    path = tmp_path / "c.npz"
    save_checkpoint(path, _sample_state(), {"epoch": 3})
    data = bytearray(path.read_bytes())
    if damage == "truncate":
        data = data[: len(data) // 2]
    elif damage == "garbage":
        data = bytearray(b"this is not a checkpoint at all" * 10)
    elif damage == "empty":
        data = bytearray()
    else:  # flip bytes inside the first array's payload: the zip CRC check must catch it
        start = data.index(b"\x93NUMPY") + 200
        data[start : start + 8] = bytes(b ^ 0xFF for b in data[start : start + 8])
    path.write_bytes(bytes(data))
    assert str(path) in _one_line_error(path)


def test_plain_npz_without_meta_loads_with_empty_meta(tmp_path):
    path = tmp_path / "weights.npz"
    np.savez(path, w=np.arange(4.0))
    arrays, meta = load_checkpoint(path)
    assert meta == {}
    np.testing.assert_array_equal(arrays["w"], np.arange(4.0))


@pytest.mark.parametrize("name", ["PCG64", "PCG64DXSM", "MT19937", "Philox", "SFC64"])
def test_generator_state_round_trips_through_json(name):
    rng = np.random.Generator(getattr(np.random, name)(2024))
    rng.integers(0, 10, size=13)
    state = json.loads(json.dumps(generator_state(rng)))
    restored = generator_from_state(state)
    np.testing.assert_array_equal(restored.integers(0, 1000, size=20), rng.integers(0, 1000, 20))
    np.testing.assert_array_equal(restored.standard_normal(3), rng.standard_normal(3))


def test_unknown_bit_generator_is_refused():
    with pytest.raises(CheckpointError, match="unknown bit generator"):
        generator_from_state({"bit_generator": "os.system", "state": {}})


def test_atomic_write_is_public_and_cleans_up(tmp_path):
    def boom(f):
        f.write(b"partial")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        ckpt.atomic_write(tmp_path / "x.bin", boom)
    assert list(tmp_path.iterdir()) == []
