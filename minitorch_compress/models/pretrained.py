"""The course's pretrained ResNet-20: find the PyTorch checkpoint, convert it once, load it.

Search order for the `.pt` file: the explicit `weights` argument, `$MINITORCH_WEIGHTS`,
`./weights/pretrained_model.pt`, then `../shared/weights/pretrained_model.pt` beside the
repository. The converted arrays are cached in `weights/resnet20_cifar10.npz` (git-ignored)
and reused while they are newer than the `.pt` they came from.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from minitorch_compress.errors import CheckpointError
from minitorch_compress.io.checkpoint import load_checkpoint
from minitorch_compress.io.torch_checkpoint import convert_checkpoint
from minitorch_compress.models.resnet import ResNet20

REPO_ROOT = Path(__file__).resolve().parents[2]
CONVERTED_PATH = REPO_ROOT / "weights" / "resnet20_cifar10.npz"
CHECKPOINT_NAME = "pretrained_model.pt"


def candidate_checkpoints() -> list[Path]:
    """Where `find_pretrained_checkpoint` looks when no path is given, in order."""
    places = []
    if os.environ.get("MINITORCH_WEIGHTS"):
        places.append(Path(os.environ["MINITORCH_WEIGHTS"]))
    places.append(Path.cwd() / "weights" / CHECKPOINT_NAME)
    places.append(REPO_ROOT.parent / "shared" / "weights" / CHECKPOINT_NAME)
    return places


def find_pretrained_checkpoint(weights: str | os.PathLike[str] | None = None) -> Path:
    """Path of the pretrained checkpoint (`.pt` or an already converted `.npz`).

    Raises:
        CheckpointError: when it is not found, saying where we looked and what to do.
    """
    if weights is not None:
        path = Path(weights)
        if not path.is_file():
            raise CheckpointError(f"weights file {path} does not exist; check the --weights path")
        return path
    places = candidate_checkpoints()
    for path in places:
        if path.is_file():
            return path
    if CONVERTED_PATH.is_file():
        return CONVERTED_PATH
    looked = ", ".join(str(p) for p in places)
    raise CheckpointError(
        f"pretrained ResNet-20 checkpoint not found (looked in: {looked}); pass "
        "--weights PATH/TO/pretrained_model.pt or set MINITORCH_WEIGHTS"
    )


def pretrained_state_dict(weights: str | os.PathLike[str] | None = None) -> dict[str, np.ndarray]:
    """The pretrained weights as numpy arrays, converting a `.pt` to the `.npz` cache once."""
    path = find_pretrained_checkpoint(weights)
    if path.suffix == ".npz":
        arrays, _ = load_checkpoint(path)
        return arrays
    if weights is None and CONVERTED_PATH.is_file() and (
        CONVERTED_PATH.stat().st_mtime >= path.stat().st_mtime
    ):
        arrays, _ = load_checkpoint(CONVERTED_PATH)
        return arrays
    if weights is None:
        print(f"converting {path} -> {CONVERTED_PATH} (once)")
        return convert_checkpoint(path, CONVERTED_PATH)
    # an explicit .pt is converted next to the cache under its own name, never over it
    return convert_checkpoint(path, CONVERTED_PATH.with_name(f"{path.stem}.npz"))


def load_pretrained(weights: str | os.PathLike[str] | None = None) -> ResNet20:
    """A ResNet-20 with the course's pretrained weights, in eval mode."""
    model = ResNet20()
    model.load_state_dict(pretrained_state_dict(weights))
    return model.eval()
