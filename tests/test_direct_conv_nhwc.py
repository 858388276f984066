"""The channels-last direct 3x3 forward (`kernels/direct_conv_nhwc.py`) agrees with the NumPy
reference.

Drawn over shapes (channel counts that are and are not multiples of the 4-channel block,
odd and even output widths down to 1), paddings 0-3 and both float dtypes; with the fused
epilogue it equals the plain kernel followed by the same row epilogue, bit for bit.
"""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from strategies import float_dtypes, seeds
from test_direct_conv import direct_settings, with_row_epilogue
from test_kernels import assert_close

from minitorch_compress.kernels import direct_conv_nhwc as nhwc
from minitorch_compress.kernels import reference as ref
from minitorch_compress.kernels.conv import _Epilogue, _epilogue_args


def _run(x, w, padding, epilogue=None):
    n, _, h, wd = x.shape
    y = np.full((n, w.shape[0], h + 2 * padding - 2, wd + 2 * padding - 2), np.nan, x.dtype)
    nhwc.direct3x3_nhwc_forward_serial(x, w, padding, y, _epilogue_args(epilogue, 4, x.dtype))
    return y


@settings(max_examples=60, deadline=None)
@given(direct_settings(), float_dtypes, seeds)
def test_nhwc_forward_matches_reference(setting, dtype, seed):
    n, c, k, h, wd, padding = setting
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, c, h, wd)).astype(dtype)
    w = rng.standard_normal((k, c, 3, 3)).astype(dtype)
    y = _run(x, w, padding)
    assert_close(y, ref.conv2d_forward(x, w, 1, padding),
                 ref.conv2d_forward(np.abs(x), np.abs(w), 1, padding))


def test_nhwc_forward_resnet_shapes_match_reference():
    """ResNet-20's three stride-1 shapes (long reductions: 3C = 48, 96, 192)."""
    rng = np.random.default_rng(0)
    for c, size in ((16, 32), (32, 16), (64, 8)):
        x = rng.standard_normal((2, c, size, size)).astype(np.float32)
        w = rng.standard_normal((c, c, 3, 3)).astype(np.float32)
        assert_close(_run(x, w, 1), ref.conv2d_forward(x, w, 1, 1),
                     ref.conv2d_forward(np.abs(x), np.abs(w), 1, 1))


@settings(max_examples=25, deadline=None)
@given(direct_settings(), seeds)
def test_nhwc_epilogue_is_the_row_epilogue_after_the_conv(setting, seed):
    n, c, k, h, wd, padding = setting
    rng = np.random.default_rng(seed)
    relu, residual = bool(seed % 2), bool(seed % 3)
    x = rng.standard_normal((n, c, h, wd)).astype(np.float32)
    w = rng.standard_normal((k, c, 3, 3)).astype(np.float32)
    coef = rng.standard_normal((k, 2)).astype(np.float32)
    plain = _run(x, w, padding)
    res = rng.standard_normal(plain.shape).astype(np.float32) if residual else None
    fused = _run(x, w, padding, _Epilogue(coef, relu, res))
    np.testing.assert_array_equal(fused, with_row_epilogue(plain, coef, relu, res))


def test_padded_rows_leave_room_for_the_last_pair():
    """The second position of the last pair reads 3C values from column wo (odd wo) or
    wo - 1 on: inside the padded row either way."""
    for w, padding in ((8, 1), (7, 1), (1, 1), (3, 0), (4, 0), (2, 3), (5, 2)):
        wo = w + 2 * padding - 2
        last_pair = wo - 1 if wo % 2 else wo - 2
        assert (last_pair + 1) + 3 <= nhwc.padded_width(w, padding)
