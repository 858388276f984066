"""How much a model file may make us read or inflate, checked before anything is allocated.

Every model this package reads is a ResNet-20 (or a narrower one): 0.27 M parameters. The
largest legitimate file is a float64 training checkpoint of the full-width model with its
momentum buffers, masks and batch-norm statistics, under 10 MB. `MAX_MODEL_BYTES` leaves room
for that and refuses anything bigger, so a 3 MB zip that inflates to 3 GiB, ``/dev/zero`` or a
FIFO is refused in one line, in well under a second, instead of exhausting memory or hanging.
"""

from __future__ import annotations

import os
import stat
import zipfile
from pathlib import Path

from minitorch_compress.errors import CheckpointError

#: Upper bound on the bytes a model file may hold, on disk and once decompressed (all zip
#: members together).
MAX_MODEL_BYTES = 64 * 1024 * 1024


def regular_file_size(path: Path, what: str = "model file") -> int:
    """The size of `path` in bytes, after checking it is a regular file within the bound.

    Raises:
        CheckpointError: missing, not a regular file (a folder, a device such as /dev/zero,
            a FIFO: reading those would block or never end), or larger than `MAX_MODEL_BYTES`.
    """
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise CheckpointError(f"{what} not found: {path}") from None
    except OSError as exc:
        raise CheckpointError(f"cannot read {what} {path}: {exc.strerror or exc}") from None
    if not stat.S_ISREG(info.st_mode):
        raise CheckpointError(f"{path} is not a regular file; give the path of a {what}")
    if info.st_size > MAX_MODEL_BYTES:
        raise CheckpointError(
            f"{path} holds {info.st_size:,} bytes, more than any ResNet-20 {what} "
            f"({MAX_MODEL_BYTES:,} at most); it is not one")
    return info.st_size


def read_model_file(path: Path, what: str = "model file") -> bytes:
    """The bytes of `path`, read only after `regular_file_size` accepted it."""
    regular_file_size(path, what)
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise CheckpointError(f"cannot read {what} {path}: {exc.strerror or exc}") from None


def check_zip_sizes(zf: zipfile.ZipFile, path: Path) -> None:
    """Refuse a zip whose members would inflate beyond `MAX_MODEL_BYTES` together.

    The sizes come from the zip's directory; `zipfile` never returns more bytes for a
    member than its directory entry declares, so this bound holds for what is read later.
    """
    total = sum(info.file_size for info in zf.infolist())
    if total > MAX_MODEL_BYTES:
        raise CheckpointError(
            f"{path}: its members inflate to {total:,} bytes, more than any ResNet-20 model "
            f"file holds ({MAX_MODEL_BYTES:,} at most); the file is corrupt or hostile")
