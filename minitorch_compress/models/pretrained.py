"""The course's pretrained ResNet-20: find the PyTorch checkpoint, convert it once, load it.

Search order for the `.pt` file: the explicit `weights` argument, `$MINITORCH_WEIGHTS`,
`./weights/pretrained_model.pt`, then `../shared/weights/pretrained_model.pt` beside the
repository. A `.pt` is converted to arrays once and cached in ``weights/cache/`` under the
SHA-256 of its bytes (git-ignored): the cache is keyed by content, so no file of another name
or place can stand in for the default weights, and it is written only after the conversion
was validated (every tensor fits the model and is finite).

`--weights` also takes an ``.npz`` (converted weights, or a finetuning run's ``best.npz`` /
``last.npz``, whose ``model.`` prefix is dropped) and a compressed ``.mtc`` model file.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np

from minitorch_compress.errors import CheckpointError
from minitorch_compress.io import mtc
from minitorch_compress.io.checkpoint import (
    atomic_write,
    load_checkpoint,
    require_finite,
    write_npz,
)
from minitorch_compress.io.limits import regular_file_size
from minitorch_compress.io.mtc import MAX_MID_CHANNELS
from minitorch_compress.io.torch_checkpoint import load_torch_state_dict
from minitorch_compress.models.resnet import ResNet20
from minitorch_compress.paths import REPO_ROOT, WEIGHTS_CACHE_DIR, shown

CHECKPOINT_NAME = "pretrained_model.pt"
_MODEL_PREFIX = "model."


def candidate_checkpoints() -> list[Path]:
    """Where `find_pretrained_checkpoint` looks when no path is given, in order."""
    places = []
    if os.environ.get("MINITORCH_WEIGHTS"):
        places.append(Path(os.environ["MINITORCH_WEIGHTS"]))
    places.append(Path.cwd() / "weights" / CHECKPOINT_NAME)
    places.append(REPO_ROOT.parent / "shared" / "weights" / CHECKPOINT_NAME)
    return places


def find_pretrained_checkpoint(weights: str | os.PathLike[str] | None = None) -> Path:
    """Path of the pretrained checkpoint (`.pt`, or an `.npz` given explicitly).

    Raises:
        CheckpointError: when it is not found, saying where we looked and what to do.
    """
    if weights is not None:
        path = Path(weights)
        if not path.exists():
            raise CheckpointError(f"weights file {path} does not exist; check the --weights path")
        regular_file_size(path, "weights file")  # refuses a folder, device, FIFO, huge file
        return path
    places = candidate_checkpoints()
    for path in places:
        if path.is_file():
            return path
    looked = ", ".join(str(p) for p in places)
    raise CheckpointError(
        f"pretrained ResNet-20 checkpoint not found (looked in: {looked}); pass "
        "--weights PATH/TO/pretrained_model.pt or set MINITORCH_WEIGHTS"
    )


def cache_path(checkpoint: Path) -> Path:
    """``weights/cache/<sha256 of the file>.npz``: where the conversion of `checkpoint` goes."""
    digest = hashlib.sha256(checkpoint.read_bytes()).hexdigest()
    return WEIGHTS_CACHE_DIR / f"{digest}.npz"


def expected_shapes(mid_channels: tuple[int, ...] | None = None) -> dict[str, tuple[int, ...]]:
    """name -> shape of every parameter and buffer of the ResNet-20 the weights are for (the
    standard one, or the channel-pruned one with these block-internal widths)."""
    model = ResNet20(mid_channels=mid_channels)
    return {name: tuple(np.shape(value)) for name, value in model.state_dict().items()}


def mid_channels_of(state: dict[str, np.ndarray]) -> tuple[int, ...] | None:
    """The block-internal widths a state dict (or a run's checkpoint, ``model.`` keys) holds:
    each block's conv1 output count; None when they are not all there (the shape check then
    names what is missing). Lab 4's channel-pruned runs save such checkpoints."""
    widths = []
    for block in range(9):
        for prefix in ("", _MODEL_PREFIX):
            shape = np.shape(state.get(f"{prefix}body_op.{block}.conv1.0.conv.weight", ()))
            if len(shape) == 4:
                widths.append(int(shape[0]))
                break
    if len(widths) != 9 or not all(1 <= w <= MAX_MID_CHANNELS for w in widths):
        return None
    return tuple(widths)


def validated(state: dict[str, np.ndarray], source: Path) -> dict[str, np.ndarray]:
    """`state` after checking that it fits ResNet-20 and holds only finite values.

    A run's checkpoint (``model.<name>`` keys, plus optimizer and hook state) is reduced to
    its model weights first.

    Raises:
        CheckpointError: a missing, unexpected or mis-shaped tensor, or a NaN/inf (named).
    """
    shapes = expected_shapes(mid_channels_of(state))
    if not set(shapes) <= set(state) and {_MODEL_PREFIX + k for k in shapes} <= set(state):
        state = {k[len(_MODEL_PREFIX):]: v for k, v in state.items()
                 if k.startswith(_MODEL_PREFIX)}
    missing = [k for k in shapes if k not in state]
    unexpected = [k for k in state if k not in shapes]
    mismatched = [f"{k}: checkpoint {tuple(np.shape(state[k]))} vs model {shape}"
                  for k, shape in shapes.items() if k in state and np.shape(state[k]) != shape]
    problems = [f"{label}: {', '.join(items[:4])}{' ...' if len(items) > 4 else ''}"
                for label, items in (("missing keys", missing), ("unexpected keys", unexpected),
                                     ("shape mismatch", mismatched)) if items]
    if problems:
        raise CheckpointError(f"{source} does not fit ResNet-20: " + " | ".join(problems))
    require_model_values(state, f"weights file {source}")
    return state


def require_model_values(state: dict[str, np.ndarray], what: str) -> None:
    """Refuse values no trained ResNet-20 holds: a NaN or inf anywhere, or a negative batch-norm
    running variance (eval mode would take the square root of a negative number plus eps and
    silently predict one class).

    Raises:
        CheckpointError: naming the first offending tensor.
    """
    require_finite(state, what)
    for name, value in state.items():
        if name.endswith("running_var") and np.any(np.asarray(value) < 0):
            raise CheckpointError(f"{what}: {name} has a negative running variance "
                                  f"({float(np.min(value)):.3g}); the file is corrupt")


def pretrained_state_dict(weights: str | os.PathLike[str] | None = None) -> dict[str, np.ndarray]:
    """The pretrained (or given) weights as numpy arrays, validated.

    A `.pt` is read once and its validated arrays cached by content (see the module
    docstring); an `.npz` is read directly.
    """
    path = find_pretrained_checkpoint(weights)
    if path.suffix == ".mtc":
        loaded = mtc.load(path)
        if loaded.folded:  # its state needs eps 0 in every batch norm: only load_model knows
            raise CheckpointError(f"{path} has folded batch norm (inference only); load it "
                                  "with load_pretrained, or use the unfolded file")
        return validated(loaded.state, path)
    if path.suffix == ".npz":
        arrays, _ = load_checkpoint(path)
        return validated(arrays, path)
    cached = cache_path(path)
    if cached.is_file():
        try:
            arrays, _ = load_checkpoint(cached)
            return validated(arrays, path)
        except CheckpointError:  # our own conversion, damaged: made again from the .pt below
            print(f"note: {shown(cached)} is damaged; converting {path} again")
    # read first, then check the shapes against the widths the file holds (a channel-pruned
    # export is a ResNet-20 too); the reader's size bound keeps a hostile file from costing
    # more than a model's memory before that check
    state = validated(load_torch_state_dict(path), path)
    print(f"converting {path} -> {shown(cached)} (once)")
    try:
        atomic_write(cached, lambda f: write_npz(f, state))
    except OSError as exc:  # a read-only checkout still works, it just converts every time
        print(f"note: could not cache the conversion ({exc.strerror}); continuing without it")
    return state


def load_pretrained(weights: str | os.PathLike[str] | None = None) -> ResNet20:
    """A ResNet-20 with the course's pretrained weights (or those given: a `.pt`, an `.npz`
    or a compressed `.mtc` model file, whose own architecture is used), in eval mode."""
    if weights is not None and Path(weights).suffix == ".mtc":
        path = find_pretrained_checkpoint(weights)
        model = mtc.load_model(path)
        require_model_values(model.state_dict(), f"weights file {path}")
        return model
    state = pretrained_state_dict(weights)
    model = ResNet20(mid_channels=mid_channels_of(state))  # a Lab 4 run's smaller model too
    model.load_state_dict(state)
    return model.eval()
