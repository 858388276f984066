"""Pruning masks: which weights of which layer are kept, and keeping pruned weights at zero.

A set of masks is a ``dict[layer_name, np.ndarray]``: one float32 array of 0s and 1s per
prunable layer, of that layer's weight shape (1 = kept, 0 = pruned), keyed by the dotted
module name students see in the tables (``body_op.3.conv1.0.conv``).
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np

from minitorch_compress.nn import Conv2d, Linear, Module
from minitorch_compress.optim import SGD

Masks = dict[str, np.ndarray]

_SHORTCUT = "id_mapping"  # name segment of the 1x1 shortcut convs, which are never pruned


class TrainerLike(Protocol):
    """What the hooks need from the shared trainer: the model and its SGD optimizer."""

    model: Module
    optimizer: SGD


def weight_layers(model: Module) -> dict[str, Module]:
    """Every `Conv2d` and `Linear` of `model`, shortcut convs included, by dotted name.

    Returns:
        {name: layer} in registration order (the order of the report tables).
    """
    return {name: m for name, m in model.named_modules() if isinstance(m, (Conv2d, Linear))}


def prunable_layers(model: Module) -> dict[str, Module]:
    """The layers pruning acts on: `Conv2d`/`Linear` modules outside the shortcut branches.

    For ResNet-20 these are ``head_conv.0.conv``, ``body_op.{i}.conv1.0.conv``,
    ``body_op.{i}.conv2.0.conv`` and ``final_fc.linear`` (20 layers); the ``id_mapping``
    convs are excluded because the course never prunes them.

    Returns:
        {name: layer} in registration order.
    """
    return {
        name: layer
        for name, layer in weight_layers(model).items()
        if _SHORTCUT not in name.split(".")
    }


def layers_by_name(model: Module, names: list[str]) -> dict[str, Module]:
    """The `Conv2d`/`Linear` layers called `names` (dotted), in the order given.

    Raises:
        KeyError: naming the unknown names and listing the model's weight layers.
    """
    layers = weight_layers(model)
    unknown = [n for n in names if n not in layers]
    if unknown:
        raise KeyError(
            f"no Conv2d/Linear layer named {', '.join(unknown)}; "
            f"the model's weight layers are: {', '.join(layers)}"
        )
    return {n: layers[n] for n in names}


def _check_shapes(layers: dict[str, Module], masks: Masks) -> None:
    for name, layer in layers.items():
        if np.shape(masks[name]) != layer.weight.shape:
            raise ValueError(
                f"mask for {name} has shape {np.shape(masks[name])}, "
                f"the weight has {layer.weight.shape}"
            )


def apply_masks(model: Module, masks: Masks) -> None:
    """Zero, in place, every weight whose mask entry is 0.

    Pruned weights are set to +0.0 by assignment rather than multiplied by the mask, so that
    a negative weight does not become -0.0 (equal to 0, but printed and hashed differently).

    Args:
        model: the model; it is changed in place.
        masks: {layer name: 0/1 array of that layer's weight shape (out, in[, k, k])}.

    Raises:
        KeyError: a mask names a layer the model does not have.
        ValueError: a mask's shape differs from its layer's weight shape.
    """
    layers = layers_by_name(model, list(masks))
    _check_shapes(layers, masks)
    for name, layer in layers.items():
        np.copyto(layer.weight.data, 0.0, where=np.asarray(masks[name]) == 0)


def mask_from_weights(model: Module, layers: list[str] | None = None) -> Masks:
    """Masks that keep exactly the non-zero weights (1 where weight != 0).

    Args:
        model: the model (e.g. a pruned checkpoint just loaded).
        layers: names of the layers to read; default: every prunable layer.

    Returns:
        {layer name: float32 0/1 array of the weight's shape}.
    """
    chosen = prunable_layers(model) if layers is None else layers_by_name(model, layers)
    return {name: (layer.weight.data != 0).astype(np.float32) for name, layer in chosen.items()}


def zero_masked_momentum(optimizer: SGD, model: Module, masks: Masks) -> None:
    """Zero the momentum-buffer entries of pruned weights, in place.

    Re-masking the weights after each step is enough to keep them at zero, but the momentum
    buffer of a pruned weight still accumulates its gradient; zeroing it keeps the optimizer
    state consistent with the mask, so nothing can bring the weight back through momentum
    (e.g. once a mask is lifted, or if a step ran before the mask was applied).

    Args:
        optimizer: an `SGD` whose `params` include the masked weights; weights it does not
            optimise, and buffers not created yet (before the first step), are skipped.
        model: the model the masks refer to.
        masks: {layer name: 0/1 array of the weight's shape}.
    """
    index_of = {id(p): i for i, p in enumerate(optimizer.params)}
    for name, layer in layers_by_name(model, list(masks)).items():
        i = index_of.get(id(layer.weight))
        buffer = None if i is None else optimizer.momentum_buffers[i]
        if buffer is not None:
            np.copyto(buffer, 0.0, where=np.asarray(masks[name]) == 0)


def zero_momentum_of_zeros(optimizer: SGD, params: list[Any]) -> None:
    """Zero the momentum-buffer entries of every entry of `params` that is exactly 0.

    For a proximal step (soft-thresholding, group soft-thresholding) run after SGD: the prox
    decides that an entry is 0, and the momentum it had gathered must not carry it out again
    at the next step (once an entry is 0 its own gradient is often 0 too, so only momentum
    could revive it). Parameters the optimizer does not hold, and buffers not created yet,
    are skipped.
    """
    index_of = {id(p): i for i, p in enumerate(optimizer.params)}
    for param in params:
        i = index_of.get(id(param))
        buffer = None if i is None else optimizer.momentum_buffers[i]
        if buffer is not None:
            np.copyto(buffer, 0.0, where=param.data == 0)


def sparsity_of_masks(masks: Masks) -> float:
    """Fraction of pruned entries over all masks together (weighted by size)."""
    total = sum(int(np.size(m)) for m in masks.values())
    pruned = sum(int(np.count_nonzero(np.asarray(m) == 0)) for m in masks.values())
    return pruned / total if total else 0.0


class MaskHook:
    """Trainer hook for masked finetuning: pruned weights stay exactly 0 throughout.

    After every optimizer step it zeroes the pruned weights and their momentum entries; at
    the start of every epoch it does the same, so a resumed run or a model whose weights
    were changed outside the trainer is masked before its first forward.

    Attributes:
        masks: {layer name: float32 0/1 array of the weight's shape}.
    """

    def __init__(self, masks: Masks) -> None:
        self.masks: Masks = _as_float_masks(masks)

    def apply(self, trainer: TrainerLike) -> None:
        """Mask the weights and the optimizer's momentum buffers of `trainer`."""
        apply_masks(trainer.model, self.masks)
        zero_masked_momentum(trainer.optimizer, trainer.model, self.masks)

    def on_epoch_start(self, trainer: TrainerLike, epoch: int) -> None:
        """Mask before the epoch's first forward (epoch is 0-based, unused)."""
        self.apply(trainer)

    def after_step(self, trainer: TrainerLike) -> None:
        """Undo whatever the step did to pruned weights and their momentum."""
        self.apply(trainer)

    def on_epoch_end(self, trainer: TrainerLike, epoch: int, metrics: dict[str, Any]) -> None:
        """Log ``sparsity``: the fraction of exactly-zero weights over the masked layers."""
        layers = layers_by_name(trainer.model, list(self.masks))
        zeros = sum(layer.weight.size - np.count_nonzero(layer.weight.data)
                    for layer in layers.values())
        metrics["sparsity"] = zeros / max(1, sum(layer.weight.size for layer in layers.values()))

    state_name = "mask"  # checkpoint keys hook.mask.<layer> (see training.trainer.Hook)

    def state_dict(self) -> dict[str, np.ndarray]:
        """The masks, keyed by layer name (copies)."""
        return {name: m.copy() for name, m in self.masks.items()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Replace the masks with those saved by `state_dict`."""
        self.masks = _as_float_masks(state)

    def __repr__(self) -> str:
        return f"MaskHook({len(self.masks)} layers, sparsity {sparsity_of_masks(self.masks):.4f})"


def _as_float_masks(masks: dict[str, Any]) -> Masks:
    """Copies as float32 0/1 arrays (accepts bool or 0/1 arrays of any dtype)."""
    return {name: (np.asarray(m) != 0).astype(np.float32) for name, m in masks.items()}
