"""The engine: topological backprop, gradient accumulation, no_grad, error messages."""

from __future__ import annotations

import numpy as np
import pytest

from minitorch_compress import Tensor, no_grad, ops


def test_shared_subexpression_accumulates():
    x = Tensor(np.array([1.0, 2.0, 3.0]), requires_grad=True)
    y = x * x  # used twice below
    z = (y + y * 2.0).sum()
    z.backward()
    np.testing.assert_allclose(x.grad, 6 * x.data)


def test_leaf_gradients_accumulate_across_backward_calls():
    x = Tensor(np.array([1.0, -2.0]), requires_grad=True)
    (x * 3.0).sum().backward()
    (x * 3.0).sum().backward()
    np.testing.assert_allclose(x.grad, [6.0, 6.0])


def test_broadcast_gradient_is_reduced_to_input_shape():
    a = Tensor(np.ones((4, 3)), requires_grad=True)
    b = Tensor(np.array([1.0, 2.0, 3.0]), requires_grad=True)
    c = Tensor(np.ones((4, 1)), requires_grad=True)
    ((a * b) + c).sum().backward()
    assert b.grad.shape == (3,) and c.grad.shape == (4, 1)
    np.testing.assert_allclose(b.grad, [4.0, 4.0, 4.0])
    np.testing.assert_allclose(c.grad, np.full((4, 1), 3.0))


def test_no_grad_records_nothing():
    x = Tensor(np.ones(3), requires_grad=True)
    with no_grad():
        y = x * 2.0
    assert not y.requires_grad
    with pytest.raises(RuntimeError, match="does not require grad"):
        y.sum().backward()


def test_backward_on_non_scalar_needs_a_gradient():
    x = Tensor(np.ones((2, 2)), requires_grad=True)
    with pytest.raises(RuntimeError, match="non-scalar tensor of shape \\(2, 2\\)"):
        (x * 2.0).backward()
    with pytest.raises(ValueError, match="does not match"):
        (x * 2.0).backward(np.ones(3))


def test_float32_stays_float32_with_python_constants():
    x = Tensor(np.ones(3, np.float32), requires_grad=True)
    y = (x * 2.0 + 1.0) / 3.0 - 0.5
    assert y.dtype == np.float32
    y.sum().backward()
    assert x.grad.dtype == np.float32


def test_detach_cuts_the_graph():
    x = Tensor(np.ones(2), requires_grad=True)
    y = (x * 2.0).detach()
    assert not y.requires_grad and y._op is None


def test_deep_graph_does_not_hit_recursion_limit():
    x = Tensor(np.ones(1), requires_grad=True)
    y = x
    for _ in range(5000):
        y = y + 1.0
    y.sum().backward()
    assert x.grad[0] == 1.0


def test_matmul_shape_error_is_clear():
    with pytest.raises(ValueError, match="inner dimensions differ"):
        ops.matmul(Tensor(np.ones((2, 3))), Tensor(np.ones((2, 3))))


def test_a_backward_returning_the_wrong_number_of_gradients_is_an_error_naming_the_op():
    from minitorch_compress.autograd.function import Function

    class TwoInputsOneGradient(Function):
        @staticmethod
        def forward(ctx, a, b):
            return a + b

        @staticmethod
        def backward(ctx, grad):
            return grad  # forgets b's gradient

    a = Tensor(np.ones(3), requires_grad=True)
    b = Tensor(np.ones(3), requires_grad=True)
    out = TwoInputsOneGradient.apply(a, b)
    with pytest.raises(RuntimeError, match="TwoInputsOneGradient.backward returned 1"):
        out.sum().backward()
