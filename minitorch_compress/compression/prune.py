"""Magnitude pruning: percentile thresholds per layer or over all layers, one-shot or iterative.

Rule used everywhere (Lab 2): a weight is kept when |w| >= threshold, where the threshold is
the q-th quantile of the magnitudes with numpy's linear interpolation. For n magnitudes
sorted a_0 <= ... <= a_{n-1} numpy takes h = q (n - 1) and interpolates between a_floor(h)
and a_ceil(h). When the non-zero magnitudes are distinct, exactly max(z, ceil(q (n - 1)))
weights end up pruned, z being the number of weights already exactly 0 (a fraction just
under q when z is small: at q = 1 the largest weight survives), up to float rounding when
q (n - 1) is within ~1e-12 of an integer. A weight that is already exactly 0 is always
reported as pruned, even when ties at zero make the threshold 0, so after pruning the mask
equals ``weight != 0``; pruning again at the same or a smaller q changes nothing.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from minitorch_compress.compression.masks import (
    MaskHook,
    Masks,
    TrainerLike,
    mask_from_weights,
    prunable_layers,
    sparsity_of_masks,
    zero_masked_momentum,
)
from minitorch_compress.compression.metrics import sparsity_report
from minitorch_compress.nn import Module


def _check_fraction(q: float) -> float:
    if not 0.0 <= q <= 1.0:
        raise ValueError(f"pruning fraction q must be in [0, 1], got {q}")
    return float(q)


def percentile_threshold(weights: np.ndarray, q: float) -> float:
    """The q-th quantile of |weights|, linearly interpolated as `np.percentile` does.

    Computed in float64 so that interpolating between two neighbouring float32 magnitudes
    cannot round onto one of them and change which weights survive.

    Args:
        weights: array of any shape (a layer's weight, or all layers' weights concatenated).
        q: fraction in [0, 1] (0.8 prunes 80 %).

    Returns:
        The threshold, a Python float.
    """
    q = _check_fraction(q)
    magnitudes = np.abs(np.asarray(weights, dtype=np.float64)).ravel()
    if magnitudes.size == 0:
        raise ValueError("percentile_threshold: got an empty weight array")
    return float(np.percentile(magnitudes, 100.0 * q))


def magnitude_mask(weights: np.ndarray, threshold: float) -> np.ndarray:
    """1 where |w| >= threshold and w != 0, else 0.

    Args:
        weights: array of any shape.
        threshold: from `percentile_threshold`.

    Returns:
        float32 0/1 array of the same shape.
    """
    magnitudes = np.abs(np.asarray(weights, dtype=np.float64))
    return ((magnitudes >= threshold) & (magnitudes > 0)).astype(np.float32)


def _prune_in_place(layer: Module, threshold: float) -> np.ndarray:
    mask = magnitude_mask(layer.weight.data, threshold)
    np.copyto(layer.weight.data, 0.0, where=mask == 0)  # +0.0, never -0.0
    return mask


def prune_by_percentage(layer: Module, q: float) -> np.ndarray:
    """Prune one layer in place with its own threshold (the q-th quantile of its |w|).

    Args:
        layer: a module with a `.weight` Parameter, e.g. `Conv2d` (out, in, k, k).
        q: fraction to prune, in [0, 1].

    Returns:
        The mask, float32 0/1 of the weight's shape; equal to ``layer.weight.data != 0``.
    """
    return _prune_in_place(layer, percentile_threshold(layer.weight.data, q))


def prune_model_by_percentage(model: Module, q: float) -> Masks:
    """Prune every prunable layer in place, each with its own q-th-quantile threshold.

    Args:
        model: e.g. ResNet-20; only `prunable_layers(model)` are touched.
        q: fraction to prune in each layer, in [0, 1].

    Returns:
        {layer name: float32 0/1 mask of the weight's shape}.
    """
    return {name: prune_by_percentage(layer, q) for name, layer in prunable_layers(model).items()}


def prune_below(model: Module, threshold: float) -> Masks:
    """Prune every prunable layer in place at one fixed magnitude: |w| < threshold becomes 0
    (Lab 4 (c)'s single pruning step after a Lasso finetune).

    Returns:
        {layer name: float32 0/1 mask of the weight's shape}.
    """
    return {name: _prune_in_place(layer, threshold)
            for name, layer in prunable_layers(model).items()}


def global_prune_by_percentage(model: Module, q: float) -> tuple[Masks, float]:
    """Prune all prunable layers in place with ONE threshold from all their magnitudes.

    Layers whose weights are small overall lose more than q of their weights, layers with
    large weights less; the total over all prunable weights is q (up to the rounding above).

    Args:
        model: e.g. ResNet-20; only `prunable_layers(model)` are touched.
        q: fraction of all prunable weights to prune, in [0, 1].

    Returns:
        (masks, threshold): {layer name: float32 0/1 mask}, and the common threshold.
    """
    layers = prunable_layers(model)
    if not layers:
        raise ValueError("global_prune_by_percentage: the model has no prunable layers")
    everything = np.concatenate([layer.weight.data.ravel() for layer in layers.values()])
    threshold = percentile_threshold(everything, q)
    masks = {name: _prune_in_place(layer, threshold) for name, layer in layers.items()}
    return masks, threshold


class IterativePruningHook:
    """Trainer hook for Lab 2 (d)/(e): prune a bit more before each of the first epochs.

    Before 1-based epoch e = 1..prune_epochs (0-based ``epoch = e - 1``) the prunable layers
    are pruned to ``target * e / prune_epochs`` (8e % for the course's 80 % over 10 epochs),
    per layer or, with ``global_=True``, with one threshold over all layers.

    Regrowth: during epochs 1..prune_epochs-1 pruning is a one-off zeroing at the start of
    the epoch (the weights and their momentum entries are set to 0, so regrowth is driven by
    fresh gradients only, not by the old velocity); SGD may then move them away from 0 again
    and the next pruning step re-ranks all weights. The last pruning step, before epoch
    `prune_epochs`, fixes the mask: from then on (that epoch included) the pruned weights and
    their momentum are zeroed after every optimizer step, exactly as `MaskHook` does, so
    every model evaluated from the end of epoch `prune_epochs` on has the target sparsity.

    Attributes:
        current_sparsity_target: fraction the last pruning step aimed at (0 before any).
        final_masks: the fixed masks once the last pruning step has run, else None.
    """

    def __init__(self, target: float = 0.8, prune_epochs: int = 10, global_: bool = False) -> None:
        self.target = _check_fraction(target)
        if prune_epochs < 1:
            raise ValueError(f"prune_epochs must be >= 1, got {prune_epochs}")
        self.prune_epochs = int(prune_epochs)
        self.global_ = bool(global_)
        self.current_sparsity_target = 0.0
        self.final_masks: Masks | None = None
        self._mask_hook: MaskHook | None = None

    @property
    def mask_fixed(self) -> bool:
        """True once the final mask is in force (use it to pick the best *sparse* epoch)."""
        return self.final_masks is not None

    def sparsity_target(self, epoch: int) -> float | None:
        """The fraction to prune to before 0-based `epoch`, or None if that epoch prunes none."""
        step = epoch + 1
        if 1 <= step <= self.prune_epochs:
            return self.target * step / self.prune_epochs
        return None

    def prune(self, model: Module, q: float) -> Masks:
        """One pruning step to fraction q (per layer or global), in place."""
        if self.global_:
            masks, _ = global_prune_by_percentage(model, q)
            return masks
        return prune_model_by_percentage(model, q)

    def on_epoch_start(self, trainer: TrainerLike, epoch: int) -> None:
        """Prune if `epoch` is in the schedule; fix the mask at the last pruning step."""
        q = self.sparsity_target(epoch)
        if q is not None:
            masks = self.prune(trainer.model, q)
            zero_masked_momentum(trainer.optimizer, trainer.model, masks)
            self.current_sparsity_target = q
            if epoch + 1 == self.prune_epochs:
                self._fix(masks)
        elif self.final_masks is None and epoch >= self.prune_epochs:
            # resumed after the pruning phase without this hook's state: the fixed mask
            # kept the pruned weights at exactly 0, so the weights themselves still hold it
            warnings.warn(
                "IterativePruningHook: resumed after the pruning epochs without a saved "
                "mask; rebuilding it from the zero weights",
                stacklevel=2,
            )
            self.current_sparsity_target = self.target
            self._fix(mask_from_weights(trainer.model))
        if self._mask_hook is not None:
            self._mask_hook.apply(trainer)

    def after_step(self, trainer: TrainerLike) -> None:
        """Keep the fixed mask once the pruning phase is over (no-op while weights regrow)."""
        if self._mask_hook is not None:
            self._mask_hook.apply(trainer)

    def on_epoch_end(self, trainer: TrainerLike, epoch: int, metrics: dict[str, Any]) -> None:
        """Log ``sparsity`` (actual, over the prunable layers), ``sparsity_target`` and
        ``mask_fixed``: before the mask is fixed the model has regrown and is less sparse
        than the target, so pick the best epoch among those with ``mask_fixed``."""
        metrics["sparsity"] = sparsity_report(trainer.model)[1]
        metrics["sparsity_target"] = self.current_sparsity_target
        metrics["mask_fixed"] = self.mask_fixed
        # an epoch before the final mask is less sparse than the target: it must not be
        # picked as the experiment's best model
        metrics["eligible_for_best"] = metrics.get("eligible_for_best", True) and self.mask_fixed

    def _fix(self, masks: Masks) -> None:
        self._mask_hook = MaskHook(masks)
        self.final_masks = self._mask_hook.masks

    state_name = "pruning"  # checkpoint keys hook.pruning.* (see training.trainer.Hook)

    def state_dict(self) -> dict[str, np.ndarray]:
        """``current_sparsity_target`` (0-d array) and, once fixed, ``mask.<layer>`` arrays."""
        state = {"current_sparsity_target": np.array(self.current_sparsity_target)}
        if self.final_masks is not None:
            state.update({f"mask.{name}": m.copy() for name, m in self.final_masks.items()})
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what `state_dict` saved."""
        self.current_sparsity_target = float(state["current_sparsity_target"])
        masks = {k[len("mask."):]: v for k, v in state.items() if k.startswith("mask.")}
        self.final_masks, self._mask_hook = None, None
        if masks:
            self._fix(masks)

    def __repr__(self) -> str:
        fixed = (f", fixed mask at {sparsity_of_masks(self.final_masks):.4f}"
                 if self.final_masks is not None else "")
        return (f"IterativePruningHook(target={self.target}, prune_epochs={self.prune_epochs}, "
                f"global_={self.global_}, current={self.current_sparsity_target:.4f}{fixed})")
