"""The direct sparse convolution (kernels/sparse_conv.py) against the dense reference."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from minitorch_compress.kernels import reference as ref
from minitorch_compress.kernels import sparse_conv
from minitorch_compress.kernels.sparse_conv import SparseWeights, sparse_conv2d_forward

# the pool path: output channels split across two threads (conftest.kernel_threads)
KERNEL_THREADS = 2


@st.composite
def sparse_convs(draw):
    n, c, k = draw(st.integers(1, 5)), draw(st.integers(1, 5)), draw(st.integers(1, 6))
    ksize = draw(st.sampled_from([1, 3]))
    stride, padding = draw(st.sampled_from([1, 2])), draw(st.sampled_from([0, 1]))
    h = draw(st.integers(max(1, ksize - 2 * padding), 7))
    w = draw(st.integers(max(1, ksize - 2 * padding), 7))
    sparsity = draw(st.sampled_from([0.0, 0.5, 0.8, 0.95, 1.0]))
    seed = draw(st.integers(0, 2**16))
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, c, h, w)).astype(np.float32)
    weights = rng.standard_normal((k, c, ksize, ksize)).astype(np.float32)
    weights[rng.random(weights.shape) < sparsity] = 0
    if k > 1 and draw(st.booleans()):
        weights[0] = 0  # an output channel with no non-zero at all
    return x, weights, stride, padding, rng


# the batched kernel: one image per block (tile of 1 float), or the whole batch in one block
KERNELS = st.sampled_from([(False, None), (True, 1), (True, 16384)])


@settings(deadline=None, max_examples=120)
@given(sparse_convs(), KERNELS)
def test_sparse_conv_matches_the_dense_reference(case, kernel):
    x, w, stride, padding, _ = case
    sw = SparseWeights.from_dense(w)
    np.testing.assert_array_equal(sw.to_dense(), w)
    batched, tile = kernel
    saved = sparse_conv.BATCHED_TILE_FLOATS
    try:
        sparse_conv.BATCHED_TILE_FLOATS = tile or saved
        got = sparse_conv2d_forward(x, sw, stride, padding, batched=batched)
    finally:
        sparse_conv.BATCHED_TILE_FLOATS = saved
    want = ref.conv2d_forward(x, w, stride, padding)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    assert got.shape == want.shape and got.dtype == np.float32


@settings(deadline=None, max_examples=60)
@given(sparse_convs(), st.booleans(), st.booleans(), st.booleans())
def test_the_fused_epilogue_matches_the_separate_steps(case, relu, with_residual, batched):
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
    got = sparse_conv2d_forward(x, SparseWeights.from_dense(w), stride, padding, coef, relu,
                                residual, batched=batched)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_a_sparse_resnet20_predicts_what_the_dense_one_does():
    """to_sparse switches the sparse convs of a pruned model to the sparse kernel (with the
    fused epilogue, residual and ReLU); logits agree to float rounding, predictions exactly."""
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
    assert len(chosen) == 19  # the head conv and the 18 block convs; shortcuts are not pruned
    np.testing.assert_allclose(sparse, dense, rtol=1e-4, atol=1e-5)
    np.testing.assert_array_equal(again, dense)
