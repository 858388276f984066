"""SGD against the update written out by hand (PyTorch semantics), and MultiStepLR."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minitorch_compress.nn import Parameter
from minitorch_compress.optim import SGD, MultiStepLR


@settings(deadline=None, max_examples=30)
@given(st.floats(0.001, 0.5), st.floats(0.0, 0.95), st.floats(0.0, 0.1), st.booleans(),
       st.integers(0, 2**31))
def test_sgd_matches_hand_written_update(lr, momentum, weight_decay, nesterov, seed):
    if nesterov and momentum == 0:
        return
    rng = np.random.default_rng(seed)
    p = Parameter(rng.standard_normal(5), dtype=np.float64)
    w = p.data.copy()
    buf = None
    opt = SGD([p], lr=lr, momentum=momentum, weight_decay=weight_decay, nesterov=nesterov)
    for _ in range(3):
        grad = rng.standard_normal(5)
        p.grad = grad.copy()
        opt.step()
        g = grad + weight_decay * w
        if momentum:
            buf = g.copy() if buf is None else momentum * buf + g
            g = g + momentum * buf if nesterov else buf
        w = w - lr * g
        np.testing.assert_allclose(p.data, w, rtol=1e-12, atol=1e-12)


def test_sgd_state_round_trip_continues_identically():
    rng = np.random.default_rng(0)
    grads = rng.standard_normal((4, 3))
    a = Parameter(np.ones(3), dtype=np.float64)
    opt_a = SGD([a], lr=0.1, momentum=0.9, weight_decay=0.01)
    for g in grads:
        a.grad = g.copy()
        opt_a.step()
    b = Parameter(np.ones(3), dtype=np.float64)
    opt_b = SGD([b], lr=0.1, momentum=0.9, weight_decay=0.01)
    for g in grads[:2]:
        b.grad = g.copy()
        opt_b.step()
    c = Parameter(b.data.copy(), dtype=np.float64)
    opt_c = SGD([c], lr=0.1, momentum=0.9, weight_decay=0.01)
    opt_c.load_state_dict(opt_b.state_dict())
    for g in grads[2:]:
        c.grad = g.copy()
        opt_c.step()
    np.testing.assert_array_equal(a.data, c.data)


def test_parameters_without_grad_are_skipped_and_bad_lr_refused():
    p = Parameter(np.ones(2))
    SGD([p], lr=0.1, momentum=0.9).step()
    assert np.all(p.data == 1.0)
    with pytest.raises(ValueError, match="lr must be positive"):
        SGD([p], lr=0.0)


def test_multistep_lr():
    opt = SGD([Parameter(np.ones(1))], lr=1.0)
    sched = MultiStepLR(opt, milestones=[2, 4], gamma=0.1)
    lrs = []
    for _ in range(5):
        lrs.append(opt.lr)
        sched.step()
    np.testing.assert_allclose(lrs, [1.0, 1.0, 0.1, 0.1, 0.01])
