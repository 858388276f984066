"""Fixed-point weight quantization with a straight-through estimator (Lab 3).

Three quantizers of one weight tensor w with b bits; all compute in float64 and return the
input's float dtype. Rounding is numpy's (half to even, like ``torch.round``).

* ``"asymmetric"`` (the course's dynamic linear quantizer): alpha = max(w) - min(w),
  beta = min(w), ws = (w - beta) / alpha, R = round(ws (2^b - 1)) / (2^b - 1),
  wq = R alpha + beta. 2^b levels from min(w) to max(w), both reproduced exactly; every
  weight moves by at most half a step, alpha / (2^b - 1) / 2. A constant tensor
  (alpha = 0) is returned unchanged. On a pruned tensor the zeros are scaled like any
  other weight and usually land on a non-zero level: the sparsity is destroyed (see
  `zeros_destroyed`).
* ``"masked"``: exact zeros are pruned weights. min, max and the levels come from the
  non-zero entries only, zeros stay exactly 0. If one of the 2^b levels happens to be
  exactly 0 (beta + k alpha / (2^b - 1) == 0 for some k, e.g. range [-1, 2] with 2 bits),
  non-zero weights nearest to it are quantized to 0 like to any other level: the quantized
  tensor is then sparser than the float one, but those weights are not pruned (the mask
  comes from the float weights, which stay non-zero, so training can move them off 0).
* ``"symmetric"``: levels k s for integer k in [-(2^(b-1) - 1), 2^(b-1) - 1] with
  s = max|w| / (2^(b-1) - 1): 2^b - 1 levels in +- pairs around an exact 0, so zeros
  (pruned weights) stay 0 without a mask, and max|w| is reproduced (up to float rounding).
  Needs b >= 2: with one bit there is no non-zero level (2^0 - 1 = 0), and sign(w) mean|w|
  is a different quantizer, so b = 1 is refused rather than silently redefined.

``bits=None`` means float (identity), ``bits=0`` means all zeros, in every mode.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

import numpy as np

from minitorch_compress.autograd.engine import no_grad
from minitorch_compress.autograd.function import Context, Function
from minitorch_compress.autograd.tensor import Tensor
from minitorch_compress.compression.masks import layers_by_name, weight_layers
from minitorch_compress.nn import Module

QuantMode = Literal["asymmetric", "masked", "symmetric"]
MODES: tuple[str, ...] = ("asymmetric", "masked", "symmetric")
MAX_BITS = 32  # the float64 arithmetic resolves 2^32 levels comfortably


def _check(bits: int | None, mode: str) -> None:
    if mode not in MODES:
        raise ValueError(f"unknown quantization mode {mode!r}; choose one of {', '.join(MODES)}")
    if bits is None:
        return
    if isinstance(bits, bool) or not isinstance(bits, (int, np.integer)):
        raise TypeError(f"bits must be an int or None, got {type(bits).__name__}")
    if not 0 <= bits <= MAX_BITS:
        raise ValueError(f"bits must be in [0, {MAX_BITS}] or None, got {bits}")
    if mode == "symmetric" and bits == 1:
        raise ValueError(
            "symmetric quantization needs bits >= 2: with 1 bit it has no non-zero level "
            "(2^(b-1) - 1 = 0); use mode='asymmetric' for 1-bit weights"
        )


def _float_dtype(w: np.ndarray) -> np.dtype:
    return w.dtype if np.issubdtype(w.dtype, np.floating) else np.dtype(np.float32)


def _asymmetric(w: np.ndarray, bits: int) -> np.ndarray:
    """The course's formula on all entries of w (any shape); float64 in, float64 out."""
    beta = w.min()
    alpha = w.max() - beta
    if alpha == 0:  # constant tensor: a single level, the value itself
        return w.copy()
    levels = 2**bits - 1
    ws = (w - beta) / alpha
    r = np.round(ws * levels) / levels
    return r * alpha + beta


def _masked(w: np.ndarray, bits: int) -> np.ndarray:
    out = np.zeros_like(w)
    kept = w != 0
    if kept.any():
        out[kept] = _asymmetric(w[kept], bits)
    return out


def _symmetric(w: np.ndarray, bits: int) -> np.ndarray:
    largest = np.abs(w).max()
    if largest == 0:
        return w.copy()
    levels = 2 ** (bits - 1) - 1
    scale = largest / levels
    # |w| / scale <= levels up to one rounding; the clip only guards that last ulp
    return np.clip(np.round(w / scale), -levels, levels) * scale


def quantize_array(w: np.ndarray, bits: int | None, mode: QuantMode = "asymmetric") -> np.ndarray:
    """Quantize one weight array (the STE's forward), pure numpy.

    Args:
        w: weights of any shape, e.g. a conv weight (out, in, k, k).
        bits: number of bits b; None = float (a copy of w), 0 = all zeros.
        mode: "asymmetric", "masked" or "symmetric" (see the module docstring).

    Returns:
        A new array of w's shape and float dtype holding the quantized weights.

    Raises:
        ValueError: unknown mode, bits outside [0, 32], or 1-bit symmetric.
    """
    _check(bits, mode)
    w = np.asarray(w)
    dtype = _float_dtype(w)
    if bits is None:
        return w.astype(dtype, copy=True)
    if bits == 0 or w.size == 0:
        return np.zeros(w.shape, dtype)
    quantizer = {"asymmetric": _asymmetric, "masked": _masked, "symmetric": _symmetric}[mode]
    return quantizer(w.astype(np.float64), bits).astype(dtype)


def quantization_step(w: np.ndarray, bits: int, mode: QuantMode = "asymmetric") -> float:
    """Distance between neighbouring levels for `w` (every weight moves by at most half).

    Args:
        w: weights of any shape.
        bits: b >= 1 (>= 2 for "symmetric").
        mode: as in `quantize_array`.

    Returns:
        alpha / (2^b - 1) (over the non-zero entries for "masked"), or
        max|w| / (2^(b-1) - 1) for "symmetric"; 0.0 for a constant or empty tensor.
    """
    _check(bits, mode)
    if bits is None or bits < 1:
        raise ValueError(f"quantization_step needs bits >= 1, got {bits}")
    x = np.asarray(w, dtype=np.float64).ravel()
    if mode == "masked":
        x = x[x != 0]
    if x.size == 0:
        return 0.0
    if mode == "symmetric":
        return float(np.abs(x).max() / (2 ** (bits - 1) - 1))
    return float((x.max() - x.min()) / (2**bits - 1))


def zeros_destroyed(w: np.ndarray, bits: int | None, mode: QuantMode = "asymmetric") -> int:
    """How many exact zeros of `w` become non-zero when quantized.

    The plain asymmetric quantizer applied to a pruned tensor (what a published solution
    did) scales over the zeros too, so they move to the level nearest 0, which is rarely 0;
    "masked" and "symmetric" always give 0 here.

    Args:
        w: weights of any shape, typically pruned.
        bits, mode: as in `quantize_array`.

    Returns:
        The count of entries with w == 0 and quantized w != 0.
    """
    w = np.asarray(w)
    return int(np.count_nonzero((w == 0) & (quantize_array(w, bits, mode) != 0)))


class QuantizeSTE(Function):
    """Weight quantization with a straight-through estimator.

    forward: w (any shape) -> quantize_array(w, bits, mode), same shape.
    backward: the upstream gradient, unchanged: rounding has zero derivative almost
    everywhere, so the STE pretends the quantizer is the identity and the float weight
    receives the gradient computed at the quantized weight.
    """

    @staticmethod
    def forward(ctx: Context, w: np.ndarray, bits: int | None = None,
                mode: QuantMode = "asymmetric") -> np.ndarray:
        ctx.bits, ctx.mode = bits, mode
        return quantize_array(w, bits, mode)

    @staticmethod
    def backward(ctx: Context, grad: np.ndarray) -> np.ndarray:
        return grad


def quantize_ste(t: Tensor, bits: int | None, mode: QuantMode = "asymmetric") -> Tensor:
    """Differentiable quantization of a Tensor (QuantizeSTE); same shape as `t`."""
    return QuantizeSTE.apply(t, bits=bits, mode=mode)


@dataclass(frozen=True)
class WeightQuantizer:
    """A layer's `weight_transform`: weight Tensor -> quantized weight Tensor (STE).

    Attributes:
        bits: None (float), 0 (zeros) or the number of bits.
        mode: "asymmetric", "masked" or "symmetric".
    """

    bits: int | None
    mode: QuantMode = "asymmetric"

    def __post_init__(self) -> None:
        _check(self.bits, self.mode)

    def __call__(self, weight: Tensor) -> Tensor:
        return quantize_ste(weight, self.bits, self.mode)


def _select(model: Module, layers: str | list[str]) -> dict[str, Module]:
    """Layers named by "body", "all" or a list of dotted names."""
    if layers == "all":
        return weight_layers(model)
    if layers == "body":
        chosen = {n: m for n, m in weight_layers(model).items() if n.startswith("body_op.")}
        if not chosen:
            raise ValueError(
                "layers='body' selects the Conv2d/Linear modules under 'body_op.', and this "
                "model has none; pass 'all' or a list of layer names"
            )
        return chosen
    if isinstance(layers, str):
        raise ValueError(f"layers must be 'body', 'all' or a list of names, got {layers!r}")
    return layers_by_name(model, list(layers))


def set_weight_quantization(model: Module, bits: int | None, layers: str | list[str] = "body",
                            mode: QuantMode = "asymmetric") -> list[str]:
    """Make the chosen layers compute with quantized weights (STE); the float weights stay.

    Args:
        model: e.g. ResNet-20; changed in place (each layer's `weight_transform`).
        bits: None (float), 0 (zeros) or the number of bits.
        layers: "body" = every Conv2d/Linear under ``body_op.`` (the 9 blocks, shortcut convs
            included; head conv and final FC stay float), "all", or a list of dotted names.
        mode: "asymmetric", "masked" or "symmetric".

    Returns:
        The names of the layers now quantized.
    """
    quantizer = WeightQuantizer(bits, mode)
    chosen = _select(model, layers)
    for layer in chosen.values():
        layer.weight_transform = quantizer
    return list(chosen)


def set_bits_per_layer(model: Module, bits: Mapping[str, int | None],
                       mode: QuantMode = "asymmetric") -> list[str]:
    """Give each named layer its own bit width (mixed precision); other layers are untouched.

    Args:
        model: changed in place (each named layer's `weight_transform`).
        bits: {dotted layer name: None (float), 0 (zeros) or the number of bits}.
        mode: the quantizer of every named layer.

    Returns:
        The names set, in the order of `bits`.

    Raises:
        KeyError: a name that is not a Conv2d/Linear layer of `model` (nothing is changed).
        ValueError, TypeError: a width `WeightQuantizer` refuses (nothing is changed).
    """
    layers = layers_by_name(model, list(bits))
    quantizers = {name: WeightQuantizer(b, mode) for name, b in bits.items()}  # checks all
    for name, layer in layers.items():
        layer.weight_transform = quantizers[name]
    return list(layers)


def bits_per_layer(model: Module) -> dict[str, int | None]:
    """Each quantized layer's bit width, {name: bits} (layers without a quantizer left out)."""
    return {name: layer.weight_transform.bits for name, layer in weight_layers(model).items()
            if isinstance(layer.weight_transform, WeightQuantizer)}


def clear_weight_quantization(model: Module) -> list[str]:
    """Remove the quantizers installed by `set_weight_quantization` (other transforms stay).

    Returns:
        The names of the layers that were quantized.
    """
    cleared = []
    for name, layer in weight_layers(model).items():
        if isinstance(layer.weight_transform, WeightQuantizer):
            layer.weight_transform = None
            cleared.append(name)
    return cleared


def quantized_state(model: Module) -> dict[str, np.ndarray]:
    """The weights the quantized layers actually compute with.

    Returns:
        {layer name: array of the weight's shape}, for every layer with a `WeightQuantizer`,
        produced by running its transform (so levels and zeros can be counted).
    """
    state = {}
    with no_grad():
        for name, layer in weight_layers(model).items():
            if isinstance(layer.weight_transform, WeightQuantizer):
                state[name] = layer.effective_weight().data.copy()
    return state
