"""The direct 3x3 grad-weight (`kernels/direct_conv.py`) agrees with the NumPy reference.

Drawn over shapes (batch, odd and even channel counts, below, at and above a vector's
width, odd and even sizes down to 1x1), strides 1 and 2, paddings 0-3 (beyond 2 the output
is larger than the input), chunk sizes and both vector widths (8 lanes, and 16: forced, so
every x86-64 CPU runs both; on one without AVX-512 LLVM splits the 16-lane operations).
"""

from __future__ import annotations

from unittest import mock

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from strategies import seeds
from test_kernels import assert_close

from minitorch_compress.kernels import direct_conv, dispatch
from minitorch_compress.kernels import reference as ref


@st.composite
def direct_settings(draw):
    """(n, c, k, h, w, padding, stride) with an output of at least 1x1."""
    padding = draw(st.integers(0, 3))
    smallest = max(1, 3 - 2 * padding)
    return (draw(st.integers(1, 3)), draw(st.integers(1, 34)), draw(st.integers(1, 10)),
            draw(st.integers(smallest, 11)), draw(st.integers(smallest, 11)), padding,
            draw(st.sampled_from([1, 2])))


def _check(n, c, k, h, wd, padding, stride, seed, lanes):
    rng = np.random.default_rng(seed)
    ho, wo = ((size + 2 * padding - 3) // stride + 1 for size in (h, wd))
    x = rng.standard_normal((n, c, h, wd)).astype(np.float32)
    gy = rng.standard_normal((n, k, ho, wo)).astype(np.float32)
    gw = direct_conv.direct3x3_grad_weight_serial(gy, x, padding, lanes, stride)
    assert gw.shape == (k, c, 3, 3) and gw.dtype == np.float32
    expected = ref.conv2d_grad_weight(gy, x, (k, c, 3, 3), stride, padding)
    magnitude = ref.conv2d_grad_weight(np.abs(gy), np.abs(x), (k, c, 3, 3), stride, padding)
    assert_close(gw, expected, magnitude)


@settings(max_examples=60, deadline=None)
@given(direct_settings(), seeds, st.sampled_from([None, 1, 3000]), st.sampled_from([8, 16]))
@example((3, 17, 5, 4, 4, 1, 1), 0, 1, 16)  # odd K, C past one vector, one image a chunk
@example((2, 16, 2, 1, 1, 3, 1), 0, None, 16)  # a 1x1 input, padding 3: a 4x4 output
@example((2, 16, 3, 8, 7, 1, 2), 0, 1, 16)  # stride 2, an odd width: its last column unread
def test_direct3x3_grad_weight_matches_reference(setting, seed, stack_bytes, lanes):
    """Over chunk sizes too: the kernel's own, one image per chunk, a few (a shorter last
    chunk then leaves the previous chunk's images behind, unread)."""
    with mock.patch.object(direct_conv, "_CHUNK_BYTES", stack_bytes or direct_conv._CHUNK_BYTES):
        _check(*setting, seed, lanes)


@pytest.mark.parametrize("lanes", [8, 16])
@pytest.mark.parametrize("c, k, size, stride", [(3, 16, 32, 1), (16, 16, 32, 1),
                                                (32, 32, 16, 1), (64, 64, 8, 1),
                                                (16, 32, 32, 2), (32, 64, 16, 2)])
def test_direct3x3_grad_weight_resnet_shapes_match_reference(c, k, size, stride, lanes):
    """ResNet-20's 3x3 shapes, where the table runs it, at both widths."""
    _check(3, c, k, size, size, 1, stride, 0, lanes)


def test_direct3x3_grad_weight_refuses_what_it_does_not_take():
    x = np.zeros((1, 2, 4, 4), np.float32)
    with pytest.raises(ValueError, match="float32"):
        direct_conv.direct3x3_grad_weight_serial(x.astype(np.float64), x.astype(np.float64),
                                                 1, 8)
    with pytest.raises(ValueError, match="lanes"):
        direct_conv.direct3x3_grad_weight_serial(x, x, 1, 4)
    with pytest.raises(ValueError, match="stride"):
        direct_conv.direct3x3_grad_weight_serial(x, x, 1, 8, 3)


def test_grad_weight_lanes_pad_the_channels_least():
    """16 lanes only where they pad C to no more channels than 8 lanes would (on AVX-512)."""
    with mock.patch.object(dispatch, "WIDE_VECTORS", True):
        assert [dispatch.grad_weight_lanes(c) for c in (3, 8, 12, 16, 20, 32, 64)] == [
            8, 8, 16, 16, 8, 16, 16]
    with mock.patch.object(dispatch, "WIDE_VECTORS", False):
        assert {dispatch.grad_weight_lanes(c) for c in (3, 16, 64)} == {8}
