"""Properties of the fixed-point quantizers and the straight-through estimator (Lab 3)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from strategies import QUANT_MODES, quant_cases, seeds, weight_shapes

from minitorch_compress import ops
from minitorch_compress.autograd.tensor import Tensor
from minitorch_compress.compression import (
    QuantizeSTE,
    clear_weight_quantization,
    count_levels,
    quantization_step,
    quantize_array,
    quantized_state,
    set_weight_quantization,
    sparsity_report,
    zeros_destroyed,
)
from minitorch_compress.models.resnet import resnet20
from minitorch_compress.nn import Conv2d, GlobalAvgPool2d, Linear, ReLU, Sequential


def float32_slack(w: np.ndarray) -> float:
    """Error of casting the float64 result back to float32: half an ulp of the largest |w|,
    doubled for safety."""
    return float(np.spacing(np.abs(w).max(initial=0.0).astype(np.float32)))


# ------------------------------------------------------------------- all quantizers
@settings(deadline=None)
@given(case=quant_cases())
def test_every_weight_moves_by_at_most_half_a_step(case):
    q = quantize_array(case.w, case.bits, case.mode)
    step = quantization_step(case.w, case.bits, case.mode)
    assert q.shape == case.w.shape and q.dtype == case.w.dtype
    error = np.abs(q.astype(np.float64) - case.w)
    assert error.max(initial=0.0) <= step / 2 * (1 + 1e-9) + float32_slack(case.w)


@settings(deadline=None)
@given(case=quant_cases())
def test_quantizing_twice_changes_nothing(case):
    # exact: min and max (max|w|) survive, so the grid is the same and every output is a level
    once = quantize_array(case.w, case.bits, case.mode)
    np.testing.assert_array_equal(quantize_array(once, case.bits, case.mode), once)


@settings(deadline=None)
@given(shape=weight_shapes, seed=seeds, mode=st.sampled_from(QUANT_MODES))
def test_bits_none_is_a_float_copy_and_bits_zero_is_all_zeros(shape, seed, mode):
    w = np.random.default_rng(seed).standard_normal(shape).astype(np.float32)
    same = quantize_array(w, None, mode)
    np.testing.assert_array_equal(same, w)
    assert same is not w and not np.shares_memory(same, w)
    zeros = quantize_array(w, 0, mode)
    assert zeros.shape == w.shape and zeros.dtype == w.dtype and not zeros.any()


@pytest.mark.parametrize("mode", QUANT_MODES)
def test_constant_and_all_zero_tensors_are_returned_unchanged(mode):
    for w in (np.full((3, 4), -0.25, np.float32), np.zeros((2, 2), np.float32)):
        np.testing.assert_array_equal(quantize_array(w, 3, mode), w)


def test_invalid_arguments_are_refused_with_a_clear_error():
    w = np.ones(4, np.float32)
    with pytest.raises(ValueError, match="bits >= 2"):
        quantize_array(w, 1, "symmetric")
    with pytest.raises(ValueError, match="unknown quantization mode 'linear'"):
        quantize_array(w, 4, "linear")
    with pytest.raises(ValueError, match=r"bits must be in \[0, 32\]"):
        quantize_array(w, -1)
    with pytest.raises(TypeError, match="bits must be an int"):
        quantize_array(w, 2.5)


# ----------------------------------------------------------------------- asymmetric
@settings(deadline=None)
@given(case=quant_cases(modes=("asymmetric",)))
def test_asymmetric_has_at_most_2_to_the_b_levels_and_keeps_min_and_max(case):
    q = quantize_array(case.w, case.bits, "asymmetric")
    assert np.unique(q).size <= 2**case.bits
    # exact: R = 0 gives beta, R = 1 gives (max - min) + min, computed in float64 where the
    # difference of two float32 weights of similar magnitude is exact
    assert q.min() == case.w.min() and q.max() == case.w.max()


@settings(deadline=None)
@given(case=quant_cases(modes=("asymmetric",)))
def test_asymmetric_matches_the_course_formula(case):
    w, b = case.w.astype(np.float64), case.bits
    alpha, beta = w.max() - w.min(), w.min()
    if alpha == 0:
        expected = w
    else:
        r = np.round((w - beta) / alpha * (2**b - 1)) / (2**b - 1)
        expected = r * alpha + beta
    np.testing.assert_array_equal(quantize_array(case.w, b), expected.astype(np.float32))


def test_asymmetric_quantization_destroys_the_zeros_of_a_pruned_tensor():
    # the bug of a published solution: 0 is scaled with the rest and lands on level
    # -1 + 3.5 / 3 = 0.1667 (2 bits over [-1, 2.5])
    w = np.array([-1.0, 0.0, 0.0, 2.5, 0.0, 0.7], np.float32)
    q = quantize_array(w, 2, "asymmetric")
    assert q[1] == pytest.approx(-1 + 3.5 / 3)
    assert zeros_destroyed(w, 2, "asymmetric") == 3
    assert zeros_destroyed(w, 2, "masked") == 0 and zeros_destroyed(w, 2, "symmetric") == 0


# --------------------------------------------------------------------------- masked
@settings(deadline=None)
@given(case=quant_cases(modes=("masked",), sparse=True))
def test_masked_keeps_zeros_and_scales_over_the_non_zero_weights(case):
    w, b = case.w, case.bits
    q = quantize_array(w, b, "masked")
    kept = w != 0
    assert np.all(q[~kept] == 0) and not np.signbit(q[~kept]).any()
    assert zeros_destroyed(w, b, "masked") == 0
    if kept.any():
        assert q[kept].min() == w[kept].min() and q[kept].max() == w[kept].max()
        assert np.unique(q[kept]).size <= 2**b
        # a non-zero weight becomes 0 only if one of the levels is exactly 0
        lo, hi = w[kept].astype(np.float64).min(), w[kept].astype(np.float64).max()
        levels = (np.arange(2**b) / (2**b - 1) * (hi - lo) + lo).astype(np.float32)
        if np.any(q[kept] == 0):
            assert np.any(levels == 0)
        else:
            assert np.count_nonzero(q) == np.count_nonzero(w)  # sparsity unchanged


@settings(deadline=None)
@given(case=quant_cases(modes=("masked",), sparse=True),
       sign=st.sampled_from([-1.0, 1.0]))
def test_masked_sparsity_is_unchanged_for_one_signed_weights(case, sign):
    w = (np.abs(case.w) * sign).astype(np.float32)  # no level can be 0
    assert np.count_nonzero(quantize_array(w, case.bits, "masked")) == np.count_nonzero(w)


def test_masked_quantizes_to_zero_only_when_zero_is_a_level():
    # 2 bits over [-1, 2]: levels -1, 0, 1, 2, so 0.1 is quantized to exactly 0
    w = np.array([-1.0, 0.0, 0.1, 2.0], np.float32)
    np.testing.assert_array_equal(quantize_array(w, 2, "masked"), [-1.0, 0.0, 0.0, 2.0])


# ------------------------------------------------------------------------ symmetric
@settings(deadline=None)
@given(case=quant_cases(modes=("symmetric",)))
def test_symmetric_levels_come_in_plus_minus_pairs_around_zero(case):
    w, b = case.w, case.bits
    q = quantize_array(w, b, "symmetric")
    np.testing.assert_array_equal(quantize_array(-w, b, "symmetric"), -q)  # odd function
    assert np.unique(q).size <= 2**b - 1
    assert np.all(q[w == 0] == 0)
    largest = np.abs(w).max()
    if largest > 0:
        assert np.abs(q).max() == largest
        k = q.astype(np.float64) / quantization_step(w, b, "symmetric")
        np.testing.assert_allclose(k, np.round(k), atol=1e-4)  # float32 levels, |k| <= 127
        assert np.abs(np.round(k)).max() <= 2 ** (b - 1) - 1


# ----------------------------------------------------------------- straight-through
@settings(deadline=None, max_examples=30)
@given(case=quant_cases(), seed=seeds)
def test_ste_passes_the_upstream_gradient_unchanged(case, seed):
    t = Tensor(case.w, requires_grad=True)
    out = QuantizeSTE.apply(t, bits=case.bits, mode=case.mode)
    np.testing.assert_array_equal(out.data, quantize_array(case.w, case.bits, case.mode))
    upstream = np.random.default_rng(seed).standard_normal(case.w.shape).astype(np.float32)
    out.backward(upstream)
    np.testing.assert_array_equal(t.grad, upstream)


def tiny_net(conv: bool, seed: int) -> Sequential:
    rng = np.random.default_rng(seed)
    if conv:
        return Sequential(Conv2d(2, 3, 3, padding=1, rng=rng), ReLU(), GlobalAvgPool2d(),
                          Linear(3, 4, rng=rng))
    return Sequential(Linear(5, 6, rng=rng), ReLU(), Linear(6, 4, rng=rng))


def loss_and_grads(model: Sequential, x: np.ndarray, labels: np.ndarray) -> dict[str, np.ndarray]:
    model.zero_grad()
    ops.cross_entropy(model(Tensor(x)), labels).backward()
    return {name: p.grad.copy() for name, p in model.named_parameters()}


@settings(deadline=None, max_examples=20)
@given(seed=seeds, bits=st.integers(2, 6), mode=st.sampled_from(QUANT_MODES),
       conv=st.booleans())
def test_quantized_model_gradient_is_the_gradient_at_the_quantized_weights(seed, bits, mode,
                                                                         conv):
    model, reference = tiny_net(conv, seed), tiny_net(conv, seed)
    names = set_weight_quantization(model, bits, layers="all", mode=mode)
    assert names == ["0", "3" if conv else "2"]
    # the reference is a float model whose weights ARE the quantized weights
    for name, w in quantized_state(model).items():
        dict(reference.named_modules())[name].weight.data[...] = w
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((6, 2, 5, 5) if conv else (6, 5)).astype(np.float32)
    labels = rng.integers(0, 4, 6)
    got, expected = loss_and_grads(model, x, labels), loss_and_grads(reference, x, labels)
    for name in expected:
        np.testing.assert_array_equal(got[name], expected[name])


# --------------------------------------------------------------- model-level helpers
def test_body_quantization_of_resnet20_covers_the_blocks_and_shortcuts_only():
    model = resnet20()
    names = set_weight_quantization(model, 4)
    assert len(names) == 20 and all(n.startswith("body_op.") for n in names)
    assert "body_op.3.id_mapping.0.conv" in names and "body_op.6.id_mapping.0.conv" in names
    assert model.head_conv[0].conv.weight_transform is None
    assert model.final_fc.linear.weight_transform is None
    state = quantized_state(model)
    assert list(state) == names
    assert all(levels <= 16 for levels in count_levels(state).values())
    np.testing.assert_array_equal(
        state["body_op.0.conv1.0.conv"],
        quantize_array(model.body_op[0].conv1[0].conv.weight.data, 4),
    )
    assert clear_weight_quantization(model) == names
    assert quantized_state(model) == {}


def test_set_weight_quantization_rejects_unknown_selections():
    model = tiny_net(False, 0)
    with pytest.raises(ValueError, match="body_op"):
        set_weight_quantization(model, 4, layers="body")
    with pytest.raises(ValueError, match="'body', 'all' or a list"):
        set_weight_quantization(model, 4, layers="head")
    with pytest.raises(KeyError, match="nope"):
        set_weight_quantization(model, 4, layers=["nope"])


def test_effective_sparsity_counts_the_zeros_the_quantized_model_computes_with():
    model = tiny_net(False, 0)
    model[0].weight.data[:, :3] = 0.0  # 18 of 30 zeros
    set_weight_quantization(model, 3, layers=["0"], mode="asymmetric")
    w = model[0].weight.data
    float_sparsity, _ = sparsity_report(model)
    quant_sparsity, _ = sparsity_report(model, effective=True)
    assert float_sparsity["0"] == pytest.approx(0.6)
    assert zeros_destroyed(w, 3) == 18  # all zeros land on the same non-zero level
    assert quant_sparsity["0"] == np.mean(quantize_array(w, 3) == 0) < float_sparsity["0"]
    set_weight_quantization(model, 3, layers=["0"], mode="masked")
    assert sparsity_report(model, effective=True)[0]["0"] == pytest.approx(0.6)
