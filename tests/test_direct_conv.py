"""The direct 3x3 grad-weight (`kernels/direct_conv.py`) agrees with the NumPy reference.

Drawn over shapes (batch, odd and even channel counts, odd and even sizes down to 1x1),
paddings 0-3 (beyond 2 the output is larger than the input), both float dtypes, chunk sizes
and both register blocks (two output channels a pass, or one).
"""

from __future__ import annotations

from unittest import mock

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from strategies import float_dtypes, seeds
from test_kernels import assert_close

from minitorch_compress.kernels import direct_conv
from minitorch_compress.kernels import reference as ref


@st.composite
def direct_settings(draw):
    """(n, c, k, h, w, padding) with an output of at least 1x1."""
    padding = draw(st.integers(0, 3))
    smallest = max(1, 3 - 2 * padding)
    return (draw(st.integers(1, 3)), draw(st.integers(1, 9)), draw(st.integers(1, 10)),
            draw(st.integers(smallest, 11)), draw(st.integers(smallest, 11)), padding)


def test_stacked_geometry_leaves_room_for_every_read():
    """Every tap's read at every position the grad-weight loop visits lies inside the row."""
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
        length = (images - 1) * segment + (ho - 1) * wp + wo
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


def test_direct3x3_grad_weight_resnet_shapes_match_reference():
    """ResNet-20's stride-1 shapes where the table runs it (32x32 and 16x16), both blocks."""
    rng = np.random.default_rng(0)
    for c, size in ((16, 32), (32, 16)):
        x = rng.standard_normal((3, c, size, size)).astype(np.float32)
        gy = rng.standard_normal((3, c, size, size)).astype(np.float32)
        for pairs in (True, False):
            gw = direct_conv.direct3x3_grad_weight_serial(gy, x, 1, pairs)
            assert_close(gw, ref.conv2d_grad_weight(gy, x, (c, c, 3, 3), 1, 1),
                         ref.conv2d_grad_weight(np.abs(gy), np.abs(x), (c, c, 3, 3), 1, 1))
