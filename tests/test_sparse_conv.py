"""The direct sparse convolution (kernels/sparse_conv.py) against the dense reference, on
both of its tiles: 8-lane vectors and 16-lane ones (`dispatch.sparse_lanes`; the AVX-512
choice is forced with `dispatch.WIDE_VECTORS`, so every x86-64 CPU runs both: without
AVX-512 LLVM splits each 16-lane operation in two)."""

from __future__ import annotations

from unittest import mock

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from numba import njit

from minitorch_compress.kernels import dispatch, simd, sparse_conv
from minitorch_compress.kernels import reference as ref
from minitorch_compress.kernels.sparse_conv import SparseWeights, sparse_conv2d_forward

# the pool path: images split across two threads (conftest.kernel_threads)
KERNEL_THREADS = 2


@st.composite
def sparse_convs(draw):
    """(x, w, stride, padding, rng): up to 5 images, kernels 1 or 3, strides 1 to 3, planes
    up to 20 wide (several position vectors a row, a Wo that is not a multiple of 8, more
    vectors than one tile), sparsity 0 to 100 %, sometimes an output channel of zeros."""
    n, c, k = draw(st.integers(1, 5)), draw(st.integers(1, 5)), draw(st.integers(1, 6))
    ksize = draw(st.sampled_from([1, 3]))
    stride, padding = draw(st.sampled_from([1, 2, 3])), draw(st.sampled_from([0, 1]))
    h = draw(st.integers(max(1, ksize - 2 * padding), 20))
    w = draw(st.integers(max(1, ksize - 2 * padding), 20))
    sparsity = draw(st.sampled_from([0.0, 0.5, 0.8, 0.95, 1.0]))
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    x = rng.standard_normal((n, c, h, w)).astype(np.float32)
    weights = rng.standard_normal((k, c, ksize, ksize)).astype(np.float32)
    weights[rng.random(weights.shape) < sparsity] = 0
    if k > 1 and draw(st.booleans()):
        weights[0] = 0  # an output channel with no non-zero at all
    return x, weights, stride, padding, rng


def _case(n, c, k, size, kernel, stride, padding, sparsity, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, c, size, size)).astype(np.float32)
    w = rng.standard_normal((k, c, kernel, kernel)).astype(np.float32)
    w[rng.random(w.shape) < sparsity] = 0
    return x, w, stride, padding, rng


def _wide(wide: bool):
    """Within the block, the sparse conv takes 16-lane vectors where Wo allows (`wide`) or
    never."""
    return mock.patch.object(dispatch, "WIDE_VECTORS", wide)


@settings(deadline=None, max_examples=150)
@given(sparse_convs(), st.booleans())
@example(_case(2, 3, 4, 16, 3, 1, 1, 0.5), False)  # Wo = 16: in place, two tiles a plane
@example(_case(2, 3, 4, 16, 3, 1, 1, 0.5), True)  # 16 lanes: a vector a row, one tile a plane
@example(_case(2, 3, 4, 32, 3, 1, 1, 0.8), True)  # 16 lanes, Wo = 32: two vectors a row
@example(_case(2, 3, 4, 32, 3, 2, 1, 0.5), True)  # 16 lanes at stride 2 (Wo = 16)
@example(_case(2, 3, 4, 16, 3, 2, 1, 0.5), False)  # stride 2, Wo = 8
@example(_case(1, 2, 3, 9, 3, 1, 0, 0.0), False)  # Wo = 7: the scratch plane, cropped
@example(_case(2, 2, 5, 20, 3, 1, 1, 0.5), True)  # Wo = 20, wide: 8 lanes (not 16's multiple)
def test_sparse_conv_matches_the_dense_reference(case, wide):
    x, w, stride, padding, _ = case
    sw = SparseWeights.from_dense(w)
    np.testing.assert_array_equal(sw.to_dense(), w)
    with _wide(wide):
        got = sparse_conv2d_forward(x, sw, stride, padding)
    want = ref.conv2d_forward(x, w, stride, padding)
    assert got.shape == want.shape and got.dtype == np.float32
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


@settings(deadline=None, max_examples=80)
@given(sparse_convs(), st.booleans(), st.booleans(), st.booleans())
@example(_case(2, 3, 4, 32, 3, 1, 1, 0.8), True, True, True)  # 16 lanes, in place
def test_the_fused_epilogue_matches_the_separate_steps(case, relu, with_residual, wide):
    x, w, stride, padding, rng = case
    k = w.shape[0]
    coef = np.stack([rng.uniform(0.5, 1.5, k), rng.standard_normal(k)], 1).astype(np.float32)
    y = ref.conv2d_forward(x, w, stride, padding)
    residual = rng.standard_normal(y.shape).astype(np.float32) if with_residual else None
    want = y * coef[:, 0][None, :, None, None] + coef[:, 1][None, :, None, None]
    if residual is not None:
        want = want + residual
    if relu:
        want = np.maximum(want, 0)
    with _wide(wide):
        got = sparse_conv2d_forward(x, SparseWeights.from_dense(w), stride, padding, coef,
                                    relu, residual)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    # the reference kernel set's sparse conv is the same function of the same inputs
    np.testing.assert_allclose(
        ref.sparse_conv2d_forward(x, SparseWeights.from_dense(w), stride, padding, coef, relu,
                                  residual), want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("wide", [False, True])
@pytest.mark.parametrize("size, stride, lanes_if_wide", [(32, 1, 16), (32, 2, 16), (16, 1, 16),
                                                          (16, 2, 8), (8, 1, 8), (40, 2, 8)])
def test_the_kernel_runs_the_width_the_table_names(size, stride, lanes_if_wide, wide):
    """16 lanes on AVX-512 where Wo is a multiple of 16 (ResNet-20's 32x32 and 16x16
    outputs), else 8 (its 8x8 ones, and Wo = 20); the results stay the reference's."""
    rng = np.random.default_rng(2)
    x = rng.standard_normal((2, 3, size, size)).astype(np.float32)
    w = rng.standard_normal((4, 3, 3, 3)).astype(np.float32) * (rng.random((4, 3, 3, 3)) < 0.3)
    spy = mock.patch.object(sparse_conv, "_sparse_tiled", wraps=sparse_conv._sparse_tiled)
    with _wide(wide), spy as tiled:
        got = sparse_conv2d_forward(x, SparseWeights.from_dense(w), stride, 1)
        assert dispatch.sparse_lanes(got.shape[3]) == (lanes_if_wide if wide else 8)
    lanes = {call.args[7] for call in tiled.call_args_list}
    assert lanes == {lanes_if_wide if wide else 8}
    np.testing.assert_allclose(got, ref.conv2d_forward(x, w, stride, 1), rtol=1e-5, atol=1e-5)


def test_float64_inputs_give_float64_results():
    """float64 runs the dense path on the decoded weights (the vectors are float32)."""
    x, w, stride, padding, _ = _case(2, 3, 4, 7, 3, 2, 1, 0.6)
    x = x.astype(np.float64)
    got = sparse_conv2d_forward(x, SparseWeights.from_dense(w), stride, padding)
    assert got.dtype == np.float64
    np.testing.assert_allclose(got, ref.conv2d_forward(x, w.astype(np.float64), stride,
                                                       padding), rtol=1e-12, atol=1e-12)


def test_a_sparse_resnet20_predicts_what_the_dense_one_does():
    """to_sparse switches the sparse convs of a pruned model to the sparse kernel (with the
    fused epilogue, residual and ReLU), stride-2 convs included; logits agree to float
    rounding, predictions exactly."""
    from minitorch_compress import Tensor, no_grad
    from minitorch_compress.compression import prune_model_by_percentage
    from minitorch_compress.models import resnet20
    from minitorch_compress.models.resnet import to_dense, to_sparse

    model = resnet20(rng=np.random.default_rng(0)).eval()
    prune_model_by_percentage(model, 0.8)
    x = Tensor(np.random.default_rng(1).standard_normal((6, 3, 32, 32)).astype(np.float32))
    with no_grad():
        dense = model(x).data
        chosen = to_sparse(model, min_sparsity=0.5)
        sparse = model(x).data
        to_dense(model)
        again = model(x).data
    # the head conv and the 18 block convs (two of them stride 2); shortcuts are not pruned
    assert len(chosen) == 19 and "body_op.3.conv1" in chosen and "body_op.6.conv1" in chosen
    np.testing.assert_allclose(sparse, dense, rtol=1e-4, atol=1e-5)
    np.testing.assert_array_equal(again, dense)
    assert (sparse.argmax(1) == dense.argmax(1)).all()


def test_the_kernel_steps_in_plain_python():
    """``NUMBA_DISABLE_JIT=1`` (stepping in a debugger) runs the same loops, vectors as
    NumPy arrays, to the same result: at stride 1 (in place) and 2 (a cropped plane, its
    rows packed 16 columns at a time and then one by one), on 8 lanes and on 16 (Wo = 16)."""
    import os
    import subprocess
    import sys

    script = (
        "import numpy as np\n"
        "from minitorch_compress.kernels import dispatch, reference as ref\n"
        "from minitorch_compress.kernels.sparse_conv import SparseWeights, "
        "sparse_conv2d_forward\n"
        "rng = np.random.default_rng(0)\n"
        "for stride, size, wide in ((1, 8, False), (2, 17, False), (1, 16, True)):\n"
        "    dispatch.WIDE_VECTORS = wide\n"
        "    x = rng.standard_normal((2, 3, size, size)).astype(np.float32)\n"
        "    w = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)\n"
        "    w[rng.random(w.shape) < 0.6] = 0\n"
        "    got = sparse_conv2d_forward(x, SparseWeights.from_dense(w), stride, 1)\n"
        "    np.testing.assert_allclose(got, ref.conv2d_forward(x, w, stride, 1), rtol=1e-5,\n"
        "                               atol=1e-5)\n"
        "print('ok')\n")
    env = {**os.environ, "NUMBA_DISABLE_JIT": "1", "MINITORCH_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "ok"


@njit(cache=True)
def _deinterleave(a, even, odd):
    """even = a[0::2], odd = a[1::2] for a of 32 values: 8-lane vectors on the first 16,
    16-lane ones on all 32 (`simd.veven`, `simd.vodd`, the stride-2 packing's helpers)."""
    x0, x1 = simd.vload(a, 0), simd.vload(a, 8)
    simd.vstore(even, 0, simd.veven(x0, x1))
    simd.vstore(odd, 0, simd.vodd(x0, x1))
    y0, y1 = simd.vload16(a, 0), simd.vload16(a, 16)
    simd.vstore(even, 8, simd.veven(y0, y1))
    simd.vstore(odd, 8, simd.vodd(y0, y1))


def test_the_deinterleave_vector_ops_pick_even_and_odd_lanes():
    a = np.arange(32, dtype=np.float32) * 1.5 - 7
    for run in (_deinterleave, _deinterleave.py_func):  # compiled, and plain Python
        even, odd = np.full(24, np.nan, np.float32), np.full(24, np.nan, np.float32)
        run(a, even, odd)
        np.testing.assert_array_equal(even, np.concatenate([a[:16:2], a[0::2]]))
        np.testing.assert_array_equal(odd, np.concatenate([a[1:16:2], a[1::2]]))
    with pytest.raises(ValueError, match="8 and 16 lanes"):
        simd.veven(simd.vzero(), simd.vzero16())
