"""Reusable hypothesis strategies for the test suite.

Import from a test module as ``from strategies import conv_settings`` (pytest puts the
`tests/` folder on the import path because it has no ``__init__.py``).

Array contents are not drawn element by element: a strategy draws a seed and the test builds
its arrays with ``numpy.random.default_rng(seed)``. That keeps examples fast, reproducible
(hypothesis prints the seed on failure) and lets hypothesis shrink the *shapes*, which is
where kernel bugs live.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from hypothesis import strategies as st

# ------------------------------------------------------------------------- generic
#: Seeds for ``numpy.random.default_rng``.
seeds = st.integers(min_value=0, max_value=2**32 - 1)

#: The two float types the kernels support (float32 for training, float64 for grad checks).
float_dtypes = st.sampled_from([np.float32, np.float64])


# ----------------------------------------------------------------------- convolution
@dataclass(frozen=True)
class ConvSetting:
    """One convolution problem: x (n, c, h, w) * weight (k, c, kh, kw) with stride/padding."""

    n: int
    c: int
    k: int
    h: int
    w: int
    kh: int
    kw: int
    stride: int
    padding: int

    @property
    def x_shape(self) -> tuple[int, int, int, int]:
        return (self.n, self.c, self.h, self.w)

    @property
    def w_shape(self) -> tuple[int, int, int, int]:
        return (self.k, self.c, self.kh, self.kw)

    @property
    def out_hw(self) -> tuple[int, int]:
        """(Ho, Wo) = ((H + 2p - kh) // s + 1, (W + 2p - kw) // s + 1)."""
        return (
            (self.h + 2 * self.padding - self.kh) // self.stride + 1,
            (self.w + 2 * self.padding - self.kw) // self.stride + 1,
        )

    @property
    def y_shape(self) -> tuple[int, int, int, int]:
        return (self.n, self.k, *self.out_hw)


@st.composite
def conv_settings(
    draw,
    max_batch: int = 5,
    max_channels: int = 8,
    max_size: int = 12,
    kernel_sizes: tuple[int, ...] = (1, 3),
    strides: tuple[int, ...] = (1, 2),
    paddings: tuple[int, ...] = (0, 1),
) -> ConvSetting:
    """Conv problems with square kernels from `kernel_sizes`, odd and even spatial sizes
    1..`max_size`, and an output of at least 1x1 (the spatial size is drawn >= kernel - 2p,
    so nothing is filtered away)."""
    kernel = draw(st.sampled_from(kernel_sizes))
    padding = draw(st.sampled_from(paddings))
    smallest = max(1, kernel - 2 * padding)
    return ConvSetting(
        n=draw(st.integers(1, max_batch)),
        c=draw(st.integers(1, max_channels)),
        k=draw(st.integers(1, max_channels)),
        h=draw(st.integers(smallest, max(smallest, max_size))),
        w=draw(st.integers(smallest, max(smallest, max_size))),
        kh=kernel,
        kw=kernel,
        stride=draw(st.sampled_from(strides)),
        padding=padding,
    )


# ------------------------------------------------------------------------ batch-norm
@st.composite
def nchw_shapes(
    draw, max_batch: int = 5, max_channels: int = 8, max_size: int = 12, min_per_channel: int = 2
) -> tuple[int, int, int, int]:
    """NCHW shapes with at least `min_per_channel` values per channel (N*H*W), so a batch
    variance is defined."""
    shape = (
        draw(st.integers(1, max_batch)),
        draw(st.integers(1, max_channels)),
        draw(st.integers(1, max_size)),
        draw(st.integers(1, max_size)),
    )
    n, _, h, w = shape
    if n * h * w < min_per_channel:
        # grow the batch rather than filter: filtering small shapes would starve shrinking
        shape = (min_per_channel, *shape[1:])
    return shape


# ------------------------------------------------------------------- pruning (Lab 2)
#: Pruning fractions q: the course's values, the ends, and anything in [0, 1].
prune_fractions = st.one_of(
    st.sampled_from([0.0, 0.4, 0.6, 0.8, 1.0]),
    st.floats(min_value=0.0, max_value=1.0, allow_nan=False),
)

#: Small weight shapes: Linear (out, in) up to conv (out, in, k, k), at most 6**4 entries.
weight_shapes = st.one_of(
    st.tuples(st.integers(1, 40), st.integers(1, 40)),
    st.tuples(st.integers(1, 6), st.integers(1, 6), st.sampled_from([1, 3]),
              st.sampled_from([1, 3])),
    st.tuples(st.integers(1, 300)),
)


def distinct_magnitude_array(rng: np.random.Generator, n: int) -> np.ndarray:
    """n float32 weights with random signs whose magnitudes are all distinct.

    Neighbouring magnitudes differ by 0.5..1.5 units of a random scale while the largest is
    about 1.5 n units, so the relative gap (>= 1/(3n)) is far above float32's 6e-8: there are
    no ties at a pruning threshold, and numpy's interpolated percentile lies strictly between
    two neighbours unless q (n - 1) is (nearly) an integer.
    """
    scale = 10.0 ** rng.uniform(-3.0, 1.0) / n
    magnitudes = np.cumsum(rng.uniform(0.5, 1.5, n)) * scale
    signs = rng.choice(np.array([-1.0, 1.0]), n)
    return (rng.permutation(magnitudes) * signs).astype(np.float32)


@st.composite
def distinct_weights(draw, shapes: st.SearchStrategy = weight_shapes) -> np.ndarray:
    """A float32 weight array (shape from `shapes`) with distinct non-zero magnitudes."""
    shape = draw(shapes)
    rng = np.random.default_rng(draw(seeds))
    return distinct_magnitude_array(rng, int(np.prod(shape))).reshape(shape)


# -------------------------------------------------------------- quantization (Lab 3)
#: Bit-widths of the course's sweep and around it; symmetric quantization needs >= 2.
bit_widths = st.integers(min_value=1, max_value=8)
symmetric_bit_widths = st.integers(min_value=2, max_value=8)
QUANT_MODES = ("asymmetric", "masked", "symmetric")


@dataclass(frozen=True)
class QuantCase:
    """A weight array to quantize with `bits` bits in `mode`, free of rounding ties."""

    w: np.ndarray
    bits: int
    mode: str


def _grid(w: np.ndarray, bits: int, mode: str) -> tuple[float, float] | None:
    """(origin, step) of the quantization levels of w, computed independently of the
    library; None when every weight is a level already (constant or all-zero input)."""
    values = w[w != 0] if mode == "masked" else w.ravel()
    if values.size == 0:
        return None
    if mode == "symmetric":
        largest = float(np.abs(values).max())
        return (0.0, largest / (2 ** (bits - 1) - 1)) if largest > 0 else None
    lo, hi = float(values.min()), float(values.max())
    return (lo, (hi - lo) / (2**bits - 1)) if hi > lo else None


def nudge_off_rounding_ties(w: np.ndarray, bits: int, mode: str) -> np.ndarray:
    """w with every weight within 1 % of a step of a midpoint between two levels moved by
    2 % of a step, so rounding never depends on float error. Min and max (and the zeros of
    the masked mode) sit on levels, far from midpoints, so the grid itself does not move."""
    grid = _grid(w, bits, mode)
    if grid is None:
        return w
    origin, step = grid
    x = w.astype(np.float64)
    position = (x - origin) / step
    near_tie = np.abs(position - np.floor(position) - 0.5) < 0.01
    if mode == "masked":
        near_tie &= x != 0
    x[near_tie] += 0.02 * step
    return x.astype(w.dtype)


@st.composite
def quant_cases(draw, modes: tuple[str, ...] = QUANT_MODES, max_bits: int = 8,
                sparse: bool | None = None) -> QuantCase:
    """Weights of a small shape, of random scale, centred on 0 or shifted to one sign, with
    (`sparse`=True), without (False) or with or without (None) exact zeros, kept away from
    rounding ties for the drawn bits and mode."""
    mode = draw(st.sampled_from(modes))
    bits = draw(st.integers(2 if mode == "symmetric" else 1, max_bits))
    shape = draw(weight_shapes)
    rng = np.random.default_rng(draw(seeds))
    scale = 10.0 ** draw(st.floats(-3.0, 1.0))
    shift = draw(st.sampled_from([0.0, 0.0, 3.0, -3.0]))  # one-signed tensors test beta != -alpha/2
    w = (rng.standard_normal(shape) + shift) * scale
    if draw(st.booleans()) if sparse is None else sparse:
        w[rng.random(shape) < draw(st.floats(0.0, 0.95))] = 0.0
    w = w.astype(np.float32)
    return QuantCase(nudge_off_rounding_ties(w, bits, mode), bits, mode)
