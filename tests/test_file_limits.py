"""Model-file readers refuse what no ResNet-20 file can be before reading or inflating it:
zip bombs (.npz and zip .pt), oversized files, devices and FIFOs (issue #34, part 2).

The hostile files are made here by small functions; the bound is lowered for the test so a
bomb of a few MB stands for one of a few GB (the check is the same comparison)."""

from __future__ import annotations

import io
import os
import threading
import zipfile

import numpy as np
import pytest

from minitorch_compress.errors import CheckpointError
from minitorch_compress.io import limits
from minitorch_compress.io.checkpoint import load_checkpoint
from minitorch_compress.io.torch_checkpoint import load_torch_state_dict

SMALL_BOUND = 1 << 20  # 1 MiB stands for MAX_MODEL_BYTES


@pytest.fixture
def small_bound(monkeypatch):
    monkeypatch.setattr(limits, "MAX_MODEL_BYTES", SMALL_BOUND)


def deflated_npz(path, inflated_bytes: int) -> None:
    """An .npz whose one float32 member inflates to `inflated_bytes` of zeros (honest header:
    the declared shape matches the member, only its size is out of bounds)."""
    buf = io.BytesIO()
    np.lib.format.write_array(buf, np.zeros(inflated_bytes // 4, np.float32))
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("w.npy", buf.getvalue())


def deflated_torch_zip(path, inflated_bytes: int) -> None:
    """A zip .pt (torch.save's layout) with a data.pkl and one storage of zeros."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("archive/data.pkl", b"\x80\x02}q\x00.")  # an empty dict
        zf.writestr("archive/data/0", bytes(inflated_bytes))


def test_npz_bomb_refused_before_inflating(tmp_path, small_bound):
    path = tmp_path / "bomb.npz"
    deflated_npz(path, 4 * SMALL_BOUND)
    assert path.stat().st_size < SMALL_BOUND  # small on disk, large inflated
    with pytest.raises(CheckpointError, match="inflate to"):
        load_checkpoint(path)


def test_npz_within_bound_still_loads(tmp_path, small_bound):
    path = tmp_path / "ok.npz"
    deflated_npz(path, SMALL_BOUND // 4)
    arrays, _ = load_checkpoint(path)
    assert arrays["w"].nbytes == SMALL_BOUND // 4


def test_torch_zip_bomb_refused(tmp_path, small_bound):
    path = tmp_path / "bomb.pt"
    deflated_torch_zip(path, 4 * SMALL_BOUND)
    with pytest.raises(CheckpointError, match="inflate to"):
        load_torch_state_dict(path)


@pytest.mark.parametrize("reader", [load_checkpoint, load_torch_state_dict])
def test_oversized_file_refused_unread(tmp_path, small_bound, reader):
    path = tmp_path / "big.bin"
    with open(path, "wb") as f:
        f.truncate(SMALL_BOUND + 1)  # sparse: costs no disk
    with pytest.raises(CheckpointError, match="more than any ResNet-20"):
        reader(path)


@pytest.mark.parametrize("reader", [load_checkpoint, load_torch_state_dict])
def test_device_refused(reader):
    with pytest.raises(CheckpointError, match="not a regular file"):
        reader("/dev/zero")


@pytest.mark.parametrize("reader", [load_checkpoint, load_torch_state_dict])
def test_fifo_refused_without_blocking(tmp_path, reader):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    outcome: list[BaseException] = []

    def attempt():
        try:
            reader(fifo)
        except BaseException as exc:  # noqa: BLE001 - handed to the assertion below
            outcome.append(exc)

    thread = threading.Thread(target=attempt, daemon=True)
    thread.start()
    thread.join(timeout=5)
    if thread.is_alive():  # it blocked opening the FIFO: unblock it, then fail
        with open(fifo, "wb"):
            pass
        pytest.fail("reading a FIFO blocked")
    assert isinstance(outcome[0], CheckpointError)
    assert "not a regular file" in str(outcome[0])


@pytest.mark.parametrize("reader", [load_checkpoint, load_torch_state_dict])
def test_folder_and_missing_refused(tmp_path, reader):
    with pytest.raises(CheckpointError, match="not a regular file"):
        reader(tmp_path)
    with pytest.raises(CheckpointError, match="not found"):
        reader(tmp_path / "absent.npz")


def test_evaluate_weights_device_is_one_line(capsys):
    from minitorch_compress.cli import main

    assert main(["evaluate", "--weights", "/dev/zero"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "not a regular file" in err


def test_disk_full_during_a_write_is_one_line_and_leaves_nothing(tmp_path):
    import errno

    from minitorch_compress.io.checkpoint import FileWriteError, atomic_write

    def full(f):
        f.write(b"partial")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    (tmp_path / "m.npz").write_bytes(b"old")
    with pytest.raises(FileWriteError, match="No space left on device"):
        atomic_write(tmp_path / "m.npz", full)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.npz"]
    assert (tmp_path / "m.npz").read_bytes() == b"old"


@pytest.mark.parametrize("length", [250, 300])
def test_long_file_names(tmp_path, length):
    from minitorch_compress.io.checkpoint import FileWriteError, atomic_write

    path = tmp_path / ("n" * (length - 4) + ".npz")
    if length > 255:
        with pytest.raises(FileWriteError, match="File name too long"):
            atomic_write(path, lambda f: f.write(b"x"))
    else:  # a legal name works, though the temporary file's name would be too long
        atomic_write(path, lambda f: f.write(b"x"))
        assert path.read_bytes() == b"x"


def test_deeply_nested_metadata_is_one_line(tmp_path):
    from minitorch_compress.io.checkpoint import META_KEY

    path = tmp_path / "deep.npz"
    with open(path, "wb") as f:
        write_npz_plain(f, {META_KEY: np.array("[" * 100_000 + "]" * 100_000)})
    with pytest.raises(CheckpointError, match="not valid JSON"):
        load_checkpoint(path)


def write_npz_plain(f, arrays):
    from minitorch_compress.io.checkpoint import write_npz

    write_npz(f, arrays)
