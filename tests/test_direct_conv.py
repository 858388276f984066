"""The direct 3x3 convolution (`kernels/direct_conv.py`) agrees with the NumPy reference.

Drawn over shapes (batch, channel counts that are and are not multiples of the 4-channel
block, odd and even sizes down to 1x1), paddings 0-3 (beyond 2 the output is larger than the
input) and both float dtypes; with the fused
epilogue it equals the plain kernel followed by the same row epilogue, bit for bit.
"""

from __future__ import annotations

import os
import subprocess
import sys
from unittest import mock

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from strategies import float_dtypes, seeds
from test_kernels import assert_close

from minitorch_compress.kernels import conv, direct_conv
from minitorch_compress.kernels import reference as ref
from minitorch_compress.kernels.conv import _Epilogue, _epilogue_args
from minitorch_compress.kernels.rows import affine_row


@st.composite
def direct_settings(draw):
    """(n, c, k, h, w, padding) with an output of at least 1x1."""
    padding = draw(st.integers(0, 3))
    smallest = max(1, 3 - 2 * padding)
    return (draw(st.integers(1, 3)), draw(st.integers(1, 9)), draw(st.integers(1, 10)),
            draw(st.integers(smallest, 11)), draw(st.integers(smallest, 11)), padding)


def _run(x, w, padding, epilogue=None, positions=None):
    n, _, h, wd = x.shape
    y = np.full((n, w.shape[0], h + 2 * padding - 2, wd + 2 * padding - 2), np.nan, x.dtype)
    with mock.patch.object(direct_conv, "_FORWARD_POSITIONS",
                           positions or direct_conv._FORWARD_POSITIONS):
        direct_conv.direct3x3_forward_serial(x, w, padding, y,
                                             _epilogue_args(epilogue, 4, x.dtype))
    return y


# how many flat positions a forward chunk aims at: the kernel's own (every drawn batch in one
# chunk), one image per chunk, a few images and usually a shorter last chunk
positions = st.sampled_from([None, 1, 200])


@settings(max_examples=60, deadline=None)
@given(direct_settings(), float_dtypes, seeds, positions)
def test_direct3x3_matches_reference(setting, dtype, seed, chunk_positions):
    n, c, k, h, wd, padding = setting
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, c, h, wd)).astype(dtype)
    w = rng.standard_normal((k, c, 3, 3)).astype(dtype)
    y = _run(x, w, padding, positions=chunk_positions)
    expected = ref.conv2d_forward(x, w, 1, padding)
    assert_close(y, expected, ref.conv2d_forward(np.abs(x), np.abs(w), 1, padding))


def test_direct3x3_resnet_shapes_match_reference():
    """ResNet-20's three stride-1 shapes, whose flat loops are long and rounded to lanes."""
    rng = np.random.default_rng(0)
    for c, size in ((16, 32), (32, 16), (64, 8)):
        x = rng.standard_normal((2, c, size, size)).astype(np.float32)
        w = rng.standard_normal((c, c, 3, 3)).astype(np.float32)
        y = _run(x, w, 1)
        assert_close(y, ref.conv2d_forward(x, w, 1, 1),
                     ref.conv2d_forward(np.abs(x), np.abs(w), 1, 1))


@settings(max_examples=25, deadline=None)
@given(direct_settings(), seeds, st.booleans(), st.booleans(), positions)
def test_direct3x3_epilogue_is_the_row_epilogue_after_the_conv(setting, seed, relu, residual,
                                                               chunk_positions):
    n, c, k, h, wd, padding = setting
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, c, h, wd)).astype(np.float32)
    w = rng.standard_normal((k, c, 3, 3)).astype(np.float32)
    coef = rng.standard_normal((k, 2)).astype(np.float32)
    plain = _run(x, w, padding, positions=chunk_positions)
    res = rng.standard_normal(plain.shape).astype(np.float32) if residual else None
    fused = _run(x, w, padding, _Epilogue(coef, relu, res), positions=chunk_positions)
    np.testing.assert_array_equal(fused, with_row_epilogue(plain, coef, relu, res))


def with_row_epilogue(plain, coef, relu, res):
    """`plain` (N, K, Ho, Wo) with `rows.affine_row` applied to each output row: what a
    kernel's fused epilogue must give, bit for bit (res: like plain, or None)."""
    expected = plain.copy()
    n, k, ho, _ = plain.shape
    for i in range(n):
        for q in range(k):
            for oy in range(ho):
                row = expected[i, q, oy]
                affine_row(row, row, coef[q, 0], coef[q, 1], relu,
                           res[i, q, oy] if res is not None else row, res is not None)
    return expected


def test_stacked_geometry_leaves_room_for_every_read():
    """Every tap's read at every position a rounded-up loop computes lies inside the row."""
    lanes = direct_conv._LANES
    for h, w, padding, images in ((32, 32, 1, 1), (8, 8, 1, 10), (1, 1, 1, 3), (5, 3, 2, 2),
                                  (3, 3, 0, 1), (2, 3, 3, 3), (4, 4, 5, 2)):
        wp, segment, row_len = direct_conv.stacked_geometry(h, w, padding, images)
        ho, wo = h + 2 * padding - 2, w + 2 * padding - 2
        if padding <= 2:
            assert (wp, segment) == (w + padding, (h + padding) * wp)  # padding shared
        # each image's output fits in its segment, with at least `padding` zeros between
        # the images' real rows and columns
        assert ho * wp <= segment and wo <= wp and segment >= (h + padding) * wp
        assert wp >= w + padding
        last = (images - 1) * segment + (ho - 1) * wp + wo
        length = -(-last // lanes) * lanes
        assert (length - 1) + 2 * wp + 2 < row_len


@settings(max_examples=60, deadline=None)
@given(direct_settings(), float_dtypes, seeds, st.sampled_from([None, 1, 3000]),
       st.booleans())
def test_direct3x3_grad_weight_matches_reference(setting, dtype, seed, stack_bytes, pairs):
    """Over chunk sizes too: the kernel's own, one image per chunk, a few (a shorter last
    chunk then reuses rows the previous one filled); two output channels a pass and one."""
    n, c, k, h, wd, padding = setting
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, c, h, wd)).astype(dtype)
    gy = rng.standard_normal((n, k, h + 2 * padding - 2, wd + 2 * padding - 2)).astype(dtype)
    with mock.patch.object(direct_conv, "_STACK_BYTES", stack_bytes or direct_conv._STACK_BYTES):
        gw = direct_conv.direct3x3_grad_weight_serial(gy, x, padding, pairs)
    expected = ref.conv2d_grad_weight(gy, x, (k, c, 3, 3), 1, padding)
    magnitude = ref.conv2d_grad_weight(np.abs(gy), np.abs(x), (k, c, 3, 3), 1, padding)
    assert_close(gw, expected, magnitude)


def test_a_bad_direct_conv_setting_in_the_environment_is_one_line():
    env = dict(os.environ, MINITORCH_DIRECT_CONV="fast")
    out = subprocess.run([sys.executable, "-m", "minitorch_compress", "report", "--out-dir",
                          os.devnull + "_nothing"], env=env, capture_output=True, text=True)
    assert out.returncode == 2 and out.stderr.count("\n") == 1
    assert "MINITORCH_DIRECT_CONV='fast'" in out.stderr


def test_the_environment_chooses_the_direct_ops(monkeypatch):
    monkeypatch.setenv("MINITORCH_DIRECT_CONV", "forward, grad_weight")
    assert conv.direct_from_environment() == {"forward", "grad_weight"}
    monkeypatch.setenv("MINITORCH_DIRECT_CONV", "none")
    assert conv.direct_from_environment() == frozenset()
