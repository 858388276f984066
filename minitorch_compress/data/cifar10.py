"""CIFAR-10: find it, download it (md5-checked), and load it as uint8 NCHW arrays.

The data is the official "python version": a folder ``cifar-10-batches-py/`` with pickled
batches ``data_batch_1`` .. ``data_batch_5`` (10,000 training images each), ``test_batch``
(10,000 test images) and ``batches.meta``, shipped as ``cifar-10-python.tar.gz``. Both the
extracted folder and the tarball are read (the tarball directly, without extracting it).

Each batch is a pickled dict with ``data``: uint8 (10000, 3072), rows of 1024 red, 1024 green,
1024 blue values of a 32x32 image in row-major order, i.e. exactly NCHW after a reshape; and
``labels``: a list of 10,000 ints in 0..9. The batches are unpickled with a restricted
unpickler that allows only the NumPy array globals they contain, so a tampered download cannot
run code.

Images stay uint8 in memory (150 MB for the training set); ``transforms.normalize`` turns one
batch at a time into float32.
"""

from __future__ import annotations

import codecs
import hashlib
import http.client
import os
import pickle
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any, NamedTuple

import numpy as np
from tqdm.auto import tqdm

from minitorch_compress.errors import DatasetError, DatasetNotFoundError, DownloadError
from minitorch_compress.paths import REPO_ROOT

__all__ = [
    "OFFICIAL_URL",
    "OFFICIAL_MD5",
    "FOLDER_NAME",
    "TARBALL_NAME",
    "ENV_VAR",
    "CLASSES",
    "Cifar10",
    "default_search_dirs",
    "find_cifar10",
    "load_cifar10",
    "download_cifar10",
]

OFFICIAL_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
OFFICIAL_MD5 = "c58f30108f718f92721af3b95e74349a"
FOLDER_NAME = "cifar-10-batches-py"
TARBALL_NAME = "cifar-10-python.tar.gz"
#: Environment variable naming a data location (used when no ``data_dir`` is passed).
ENV_VAR = "MINITORCH_DATA"
#: Class names in label order (from ``batches.meta``).
CLASSES = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)
TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_BATCH = "test_batch"
IMAGE_SHAPE = (3, 32, 32)


class Cifar10(NamedTuple):
    """The dataset as arrays; unpacks as ``x_train, y_train, x_test, y_test = load_cifar10()``.

    Attributes:
        x_train: uint8 (N_train, 3, 32, 32) raw pixels, N_train = 50,000 unless a subset.
        y_train: int64 (N_train,) labels in 0..9 (see ``CLASSES``).
        x_test: uint8 (N_test, 3, 32, 32), N_test = 10,000 unless a subset.
        y_test: int64 (N_test,).
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray


# --------------------------------------------------------------------------------------------
# Finding the data.
# --------------------------------------------------------------------------------------------


def default_search_dirs() -> list[Path]:
    """Places searched when the user names none: ``./data``, then ``<repo>/../shared/data``.

    Returns:
        The candidate locations, in search order (``./data`` relative to the current folder).
    """
    # The shared copy on the course machines sits beside the repository.
    return [Path("data"), REPO_ROOT.parent / "shared" / "data"]


def _is_batch_folder(folder: Path) -> bool:
    """A folder of the python batches: evaluation needs only the test batch, so a folder
    holding that alone counts (a missing training batch is reported when it is read)."""
    return (folder / TEST_BATCH).is_file() or (folder / TRAIN_BATCHES[0]).is_file()


def _resolve_in(place: Path) -> Path | None:
    """The dataset inside ``place``: the batch folder itself, a tarball, or a parent of either.

    An extracted folder wins over a tarball next to it (no decompression needed).
    """
    if place.is_file():
        return place
    if not place.is_dir():
        return None
    for candidate in (place, place / FOLDER_NAME):
        if _is_batch_folder(candidate):
            return candidate
    if (place / TARBALL_NAME).is_file():
        return place / TARBALL_NAME
    return None


def _how_to_get_it() -> str:
    return (
        f"run with --download to fetch it (163 MB, md5-checked) from {OFFICIAL_URL}, or "
        "download that file yourself and pass --data-dir DIR (DIR may hold the .tar.gz or the "
        f"extracted {FOLDER_NAME}/ folder), or set {ENV_VAR}=DIR"
    )


def find_cifar10(data_dir: str | os.PathLike[str] | None = None) -> Path:
    """Locate CIFAR-10 on disk.

    Resolution order: ``data_dir`` if given, else the ``MINITORCH_DATA`` environment variable
    if set, else ``./data``, else ``<repo root>/../shared/data``. A location the user names
    (argument or environment variable) is the only one looked at, so a typo is reported
    instead of silently loading some other copy. In each place we accept the
    ``cifar-10-batches-py`` folder itself, the ``cifar-10-python.tar.gz`` file, or a folder
    containing either.

    Args:
        data_dir: Explicit location (folder or tarball), e.g. from ``--data-dir``.

    Returns:
        Path of the batch folder or of the tarball.

    Raises:
        DatasetNotFoundError: Listing the places tried and how to get the data.
    """
    if data_dir is not None:
        places = [Path(data_dir)]
    elif os.environ.get(ENV_VAR):
        places = [Path(os.environ[ENV_VAR])]
    else:
        places = default_search_dirs()
    for place in places:
        found = _resolve_in(place.expanduser())
        if found is not None:
            return found
    looked = ", ".join(str(p.expanduser().absolute()) for p in places)
    raise DatasetNotFoundError(f"CIFAR-10 not found (looked in: {looked}); {_how_to_get_it()}")


# --------------------------------------------------------------------------------------------
# Reading batches.
# --------------------------------------------------------------------------------------------

# ndarray.__reduce__ names NumPy's private ``_reconstruct``; fetch it without importing a
# private module path (it moved from numpy.core to numpy._core in NumPy 2).
_NDARRAY_RECONSTRUCT = np.ndarray.__reduce__(np.empty(0))[0]

_BATCH_GLOBALS: dict[tuple[str, str], Any] = {
    ("numpy.core.multiarray", "_reconstruct"): _NDARRAY_RECONSTRUCT,
    ("numpy._core.multiarray", "_reconstruct"): _NDARRAY_RECONSTRUCT,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    # Python 3 writes bytes in protocol-2 pickles as _codecs.encode(str, "latin1").
    ("_codecs", "encode"): codecs.encode,
    ("__builtin__", "bytes"): bytes,
    ("builtins", "bytes"): bytes,
}


class _BatchUnpickler(pickle.Unpickler):
    """Unpickler for CIFAR batches: NumPy arrays and plain containers only."""

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _BATCH_GLOBALS[(module, name)]
        except KeyError:
            raise DatasetError(
                f"CIFAR-10 batch asks for global '{module}.{name}'; a genuine batch never "
                "does, refusing to load it"
            ) from None


def _decode_batch(file: IO[bytes], where: str) -> tuple[np.ndarray, np.ndarray]:
    """Unpickle one batch: uint8 (n, 3, 32, 32) images and int64 (n,) labels."""
    try:
        # latin1: the official files are Python 2 pickles whose str values are raw bytes.
        batch = _BatchUnpickler(file, encoding="latin1").load()
    except DatasetError:
        raise
    except Exception as exc:
        # Any failure here means the bytes are not a valid pickle (truncated, corrupt).
        detail = " ".join(str(exc).split())
        raise DatasetError(f"{where} is not a readable CIFAR-10 batch: {detail}") from exc
    if not isinstance(batch, dict):
        raise DatasetError(f"{where} is not a CIFAR-10 batch (no dict inside)")
    # Keys are str with encoding="latin1"; accept bytes keys too (files written by Python 3).
    batch = {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in batch.items()}
    data, labels = batch.get("data"), batch.get("labels")
    size = int(np.prod(IMAGE_SHAPE))
    if not (isinstance(data, np.ndarray) and data.dtype == np.uint8 and data.ndim == 2):
        raise DatasetError(f"{where}: 'data' is not a uint8 (n, {size}) array")
    if data.shape[1] != size or labels is None or len(labels) != len(data):
        raise DatasetError(f"{where}: 'data' of shape {data.shape} and labels do not match")
    y = np.asarray(labels, dtype=np.int64)
    if len(y) and (y.min() < 0 or y.max() >= len(CLASSES)):
        raise DatasetError(f"{where}: labels outside 0..{len(CLASSES) - 1}")
    return data.reshape(len(data), *IMAGE_SHAPE), y


def _ordered_batches(
    source: Path, names: tuple[str, ...]
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield ``(images, labels)`` of the batches ``names``, in that order, one at a time.

    A folder is read lazily, file by file. A tarball is read in one pass in archive order
    (seeking backwards in a .gz means decompressing again); batches that come early are held
    until their turn.
    """
    if source.is_dir():
        for name in names:
            path = source / name
            if not path.is_file():
                raise DatasetError(f"{path} is missing; the CIFAR-10 folder is incomplete")
            with open(path, "rb") as f:
                yield _decode_batch(f, str(path))
        return
    pending: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    done = 0  # names[:done] were yielded
    try:
        with tarfile.open(source, "r:*") as tar:
            for member in tar:
                name = member.name.rsplit("/", 1)[-1]
                if member.isfile() and name in names[done:] and name not in pending:
                    file = tar.extractfile(member)
                    assert file is not None  # regular file member
                    pending[name] = _decode_batch(file, f"{source}:{member.name}")
                while done < len(names) and names[done] in pending:
                    yield pending.pop(names[done])
                    done += 1
                if done == len(names):
                    return
    except (tarfile.TarError, OSError, EOFError) as exc:
        detail = " ".join(str(exc).split())
        raise DatasetError(f"{source} is not a readable CIFAR-10 tarball: {detail}") from exc
    raise DatasetError(f"{source} does not contain {FOLDER_NAME}/{names[done]}")


def _check_subset(count: int | None, what: str) -> None:
    if count is not None and count < 0:
        raise DatasetError(f"{what} must be a number of images >= 0, got {count}")


def _read_split(
    source: Path, names: tuple[str, ...], count: int | None, what: str
) -> tuple[np.ndarray, np.ndarray]:
    """The first ``count`` (default: all) images and labels of the batches ``names``.

    Stops reading as soon as ``count`` images are in, so a small subset reads one file and
    ``count=0`` reads none (evaluation-only runs skip the 150 MB training set).
    """
    if count == 0:
        return np.empty((0, *IMAGE_SHAPE), dtype=np.uint8), np.empty(0, dtype=np.int64)
    xs: list[np.ndarray] = []
    ys: list[np.ndarray] = []
    total = 0
    for images, labels in _ordered_batches(source, names):
        xs.append(images)
        ys.append(labels)
        total += len(images)
        if count is not None and total >= count:
            break
    if count is not None:
        if total < count:
            raise DatasetError(f"{what}={count} but {source} has only {total} such images")
        keep = len(xs[-1]) - (total - count)
        xs[-1], ys[-1] = xs[-1][:keep], ys[-1][:keep]
    if len(xs) == 1 and count is None:
        return xs[0], ys[0]  # the whole test set: use the decoded batch as is
    # Concatenating copies, which also frees the untaken rest of a trimmed batch.
    return np.concatenate(xs), np.concatenate(ys)


def load_cifar10(
    data_dir: str | os.PathLike[str] | None = None,
    subset: int | None = None,
    test_subset: int | None = None,
    download: bool = False,
) -> Cifar10:
    """Load CIFAR-10 from the folder or tarball found by ``find_cifar10``.

    Args:
        data_dir: Explicit location (see ``find_cifar10`` for the search order otherwise).
        subset: Keep only the first ``subset`` training images (quick runs); only the batch
            files needed are read, none for ``subset=0`` (evaluation only).
        test_subset: Keep only the first ``test_subset`` test images (0: none).
        download: If the data is not found, download it (into ``data_dir``, else
            ``$MINITORCH_DATA``, else ``./data``) instead of raising.

    Returns:
        ``Cifar10(x_train, y_train, x_test, y_test)``: uint8 (N, 3, 32, 32) images and int64
        (N,) labels, in the official order.

    Raises:
        DatasetNotFoundError: Nothing found and ``download`` is False.
        DownloadError: ``download`` was needed and failed.
        DatasetError: A file is present but corrupt or incomplete.
        DatasetError: ``subset``/``test_subset`` negative or more than there are (a user
            mistake, so the CLI reports it in one line).
    """
    _check_subset(subset, "subset")
    _check_subset(test_subset, "test_subset")
    try:
        source = find_cifar10(data_dir)
    except DatasetNotFoundError:
        if not download:
            raise
        dest = data_dir if data_dir is not None else os.environ.get(ENV_VAR) or "data"
        source = download_cifar10(dest)
    x_train, y_train = _read_split(source, TRAIN_BATCHES, subset, "subset")
    x_test, y_test = _read_split(source, (TEST_BATCH,), test_subset, "test_subset")
    return Cifar10(x_train, y_train, x_test, y_test)


# --------------------------------------------------------------------------------------------
# Downloading.
# --------------------------------------------------------------------------------------------


def _md5_of(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)  # an integrity check, not security
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _fetch(url: str, out: IO[bytes], timeout: float, progress: bool) -> str:
    """Stream ``url`` into ``out`` with a progress bar; return the md5 of what was written."""
    digest = hashlib.md5(usedforsecurity=False)  # an integrity check, not security
    with urllib.request.urlopen(url, timeout=timeout) as response:
        total = int(response.headers.get("Content-Length") or 0) or None
        with tqdm(
            total=total,
            unit="B",
            unit_scale=True,
            unit_divisor=1024,
            desc=TARBALL_NAME,
            disable=not progress,
        ) as bar:
            for chunk in iter(lambda: response.read(1 << 16), b""):
                out.write(chunk)
                digest.update(chunk)
                bar.update(len(chunk))
    return digest.hexdigest()


def _extract(tarball: Path, dest_dir: Path) -> Path:
    """Extract only ``cifar-10-batches-py/<file>`` regular files (no links, no ``..``)."""
    final = dest_dir / FOLDER_NAME
    staging = Path(tempfile.mkdtemp(prefix=f".{FOLDER_NAME}.", dir=dest_dir))
    try:
        with tarfile.open(tarball, "r:*") as tar:
            for member in tar:
                parts = member.name.split("/")
                if member.isfile() and len(parts) == 2 and parts[0] == FOLDER_NAME:
                    if parts[1] in ("", ".", ".."):
                        continue
                    source = tar.extractfile(member)
                    assert source is not None
                    with source, open(staging / parts[1], "wb") as target:
                        shutil.copyfileobj(source, target)
        if not _is_batch_folder(staging):
            raise DownloadError(f"{tarball} does not contain {FOLDER_NAME}/{TEST_BATCH}")
        final.mkdir(exist_ok=True)
        for item in staging.iterdir():
            os.replace(item, final / item.name)
    except (tarfile.TarError, OSError, EOFError) as exc:
        detail = " ".join(str(exc).split())
        raise DownloadError(f"cannot extract {tarball}: {detail}") from exc
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return final


def download_cifar10(
    dest_dir: str | os.PathLike[str],
    url: str = OFFICIAL_URL,
    md5: str = OFFICIAL_MD5,
    extract: bool = True,
    progress: bool = True,
    timeout: float = 60.0,
) -> Path:
    """Download ``cifar-10-python.tar.gz`` into ``dest_dir``, check its md5, and extract it.

    A tarball already in ``dest_dir`` with the right md5 is reused. The download goes to a
    temporary file that only gets the final name once its md5 matches, so an interrupted or
    corrupt download never looks like a valid dataset.

    Args:
        dest_dir: Folder to put the tarball (and the extracted folder) in; created if needed.
        url: Where to download from.
        md5: Expected hex md5 of the tarball.
        extract: Also extract ``cifar-10-batches-py/`` next to the tarball (loads faster).
        progress: Show a tqdm progress bar.
        timeout: Seconds to wait for the server before giving up.

    Returns:
        Path of the extracted folder if ``extract``, else of the tarball.

    Raises:
        DownloadError: Offline/unreachable, HTTP error, md5 mismatch, or a broken archive.
    """
    dest = Path(dest_dir).expanduser()
    dest.mkdir(parents=True, exist_ok=True)
    tarball = dest / TARBALL_NAME
    if not (tarball.is_file() and _md5_of(tarball) == md5):
        fd, tmp_name = tempfile.mkstemp(prefix=f".{TARBALL_NAME}.", suffix=".part", dir=dest)
        tmp = Path(tmp_name)
        try:
            with os.fdopen(fd, "wb") as out:
                got = _fetch(url, out, timeout, progress)
            if got != md5:
                raise DownloadError(
                    f"the file downloaded from {url} has md5 {got}, expected {md5}; it was "
                    "deleted. Try again, or download it by hand and pass --data-dir"
                )
            os.replace(tmp, tarball)
        except (urllib.error.URLError, OSError, http.client.HTTPException, ValueError) as exc:
            if isinstance(exc, urllib.error.HTTPError):
                reason: object = f"HTTP {exc.code} {exc.reason}"
            else:
                reason = getattr(exc, "reason", None) or exc
            detail = " ".join(str(reason).split()) or type(exc).__name__
            raise DownloadError(
                f"could not download {url} ({detail}); check the internet connection, or "
                f"download the file by hand and pass --data-dir"
            ) from exc
        finally:
            tmp.unlink(missing_ok=True)
    return _extract(tarball, dest) if extract else tarball
