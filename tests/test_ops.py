"""Every differentiable op against central finite differences, through the one `grad_check`."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minitorch_compress import grad_check, ops, use_kernels
from minitorch_compress.autograd.gradcheck import GradCheckError
from minitorch_compress.autograd.tensor import Tensor

# the one-thread path, every kernel on the calling thread (conftest.kernel_threads)
KERNEL_THREADS = 1

SETTINGS = settings(deadline=None, max_examples=25)

shapes = st.lists(st.integers(1, 4), min_size=1, max_size=3).map(tuple)


@st.composite
def arrays(draw, shape=None, low=-2.0, high=2.0, away_from_zero=0.0):
    """float64 arrays with a drawn seed; optionally no element closer than `away_from_zero` to 0."""
    shape = draw(shapes) if shape is None else shape
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    a = rng.uniform(low, high, size=shape)
    if away_from_zero:
        a = np.where(np.abs(a) < away_from_zero, np.sign(a + 1e-12) * away_from_zero, a)
    return a


@st.composite
def broadcast_pair(draw):
    """Two shapes that broadcast together: the second has some axes squeezed to 1 or dropped."""
    shape = draw(st.lists(st.integers(2, 4), min_size=1, max_size=3).map(tuple))
    other = tuple(1 if draw(st.booleans()) else n for n in shape)
    other = other[draw(st.integers(0, len(other) - 1)):]
    return draw(arrays(shape)), draw(arrays(other, away_from_zero=0.5))


@SETTINGS
@given(broadcast_pair(), st.sampled_from(["add", "sub", "mul", "div"]))
def test_binary_ops_with_broadcasting(pair, name):
    a, b = pair
    fn = getattr(ops, name)
    assert grad_check(fn, a, b)
    assert grad_check(lambda x, y: fn(y, x), a, b)


@SETTINGS
@given(arrays())
def test_unary_ops(a):
    assert grad_check(ops.neg, a)
    assert grad_check(ops.exp, a)
    assert grad_check(lambda x: x ** 3.0, a)
    assert grad_check(ops.log, np.abs(a) + 0.5)
    assert grad_check(lambda x: (x + 1.0) ** 0.5, np.abs(a))


@SETTINGS
@given(arrays(away_from_zero=1e-3))
def test_relu(a):
    assert grad_check(ops.relu, a)


@SETTINGS
@given(st.integers(1, 4), st.integers(1, 4), st.integers(1, 4), st.integers(0, 2**31))
def test_matmul(n, k, m, seed):
    rng = np.random.default_rng(seed)
    assert grad_check(ops.matmul, rng.standard_normal((n, k)), rng.standard_normal((k, m)))
    # batched, with the right operand broadcast over the batch
    assert grad_check(ops.matmul, rng.standard_normal((2, n, k)), rng.standard_normal((k, m)))


@SETTINGS
@given(st.lists(st.integers(1, 4), min_size=3, max_size=3).map(tuple), st.booleans(),
       st.sampled_from([None, 0, 1, 2, (0, 2)]), st.integers(0, 2**31))
def test_reductions(shape, keepdims, axis, seed):
    a = np.random.default_rng(seed).standard_normal(shape)
    assert grad_check(lambda x: ops.sum(x, axis=axis, keepdims=keepdims), a)
    assert grad_check(lambda x: ops.mean(x, axis=axis, keepdims=keepdims), a)


@SETTINGS
@given(st.lists(st.integers(1, 4), min_size=3, max_size=3).map(tuple), st.permutations([0, 1, 2]),
       st.integers(0, 2**31))
def test_shape_ops(shape, perm, seed):
    a = np.random.default_rng(seed).standard_normal(shape)
    assert grad_check(lambda x: ops.permute(x, tuple(perm)), a)
    assert grad_check(lambda x: ops.reshape(x, (shape[0], -1)), a)
    assert grad_check(lambda x: ops.flatten(x), a)
    assert grad_check(lambda x: ops.transpose(x, 0, 2) * 2.0, a)


@SETTINGS
@given(st.integers(1, 5), st.integers(2, 6), st.integers(0, 2**31))
def test_log_softmax_and_cross_entropy(n, k, seed):
    rng = np.random.default_rng(seed)
    logits = rng.standard_normal((n, k)) * 3
    labels = rng.integers(0, k, size=n)
    assert grad_check(lambda x: ops.log_softmax(x, axis=1), logits)
    assert grad_check(lambda x: ops.cross_entropy(x, labels), logits)
    # and the value is the textbook one
    p = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    expected = -np.log(p[np.arange(n), labels]).mean()
    assert np.isclose(ops.cross_entropy(Tensor(logits), labels).item(), expected)


@SETTINGS
@given(st.integers(1, 3), st.integers(1, 3), st.integers(1, 3), st.integers(3, 6),
       st.sampled_from([(1, 1, 0), (3, 1, 1), (3, 2, 1), (1, 2, 0), (3, 1, 0)]),
       st.booleans(), st.integers(0, 2**31))
@pytest.mark.parametrize("kernels", ["fast", "reference"])
def test_conv2d(kernels, n, c, k, size, kernel, use_bias, seed):
    ksize, stride, padding = kernel
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, c, size, size))
    w = rng.standard_normal((k, c, ksize, ksize))
    with use_kernels(kernels):
        if use_bias:
            b = rng.standard_normal(k)
            assert grad_check(lambda x_, w_, b_: ops.conv2d(x_, w_, b_, stride, padding),
                              x, w, b)
        else:
            assert grad_check(lambda x_, w_: ops.conv2d(x_, w_, None, stride, padding), x, w)


@SETTINGS
@given(st.integers(2, 4), st.integers(1, 3), st.integers(1, 3), st.booleans(), st.booleans(),
       st.integers(0, 2**31))
@pytest.mark.parametrize("kernels", ["fast", "reference"])
def test_batch_norm2d(kernels, n, c, size, training, relu, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, c, size, size))
    gamma, beta = rng.uniform(0.5, 1.5, c), rng.uniform(-0.3, 0.3, c)
    mean, var = rng.standard_normal(c), rng.uniform(0.5, 2.0, c)

    def fn(x_, g_, b_):
        # fresh copies: the op updates the running statistics in place in training mode
        return ops.batch_norm2d(x_, g_, b_, mean.copy(), var.copy(), training=training, relu=relu)

    if relu:  # keep pre-activations away from the kink
        pre = ops.batch_norm2d(Tensor(x), Tensor(gamma), Tensor(beta), mean.copy(), var.copy(),
                               training=training, relu=False)
        if np.min(np.abs(pre.data)) < 1e-3:
            return
    with use_kernels(kernels):
        assert grad_check(fn, x, gamma, beta, atol=1e-5, rtol=1e-3)


@SETTINGS
@given(st.integers(1, 3), st.integers(1, 3), st.integers(1, 4), st.integers(0, 2**31))
@pytest.mark.parametrize("kernels", ["fast", "reference"])
def test_pooling_mask_and_add_relu(kernels, n, c, size, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, c, size, size))
    assert grad_check(ops.global_avg_pool2d, x)
    mask = rng.integers(0, 2, size=x.shape).astype(np.float64)
    assert grad_check(lambda t: ops.mul_mask(t, mask), x)
    y = rng.standard_normal(x.shape)
    keep = np.abs(x + y) > 1e-3  # away from the ReLU kink
    x, y = np.where(keep, x, x + 0.1), np.where(keep, y, y + 0.1)
    with use_kernels(kernels):
        assert grad_check(ops.add_relu, x, y)


def test_grad_check_catches_a_wrong_backward():
    from minitorch_compress.autograd.function import Function

    class WrongSquare(Function):
        @staticmethod
        def forward(ctx, a):
            ctx.save_for_backward(a)
            return a * a

        @staticmethod
        def backward(ctx, grad):
            (a,) = ctx.saved_tensors
            return grad * a  # should be 2 * a

    with pytest.raises(GradCheckError, match="worst at index"):
        grad_check(WrongSquare.apply, np.arange(1.0, 5.0))


def test_mask_of_wrong_shape_is_refused():
    with pytest.raises(ValueError, match="mask shape"):
        ops.mul_mask(Tensor(np.ones((2, 3))), np.ones((3, 2)))
