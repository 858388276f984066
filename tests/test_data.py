"""Tests for the CIFAR-10 pipeline: locating, downloading, loading, transforms, batching.

Synthetic datasets are written in the official format (pickled dicts with bytes keys
``b"data"``: uint8 (n, 3072), ``b"labels"``: list of ints) with a few images per batch, so the
tests never need the real 170 MB download. Downloads are served from a loopback HTTP server.
"""

from __future__ import annotations

import functools
import hashlib
import http.server
import io
import os
import pickle
import socket
import tarfile
import threading
from pathlib import Path

import numpy as np
import pytest
from cifar_files import CIFAR10_BATCH_NAMES, cifar10_batch_bytes, cifar10_meta_bytes
from hypothesis import given, settings
from hypothesis import strategies as st

from minitorch_compress.data import cifar10
from minitorch_compress.data.cifar10 import (
    ENV_VAR,
    FOLDER_NAME,
    OFFICIAL_URL,
    TARBALL_NAME,
    download_cifar10,
    find_cifar10,
    load_cifar10,
)
from minitorch_compress.data.loader import iterate_batches, num_batches
from minitorch_compress.data.transforms import (
    CIFAR10_MEAN,
    CIFAR10_STD,
    crop_flip,
    crop_flip_params,
    normalize,
    random_crop_flip,
)
from minitorch_compress.errors import (
    DatasetError,
    DatasetNotFoundError,
    DownloadError,
    MinitorchError,
)

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
BATCH_NAMES = CIFAR10_BATCH_NAMES


# --------------------------------------------------------------------------------------------
# Synthetic datasets in the official format.
# --------------------------------------------------------------------------------------------


def _batch_arrays(name: str, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Deterministic (n, 3072) uint8 pixels and labels for a batch name."""
    seed = BATCH_NAMES.index(name)
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, 3072), dtype=np.uint8), rng.integers(0, 10, n)


def _batch_bytes(name: str, n: int) -> bytes:
    return cifar10_batch_bytes(name, *_batch_arrays(name, n))


def _expected(n: int = 4) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    train = [_batch_arrays(name, n) for name in BATCH_NAMES[:5]]
    x_test, y_test = _batch_arrays("test_batch", n)
    x_train = np.concatenate([d for d, _ in train]).reshape(-1, 3, 32, 32)
    y_train = np.concatenate([lab for _, lab in train])
    return x_train, y_train, x_test.reshape(-1, 3, 32, 32), y_test


def make_folder(parent: Path, n: int = 4) -> Path:
    folder = parent / FOLDER_NAME
    folder.mkdir(parents=True)
    for name in BATCH_NAMES:
        (folder / name).write_bytes(_batch_bytes(name, n))
    (folder / "batches.meta").write_bytes(cifar10_meta_bytes())
    return folder


def make_tarball(
    parent: Path,
    n: int = 4,
    extra: dict[str, bytes] | None = None,
    symlinks: dict[str, str] | None = None,
) -> Path:
    """A .tar.gz like the official one, members in a scrambled order as in the real file.

    ``extra`` adds file members and ``symlinks`` link members (name -> target), for testing
    that extraction ignores them."""
    parent.mkdir(parents=True, exist_ok=True)
    path = parent / TARBALL_NAME
    members = {f"{FOLDER_NAME}/{name}": _batch_bytes(name, n) for name in BATCH_NAMES}
    members.update(extra or {})
    order = ["data_batch_4", "test_batch", "data_batch_3", "data_batch_2", "data_batch_5"]
    names = [f"{FOLDER_NAME}/{o}" for o in order] + sorted(
        set(members) - {f"{FOLDER_NAME}/{o}" for o in order}
    )
    with tarfile.open(path, "w:gz") as tar:
        for name in names:
            info = tarfile.TarInfo(name)
            info.size = len(members[name])
            tar.addfile(info, io.BytesIO(members[name]))
        for name, target in (symlinks or {}).items():
            info = tarfile.TarInfo(name)
            info.type, info.linkname = tarfile.SYMTYPE, target
            tar.addfile(info)
    return path


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def _assert_dataset(data, n: int = 4) -> None:
    x_train, y_train, x_test, y_test = _expected(n)
    assert data.x_train.dtype == np.uint8 and data.x_train.shape == (5 * n, 3, 32, 32)
    assert data.y_train.dtype == np.int64 and data.y_test.dtype == np.int64
    np.testing.assert_array_equal(data.x_train, x_train)
    np.testing.assert_array_equal(data.y_train, y_train)
    np.testing.assert_array_equal(data.x_test, x_test)
    np.testing.assert_array_equal(data.y_test, y_test)


@pytest.fixture
def isolated(tmp_path, monkeypatch):
    """No env var, an empty cwd, and a fake repo whose ../shared/data is under tmp_path."""
    monkeypatch.delenv(ENV_VAR, raising=False)
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    monkeypatch.setattr(cifar10, "REPO_ROOT", tmp_path / "repo")
    return tmp_path


# --------------------------------------------------------------------------------------------
# Loading.
# --------------------------------------------------------------------------------------------


def test_load_from_folder_matches_official_layout(tmp_path):
    folder = make_folder(tmp_path)
    data = load_cifar10(folder)
    _assert_dataset(data)
    # Row layout: 1024 R, 1024 G, 1024 B values, each a 32x32 image in row-major order.
    raw, _ = _batch_arrays("data_batch_1", 4)
    i, c, r, col = 2, 1, 7, 30
    assert data.x_train[i, c, r, col] == raw[i, c * 1024 + r * 32 + col]
    x_train, y_train, x_test, y_test = data  # unpacks like a tuple
    assert x_train is data.x_train


def test_load_from_tarball_without_extracting(tmp_path):
    tarball = make_tarball(tmp_path / "dl")
    _assert_dataset(load_cifar10(tarball))
    assert sorted(p.name for p in tarball.parent.iterdir()) == [TARBALL_NAME]


@pytest.mark.parametrize("kind", ["folder", "tarball"])
@pytest.mark.parametrize("subset,test_subset", [(1, None), (6, 3), (20, 4), (None, 2)])
def test_subsets_are_the_first_images(tmp_path, kind, subset, test_subset):
    source = make_folder(tmp_path) if kind == "folder" else make_tarball(tmp_path)
    data = load_cifar10(source, subset=subset, test_subset=test_subset)
    x_train, y_train, x_test, y_test = _expected()
    np.testing.assert_array_equal(data.x_train, x_train[:subset])
    np.testing.assert_array_equal(data.y_train, y_train[:subset])
    np.testing.assert_array_equal(data.x_test, x_test[:test_subset])
    np.testing.assert_array_equal(data.y_test, y_test[:test_subset])
    assert data.x_train.base is None  # a subset does not keep a whole batch alive


def test_bad_subsets(tmp_path):
    folder = make_folder(tmp_path)
    with pytest.raises(DatasetError, match="only 20"):
        load_cifar10(folder, subset=21)
    with pytest.raises(DatasetError, match=">= 0"):
        load_cifar10(folder, subset=-1)


def test_subset_zero_reads_no_training_file(tmp_path):
    folder = make_folder(tmp_path)
    for name in BATCH_NAMES[:5]:
        (folder / name).write_bytes(b"corrupt: must not be read")
    data = load_cifar10(folder, subset=0, test_subset=3)
    assert data.x_train.shape == (0, 3, 32, 32) and data.x_train.dtype == np.uint8
    assert data.y_train.shape == (0,) and data.y_train.dtype == np.int64
    np.testing.assert_array_equal(data.y_test, _expected()[3][:3])


def test_incomplete_folder_and_corrupt_batch(tmp_path):
    folder = make_folder(tmp_path)
    (folder / "data_batch_3").unlink()
    with pytest.raises(DatasetError, match="data_batch_3 is missing"):
        load_cifar10(folder)
    assert load_cifar10(folder, subset=8).x_train.shape == (8, 3, 32, 32)  # not needed
    data = (folder / "test_batch").read_bytes()
    (folder / "test_batch").write_bytes(data[: len(data) // 2])
    with pytest.raises(DatasetError, match="not a readable CIFAR-10 batch") as info:
        load_cifar10(folder, subset=1)
    assert "\n" not in str(info.value)


def test_corrupt_tarball(tmp_path):
    tarball = make_tarball(tmp_path)
    tarball.write_bytes(tarball.read_bytes()[:300])
    with pytest.raises(DatasetError, match="not a readable CIFAR-10") as info:
        load_cifar10(tarball)
    assert str(tarball) in str(info.value) and "\n" not in str(info.value)


class _Evil:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_malicious_batch_is_refused_and_never_runs(tmp_path):
    folder = make_folder(tmp_path)
    marker = tmp_path / "pwned"
    (folder / "test_batch").write_bytes(pickle.dumps({b"data": _Evil(marker)}, protocol=2))
    with pytest.raises(DatasetError, match="refusing to load it"):
        load_cifar10(folder, subset=1)
    assert not marker.exists()


# --------------------------------------------------------------------------------------------
# Finding the data.
# --------------------------------------------------------------------------------------------


def test_resolution_order_explicit_env_cwd_shared(isolated, monkeypatch):
    tmp = isolated
    shared = make_folder(tmp / "shared" / "data")  # <repo>/../shared/data
    assert find_cifar10() == shared
    cwd_data = make_tarball(tmp / "cwd" / "data")
    assert find_cifar10().resolve() == cwd_data.resolve()
    env_dir = make_folder(tmp / "env")
    monkeypatch.setenv(ENV_VAR, str(tmp / "env"))
    assert find_cifar10() == env_dir
    explicit = make_tarball(tmp / "explicit")
    assert find_cifar10(tmp / "explicit") == explicit


def test_named_location_is_authoritative(isolated, monkeypatch):
    tmp = isolated
    make_folder(tmp / "shared" / "data")
    monkeypatch.setenv(ENV_VAR, str(tmp / "typo"))
    with pytest.raises(DatasetNotFoundError, match="typo"):
        find_cifar10()
    with pytest.raises(DatasetNotFoundError, match="nowhere"):
        find_cifar10(tmp / "nowhere")


def test_accepted_forms_of_a_location(tmp_path):
    folder = make_folder(tmp_path / "a")
    assert find_cifar10(folder) == folder  # the batch folder itself
    assert find_cifar10(tmp_path / "a") == folder  # its parent
    tarball = make_tarball(tmp_path / "b")
    assert find_cifar10(tarball) == tarball  # the tarball
    assert find_cifar10(tmp_path / "b") == tarball  # its parent
    make_tarball(tmp_path / "a")
    assert find_cifar10(tmp_path / "a") == folder  # extracted folder preferred


def test_missing_data_message_says_where_and_how(isolated):
    with pytest.raises(DatasetNotFoundError) as info:
        load_cifar10()
    message = str(info.value)
    assert "\n" not in message and isinstance(info.value, MinitorchError)
    assert str(isolated / "cwd" / "data") in message
    assert str(isolated / "shared" / "data") in message
    for hint in ("--download", OFFICIAL_URL, "--data-dir", ENV_VAR):
        assert hint in message


# --------------------------------------------------------------------------------------------
# Downloading from a loopback server.
# --------------------------------------------------------------------------------------------


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # keep pytest output clean
        pass


@pytest.fixture
def server(tmp_path, monkeypatch):
    """Serve tmp_path/www on 127.0.0.1; yields the base URL."""
    for var in ("http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("no_proxy", "127.0.0.1")
    root = tmp_path / "www"
    root.mkdir()
    handler = functools.partial(_QuietHandler, directory=str(root))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()


def _closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/{TARBALL_NAME}"


def test_download_verifies_and_extracts(tmp_path, server):
    tarball = make_tarball(tmp_path / "www")
    dest = tmp_path / "data"
    url = f"{server}/{TARBALL_NAME}"
    folder = download_cifar10(dest, url=url, md5=_md5(tarball), progress=False)
    assert folder == dest / FOLDER_NAME
    assert sorted(p.name for p in folder.iterdir()) == sorted(BATCH_NAMES)
    assert sorted(p.name for p in dest.iterdir()) == sorted([FOLDER_NAME, TARBALL_NAME])
    _assert_dataset(load_cifar10(dest))
    # A verified tarball already there is reused: no network needed the second time.
    again = download_cifar10(dest, url=_closed_port_url(), md5=_md5(tarball), extract=False)
    assert again == dest / TARBALL_NAME


def test_download_with_wrong_md5_deletes_the_file(tmp_path, server):
    make_tarball(tmp_path / "www")
    dest = tmp_path / "data"
    with pytest.raises(DownloadError, match="has md5 .*expected 0{32}; it was deleted") as info:
        download_cifar10(dest, url=f"{server}/{TARBALL_NAME}", md5="0" * 32, progress=False)
    assert "\n" not in str(info.value)
    assert list(dest.iterdir()) == []


def test_unreachable_url_and_http_error_are_one_line(tmp_path, server):
    url = _closed_port_url()
    with pytest.raises(DownloadError, match="could not download") as info:
        download_cifar10(tmp_path / "d", url=url, progress=False, timeout=5)
    assert url in str(info.value) and "\n" not in str(info.value)
    with pytest.raises(DownloadError, match="HTTP 404"):
        download_cifar10(tmp_path / "d", url=f"{server}/missing.tar.gz", progress=False)
    assert list((tmp_path / "d").iterdir()) == []


def test_load_with_download_flag_downloads_into_data_dir(isolated, server, monkeypatch):
    tarball = make_tarball(isolated / "www")
    real_download = cifar10.download_cifar10
    monkeypatch.setattr(
        cifar10,
        "download_cifar10",
        lambda dest: real_download(
            dest, url=f"{server}/{TARBALL_NAME}", md5=_md5(tarball), progress=False
        ),
    )
    _assert_dataset(load_cifar10(download=True))
    assert (isolated / "cwd" / "data" / FOLDER_NAME / "test_batch").is_file()


def test_extraction_ignores_links_and_paths_outside_the_folder(tmp_path):
    dest = tmp_path / "data"
    dest.mkdir()
    tarball = make_tarball(
        dest,
        extra={"../escape": b"x", f"{FOLDER_NAME}/../../escape2": b"x", "other/f": b"x"},
        symlinks={f"{FOLDER_NAME}/link": "/etc/passwd"},
    )
    folder = download_cifar10(dest, url=_closed_port_url(), md5=_md5(tarball), progress=False)
    assert sorted(p.name for p in folder.iterdir()) == sorted(BATCH_NAMES)
    assert not (tmp_path / "escape").exists() and not (tmp_path / "escape2").exists()
    assert sorted(p.name for p in dest.iterdir()) == sorted([FOLDER_NAME, TARBALL_NAME])


# --------------------------------------------------------------------------------------------
# Transforms.
# --------------------------------------------------------------------------------------------

images_strategy = st.tuples(st.integers(1, 5), st.integers(1, 3), st.integers(1, 9)).flatmap(
    lambda s: st.integers(0, 2**32 - 1).map(
        lambda seed: np.random.default_rng(seed).integers(0, 256, (s[0], s[1], s[2], s[2] + 1))
    )
)


def test_normalize_matches_hand_formula_exactly():
    batch = np.random.default_rng(0).integers(0, 256, (7, 3, 32, 32), dtype=np.uint8)
    batch[0, :, 0, 0] = [0, 255, 128]
    mean = np.array(CIFAR10_MEAN, np.float32)[:, None, None]
    std = np.array(CIFAR10_STD, np.float32)[:, None, None]
    expected = (batch.astype(np.float32) / np.float32(255) - mean) / std
    out = normalize(batch)
    assert out.dtype == np.float32 and out.shape == batch.shape
    np.testing.assert_array_equal(out, expected)  # bit for bit, like torchvision
    exact = (batch / 255.0 - np.array(CIFAR10_MEAN)[:, None, None]) / np.array(CIFAR10_STD)[
        :, None, None
    ]
    np.testing.assert_allclose(out, exact, rtol=1e-6, atol=1e-6)
    assert out[0, 0, 0, 0] == pytest.approx(-0.4914 / 0.2023, rel=1e-6)
    np.testing.assert_array_equal(normalize(batch[3]), out[3])  # one (C, H, W) image


def test_normalize_refuses_non_uint8():
    with pytest.raises(TypeError, match="uint8"):
        normalize(np.zeros((1, 3, 4, 4), np.float32))
    with pytest.raises(ValueError, match="does not match"):
        normalize(np.zeros((1, 4, 4, 4), np.uint8))


def _reference_crop_flip(batch, dy, dx, flip, padding):
    """Slow, obvious per-image version: shift into a zero canvas, then mirror."""
    n, c, h, w = batch.shape
    out = np.zeros_like(batch)
    for i in range(n):
        canvas = np.zeros((c, h + 2 * padding, w + 2 * padding), batch.dtype)
        canvas[:, padding : padding + h, padding : padding + w] = batch[i]
        out[i] = canvas[:, dy[i] : dy[i] + h, dx[i] : dx[i] + w]
        if flip[i]:
            out[i] = out[i][:, :, ::-1]
    return out


@settings(deadline=None, max_examples=40)
@given(batch=images_strategy, padding=st.integers(0, 4), seed=st.integers(0, 2**32 - 1))
def test_crop_flip_equals_shifted_copy(batch, padding, seed):
    rng = np.random.default_rng(seed)
    batch = batch.astype(np.uint8)
    dy, dx, flip = crop_flip_params(len(batch), rng, padding)
    out = crop_flip(batch, dy, dx, flip, padding)
    assert out.shape == batch.shape and out.dtype == batch.dtype
    np.testing.assert_array_equal(out, _reference_crop_flip(batch, dy, dx, flip, padding))
    # Shifted copy, pixel by pixel: output (r, c) shows input (r + dy - p, c + dx - p), or 0
    # where that falls outside the image (the zero padding).
    h, w = batch.shape[2:]
    for i in range(len(batch)):
        unflipped = out[i][:, :, ::-1] if flip[i] else out[i]
        for r in range(h):
            for c in range(w):
                sr, sc = r + dy[i] - padding, c + dx[i] - padding
                inside = 0 <= sr < h and 0 <= sc < w
                expected = batch[i, :, sr, sc] if inside else 0
                np.testing.assert_array_equal(unflipped[:, r, c], expected)


@settings(deadline=None, max_examples=20)
@given(batch=images_strategy)
def test_flip_twice_is_identity_and_centre_crop_is_identity(batch):
    n = len(batch)
    centre = np.full(n, 4)
    flip = np.ones(n, bool)
    once = crop_flip(batch, centre, centre, flip)
    np.testing.assert_array_equal(once, batch[..., ::-1])
    np.testing.assert_array_equal(crop_flip(once, centre, centre, flip), batch)
    np.testing.assert_array_equal(crop_flip(batch, centre, centre, ~flip), batch)


def test_random_crop_flip_is_seeded_and_uses_params():
    batch = np.random.default_rng(1).integers(0, 256, (64, 3, 32, 32), dtype=np.uint8)
    a = random_crop_flip(batch, np.random.default_rng(7))
    b = random_crop_flip(batch, np.random.default_rng(7))
    c = random_crop_flip(batch, np.random.default_rng(8))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    expected = crop_flip(batch, *crop_flip_params(64, np.random.default_rng(7)))
    np.testing.assert_array_equal(a, expected)


def test_crop_flip_params_distribution():
    dy, dx, flip = crop_flip_params(20_000, np.random.default_rng(0), padding=4)
    assert set(np.unique(dy)) == set(range(9)) == set(np.unique(dx))
    assert abs(flip.mean() - 0.5) < 0.02
    assert abs(np.bincount(dy).min() / 20_000 - 1 / 9) < 0.02


# --------------------------------------------------------------------------------------------
# Batching.
# --------------------------------------------------------------------------------------------


def _toy(n: int = 23):
    x = np.random.default_rng(3).integers(0, 256, (n, 3, 8, 8), dtype=np.uint8)
    return x, np.arange(n)  # label = index, so the order of samples is visible


@pytest.mark.parametrize("drop_last", [False, True])
def test_sequential_batches(drop_last):
    x, y = _toy()
    batches = list(iterate_batches(x, y, 5, drop_last=drop_last))
    assert len(batches) == num_batches(23, 5, drop_last) == (4 if drop_last else 5)
    images = np.concatenate([b[0] for b in batches])
    labels = np.concatenate([b[1] for b in batches])
    count = len(labels)
    np.testing.assert_array_equal(images, normalize(x[:count]))
    np.testing.assert_array_equal(labels, np.arange(count))
    assert labels.dtype == np.int64 and images.dtype == np.float32


def test_shuffle_visits_every_sample_once_and_is_seeded():
    x, y = _toy()
    rng = np.random.default_rng(5)
    epoch1 = np.concatenate([b[1] for b in iterate_batches(x, y, 4, rng=rng, shuffle=True)])
    epoch2 = np.concatenate([b[1] for b in iterate_batches(x, y, 4, rng=rng, shuffle=True)])
    assert sorted(epoch1) == list(range(23)) == sorted(epoch2)
    assert not np.array_equal(epoch1, epoch2)  # a fresh permutation each epoch
    again = np.random.default_rng(5)
    replay = np.concatenate([b[1] for b in iterate_batches(x, y, 4, rng=again, shuffle=True)])
    np.testing.assert_array_equal(epoch1, replay)
    for (xb, _), idx in zip(
        iterate_batches(x, y, 4, rng=np.random.default_rng(5), shuffle=True),
        np.array_split(epoch1, range(4, 23, 4)),
        strict=True,
    ):
        np.testing.assert_array_equal(xb, normalize(x[idx]))


def test_augmented_batches_equal_crop_then_normalise():
    x, y = _toy()
    got = list(iterate_batches(x, y, 10, rng=np.random.default_rng(9), augment=True))
    rng = np.random.default_rng(9)
    dy, dx, flip = crop_flip_params(23, rng, 4)
    expected = normalize(crop_flip(x, dy, dx, flip))
    np.testing.assert_array_equal(np.concatenate([b[0] for b in got]), expected)
    # Zero padding is raw pixel 0, i.e. -mean/std after normalisation, not 0: the top-left
    # corner of a crop at offset (0, 0) is padding.
    zeros = np.zeros(23, dtype=np.int64)
    corner = normalize(crop_flip(x, zeros, zeros, np.zeros(23, bool)))[:, :, 0, 0]
    expected_pad = -np.array(CIFAR10_MEAN) / np.array(CIFAR10_STD)
    np.testing.assert_allclose(corner, np.broadcast_to(expected_pad, corner.shape), rtol=1e-6)


def test_generator_state_after_call_does_not_depend_on_consumption():
    x, y = _toy()
    rng_a, rng_b = np.random.default_rng(11), np.random.default_rng(11)
    batches = iterate_batches(x, y, 4, rng=rng_a, shuffle=True, augment=True)
    next(batches)  # consume one batch only
    list(iterate_batches(x, y, 4, rng=rng_b, shuffle=True, augment=True))
    assert rng_a.bit_generator.state == rng_b.bit_generator.state


def test_batching_errors():
    x, y = _toy()
    with pytest.raises(ValueError, match="Generator"):
        iterate_batches(x, y, 4, shuffle=True)
    with pytest.raises(ValueError, match="Generator"):
        iterate_batches(x, y, 4, augment=True)
    with pytest.raises(TypeError, match="uint8"):
        iterate_batches(x.astype(np.float32), y, 4)
    with pytest.raises(ValueError, match="samples"):
        iterate_batches(x, y[:-1], 4)
    with pytest.raises(ValueError, match="batch_size"):
        iterate_batches(x, y, 0)


# --------------------------------------------------------------------------------------------
# The real shared data.
# --------------------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.skipif(
    not (SHARED_DATA / FOLDER_NAME / "test_batch").is_file(),
    reason=f"shared CIFAR-10 absent: {SHARED_DATA / FOLDER_NAME}",
)
def test_real_test_batch():
    data = load_cifar10(SHARED_DATA, subset=1)
    assert data.x_test.shape == (10_000, 3, 32, 32) and data.x_test.dtype == np.uint8
    assert data.y_test.min() == 0 and data.y_test.max() == 9
    assert np.bincount(data.y_test).tolist() == [1000] * 10
    assert data.y_test[:5].tolist() == [3, 8, 8, 0, 6]  # cat, ship, ship, airplane, frog
    assert data.y_train[0] == 6  # the first training image is a frog
    assert 100 < data.x_test.mean() < 150
