"""Per-batch image transforms for CIFAR-10: normalisation and crop/flip augmentation.

Everything works on whole NCHW batches at once (no per-image Python loop), and all randomness
comes from an explicit ``numpy.random.Generator``.

Order of operations, as in the torchvision pipeline the course used
(``RandomCrop(32, padding=4)``, ``RandomHorizontalFlip()``, ``ToTensor()``, ``Normalize``):
crop and flip the **raw uint8 pixels** first, then normalise. The zero padding of the crop is
therefore raw pixel value 0 (black), which after normalisation becomes ``-mean/std`` per
channel (about -2.4), *not* 0.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

__all__ = [
    "CIFAR10_MEAN",
    "CIFAR10_STD",
    "normalize",
    "crop_flip_params",
    "crop_flip",
    "random_crop_flip",
]

#: Per-channel (R, G, B) mean of CIFAR-10 training pixels scaled to [0, 1].
CIFAR10_MEAN: tuple[float, float, float] = (0.4914, 0.4822, 0.4465)
#: Per-channel standard deviation used by the course (the commonly quoted CIFAR-10 values).
CIFAR10_STD: tuple[float, float, float] = (0.2023, 0.1994, 0.2010)


@lru_cache(maxsize=8)
def _lookup_table(mean: tuple[float, ...], std: tuple[float, ...]) -> np.ndarray:
    """(C, 256) float32: the normalised value of every possible uint8 pixel, per channel.

    Computed with exactly torchvision's float32 arithmetic, ``(x / 255 - mean) / std``, so
    looking values up gives bit-identical results, about 3x faster than redoing the arithmetic.
    """
    pixels = np.arange(256, dtype=np.float32) / np.float32(255)
    mean32 = np.asarray(mean, dtype=np.float32)[:, None]
    std32 = np.asarray(std, dtype=np.float32)[:, None]
    table = (pixels[None, :] - mean32) / std32
    table.flags.writeable = False  # shared through the cache
    return table


def normalize(
    batch: np.ndarray,
    mean: tuple[float, ...] = CIFAR10_MEAN,
    std: tuple[float, ...] = CIFAR10_STD,
) -> np.ndarray:
    """Scale raw pixels to [0, 1] and standardise each channel: ``(x / 255 - mean) / std``.

    Matches torchvision's ``ToTensor()`` followed by ``Normalize(mean, std)`` bit for bit in
    float32.

    Args:
        batch: uint8 images, shape (N, C, H, W) (a single image (C, H, W) works too).
        mean: Per-channel means, length C.
        std: Per-channel standard deviations, length C.

    Returns:
        float32 array of the same shape.

    Raises:
        TypeError: If ``batch`` is not uint8 (normalising twice is a classic silent bug).
        ValueError: If the channel axis does not match ``mean``/``std``.
    """
    if batch.dtype != np.uint8:
        raise TypeError(f"normalize expects raw uint8 pixels, got {batch.dtype}")
    channel_axis = batch.ndim - 3
    if channel_axis < 0 or batch.shape[channel_axis] != len(mean) or len(mean) != len(std):
        raise ValueError(
            f"batch of shape {batch.shape} does not match {len(mean)} means / {len(std)} stds"
        )
    table = _lookup_table(tuple(float(m) for m in mean), tuple(float(s) for s in std))
    out = np.empty(batch.shape, dtype=np.float32)
    for c in range(len(mean)):  # loop over the 3 channels, not over images
        index = (Ellipsis, c, slice(None), slice(None))
        out[index] = table[c][batch[index]]
    return out


def crop_flip_params(
    n: int, rng: np.random.Generator, padding: int = 4, flip_prob: float = 0.5
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Draw random-crop offsets and flip decisions for ``n`` images.

    Args:
        n: Number of images.
        rng: Source of randomness; draws ``dy``, then ``dx``, then the flips.
        padding: Pixels of padding on each side; offsets are uniform in ``0..2*padding``
            (as torchvision's ``RandomCrop`` draws them).
        flip_prob: Probability of a horizontal flip.

    Returns:
        ``(dy, dx, flip)``: int64 (n,) row and column offsets into the padded image, and
        bool (n,) flip decisions.
    """
    dy = rng.integers(0, 2 * padding + 1, size=n)
    dx = rng.integers(0, 2 * padding + 1, size=n)
    flip = rng.random(n) < flip_prob
    return dy, dx, flip


def crop_flip(
    batch: np.ndarray, dy: np.ndarray, dx: np.ndarray, flip: np.ndarray, padding: int = 4
) -> np.ndarray:
    """Zero-pad, crop back to the original size at the given offsets, then flip some images.

    Image ``i`` of the result is the window ``padded[i, :, dy[i]:dy[i]+H, dx[i]:dx[i]+W]``,
    mirrored left-right where ``flip[i]``. An offset of ``padding`` in both directions returns
    the image unchanged.

    Args:
        batch: Images, shape (N, C, H, W), any dtype (raw uint8 pixels in the pipeline, so the
            padding is pixel value 0).
        dy: Row offsets, int (N,), in ``0..2*padding``.
        dx: Column offsets, int (N,), in ``0..2*padding``.
        flip: bool (N,), which images to mirror horizontally.
        padding: Pixels of zero padding on each side.

    Returns:
        New C-contiguous array, shape (N, C, H, W), same dtype as ``batch``.
    """
    n, _, h, w = batch.shape
    if not (dy.shape == dx.shape == flip.shape == (n,)):
        raise ValueError(f"need one dy/dx/flip per image ({n}), got {dy.shape}")
    if n and (min(dy.min(), dx.min()) < 0 or max(dy.max(), dx.max()) > 2 * padding):
        raise ValueError(f"crop offsets must lie in 0..{2 * padding}")
    padded = np.pad(batch, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    # windows[i, c, y, x] is the (H, W) window whose top-left corner is (y, x): a view, no copy.
    windows = np.lib.stride_tricks.sliding_window_view(padded, (h, w), axis=(2, 3))
    # Picking one window per image with fancy indexing copies just the crops: (N, C, H, W).
    out = windows[np.arange(n), :, dy, dx]
    out[flip] = out[flip, :, :, ::-1]
    return out


def random_crop_flip(
    batch: np.ndarray, rng: np.random.Generator, padding: int = 4, flip_prob: float = 0.5
) -> np.ndarray:
    """Random crop with zero padding, then random horizontal flip (the CIFAR-10 augmentation).

    Same distribution as torchvision's ``RandomCrop(H, padding)`` + ``RandomHorizontalFlip``
    (not the same random stream). Apply it to raw uint8 pixels, before ``normalize``.

    Args:
        batch: Images, shape (N, C, H, W).
        rng: Source of randomness (see ``crop_flip_params`` for the draw order).
        padding: Pixels of zero padding on each side.
        flip_prob: Probability of a horizontal flip.

    Returns:
        Augmented copy, shape (N, C, H, W), same dtype.
    """
    dy, dx, flip = crop_flip_params(len(batch), rng, padding, flip_prob)
    return crop_flip(batch, dy, dx, flip, padding)
