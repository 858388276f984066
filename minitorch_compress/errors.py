"""Exceptions the library raises for problems a user can fix.

Every error here carries a one-line, actionable message. The command-line entry points catch
``MinitorchError`` and print only that message, so a user who points the tool at a missing
dataset or a broken checkpoint sees one sentence telling them what to do, not a traceback.
Programming errors (wrong shapes, bad arguments) stay ordinary ``ValueError``/``TypeError``.
"""

from __future__ import annotations

__all__ = [
    "MinitorchError",
    "CheckpointError",
    "UnsafeCheckpointError",
    "DatasetError",
    "DatasetNotFoundError",
    "DownloadError",
]


class MinitorchError(Exception):
    """Base class of every user-facing error of ``minitorch_compress``."""


class CheckpointError(MinitorchError):
    """A checkpoint file is missing, truncated, corrupt or not in the expected format."""


class UnsafeCheckpointError(CheckpointError):
    """A pickled checkpoint asks for a Python global that a plain state_dict never needs.

    Raised *before* the global is resolved, so no code from the file is ever executed.
    """


class DatasetError(MinitorchError):
    """A dataset file is present but unreadable, truncated or not in the expected format."""


class DatasetNotFoundError(DatasetError):
    """CIFAR-10 was not found in any of the places we looked."""


class DownloadError(MinitorchError):
    """Downloading a file failed (offline, HTTP error, or checksum mismatch)."""
