"""Structured (channel) sparsity: group Lasso on ResNet-20's block-internal channels, and
removing the channels it zeroes so the network becomes a smaller dense one.

Unstructured pruning zeroes single weights and leaves every tensor its full shape; a dense
kernel does the same work on the zeros. Channel pruning removes whole channels, so the
convs that remain are smaller dense convs and every kernel gets faster. In a ResNet block
the residual path fixes the width of the block's input and output (the shortcut adds them),
but the *block-internal* width is free: output channel k of ``conv1``, its batch norm, its
ReLU, and input channel k of ``conv2`` form one group that can go as a whole.

Group k of block i holds (0-based, ``mid`` = the block's internal width)::

    body_op.i.conv1.0.conv.weight[k, :, :, :]   conv1's filter k        (mid, C_in, 3, 3)
    body_op.i.conv1.1.weight[k], .bias[k]       its batch norm's gamma and beta
    body_op.i.conv2.0.conv.weight[:, k, :, :]   conv2's input column k  (C_out, mid, 3, 3)

When conv1's filter, gamma and beta of a group are all 0, the channel after batch norm and
ReLU is 0 for every input (BN computes gamma * (x - mean) / std + beta), so whatever conv2's
column k holds, it adds nothing: removing the group (`shrink`) changes no output (up to the
float rounding of sums taken over fewer terms).

The group-Lasso penalty lambda * sum_g ||g||_2 is optimised like Lab 1 (e)'s Lasso, with a
proximal step after each SGD step: group soft-thresholding, ``g <- g * max(0, 1 - t/||g||)``
with ``t = lr * lambda``, which sets a whole group exactly to 0 once its norm falls below t
(the structured counterpart of soft-thresholding one weight).

Widths for a MAC budget. The tiled conv kernel computes `CHANNEL_TILE` output channels at a
time (padding other counts with zero filters), so a block whose internal width is a multiple
of it wastes no work (`round_widths`). `widths_for_mac_budget` ranks every channel of the
network by a score and keeps the best ones, in tile steps, until the MACs (`resnet20_macs`)
reach a fraction of the full model's; `top_channels` then says which channels of each block
those are. The score chooses the method: L1 norms of conv1's filters ranked within each
block (`within_block_ranks`: the same keep fraction in every block, Li et al.'s uniform
baseline), or the group norms after a group-Lasso run (the channels the penalty left
largest). `strength_for_mac_budget` predicts, before a run, which group-Lasso strength zeroes
about that budget's channels.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from minitorch_compress.compression.masks import TrainerLike, zero_momentum_of_zeros
from minitorch_compress.errors import MinitorchError
from minitorch_compress.kernels.direct_conv_tiled import OUTPUT_CHANNEL_TILE
from minitorch_compress.models.resnet import BLOCKS_PER_STAGE, STAGE_CHANNELS, ResNet20

Keep = list[list[int]]  # per block, the 0-based block-internal channels to keep

# The output channels the tiled conv kernel (kernels/direct_conv_tiled.py) computes at once,
# read from the kernel (so the widths follow it if the tile changes). The kernel pads any
# other count with zero filters that it computes and drops, so a block-internal width that
# is a multiple wastes none of conv1's work.
CHANNEL_TILE = OUTPUT_CHANNEL_TILE

FULL_WIDTHS = tuple(c for c in STAGE_CHANNELS for _ in range(BLOCKS_PER_STAGE))


def group_parameters(block: Any) -> list[Any]:
    """The parameters a block's channel groups live in: conv1's weight, its batch norm's
    gamma and beta, conv2's weight."""
    bn = block.conv1[1]
    return [block.conv1[0].conv.weight, bn.weight, bn.bias, block.conv2[0].conv.weight]


def group_tensors(block: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The arrays a block's channel groups live in (views, so edits act on the model):
    conv1's weight (mid, C_in, 3, 3), gamma (mid,), beta (mid,), conv2's weight
    (C_out, mid, 3, 3)."""
    w1, gamma, beta, w2 = (p.data for p in group_parameters(block))
    return w1, gamma, beta, w2


def block_group_norms(block: Any) -> np.ndarray:
    """(mid,) the L2 norm of each channel group of `block` (float64)."""
    w1, gamma, beta, w2 = (t.astype(np.float64) for t in group_tensors(block))
    squares = ((w1 ** 2).sum(axis=(1, 2, 3)) + gamma ** 2 + beta ** 2
               + (w2 ** 2).sum(axis=(0, 2, 3)))
    return np.sqrt(squares)


def group_norms(model: ResNet20) -> list[np.ndarray]:
    """Per block, (mid,) the L2 norm of each channel group."""
    return [block_group_norms(block) for block in model.body_op]


def group_soft_threshold_factors(norms: np.ndarray, threshold: float) -> np.ndarray:
    """(G,) the factor each group is scaled by: max(0, 1 - t / ||g||), 0 for a zero group.

    The proximal operator of t * ||g||_2: a group of norm <= t becomes exactly 0, any other
    keeps its direction and loses t of its norm.
    """
    kept = norms > threshold
    factors = np.zeros(norms.shape, dtype=np.float64)
    factors[kept] = 1.0 - threshold / norms[kept]
    return factors


def group_soft_threshold(model: ResNet20, threshold: float) -> int:
    """Apply group soft-thresholding with `threshold` to every block's channel groups, in
    place; returns how many groups are exactly 0 afterwards."""
    zero = 0
    for block in model.body_op:
        factors = group_soft_threshold_factors(block_group_norms(block), threshold)
        w1, gamma, beta, w2 = group_tensors(block)
        f32 = factors.astype(np.float32)
        w1 *= f32[:, None, None, None]
        gamma *= f32
        beta *= f32
        w2 *= f32[None, :, None, None]
        zero += int(np.count_nonzero(factors == 0.0))
    return zero


def surviving_channels(model: ResNet20) -> Keep:
    """Per block, the channels whose group is not exactly 0 (sorted)."""
    return [[int(k) for k in np.flatnonzero(norms > 0)] for norms in group_norms(model)]


def at_least_one(keep: Keep, model: ResNet20) -> Keep:
    """`keep` with an empty block given its largest-norm channel back: a block whose internal
    width is 0 would be a block that only adds its shortcut, which ResNet20 does not build.
    (Its group is 0, so keeping it changes no output.)"""
    norms = group_norms(model)
    return [k if k else [int(np.argmax(norms[i]))] for i, k in enumerate(keep)]


def fill_to_tile(keep: Keep, model: ResNet20, multiple: int = CHANNEL_TILE) -> Keep:
    """`keep` with each block's channels made up to a multiple of `multiple` (at most the
    block's width) by adding back removed channels, those of largest group norm first (ties
    to the earlier channel); sorted.

    A conv1 whose output count is not a multiple of the tile runs the tiled kernel into a
    padded scratch output, computing the padding filters anyway, then copies it into the
    output with the epilogue (`kernels/direct_conv_tiled.py`: plane by plane, or row by row
    where the output width was padded too): a whole tile costs the same multiplies and skips
    that copy. After a group-Lasso run the channels added back are
    zero groups, so the model computes the same outputs (`shrink`)."""
    filled = []
    for block_keep, norms in zip(keep, group_norms(model), strict=True):
        width = min(len(norms), -(-len(block_keep) // multiple) * multiple)
        kept = set(block_keep)
        extra = [int(k) for k in np.argsort(-norms, kind="stable") if int(k) not in kept]
        filled.append(sorted([*block_keep, *extra[:width - len(block_keep)]]))
    return filled


def l1_filter_norms(model: ResNet20) -> list[np.ndarray]:
    """Per block, (mid,) the L1 norm of each conv1 filter (float64): Li et al.'s score."""
    return [np.abs(group_tensors(block)[0].astype(np.float64)).sum(axis=(1, 2, 3))
            for block in model.body_op]


def top_channels(scores: Sequence[np.ndarray], counts: Sequence[int]) -> Keep:
    """In block i the `counts[i]` channels with the largest `scores[i]` (ties to the earlier
    channel), sorted."""
    keep = []
    for block_scores, count in zip(scores, counts, strict=True):
        order = np.argsort(-np.asarray(block_scores, dtype=np.float64), kind="stable")
        keep.append(sorted(int(k) for k in order[:count]))
    return keep


def l1_filter_keep(model: ResNet20, counts: Sequence[int]) -> Keep:
    """The baseline of Li et al. (ICLR 2017): in block i keep the `counts[i]` channels whose
    conv1 filters have the largest L1 norms (ties to the earlier channel), sorted."""
    return top_channels(l1_filter_norms(model), counts)


def shrink(model: ResNet20, keep: Keep) -> ResNet20:
    """A smaller dense ResNet-20 holding only the kept block-internal channels of `model`.

    Every other tensor (head conv, shortcuts, conv2's outputs and batch norm, final FC) is
    copied as it is. When the removed groups are 0 (`surviving_channels`), the result
    computes the same outputs as `model` (tested).

    Args:
        model: a ResNet-20 (any internal widths).
        keep: per block, the 0-based channels to keep (each non-empty).

    Returns:
        ``ResNet20(mid_channels=[len(k) for k in keep])`` in `model`'s train/eval mode.
    """
    if len(keep) != len(model.body_op) or any(len(k) == 0 for k in keep):
        raise ValueError("keep needs one non-empty list of channels per block")
    small = ResNet20(num_classes=model.final_fc.linear.weight.shape[0],
                     mid_channels=[len(k) for k in keep])
    state = model.state_dict()
    for i, channels in enumerate(keep):
        index = np.asarray(channels, dtype=np.int64)
        prefix = f"body_op.{i}."
        for name in list(state):
            if name.startswith(prefix + "conv1.0.conv.weight"):
                state[name] = state[name][index]
            elif name.startswith(prefix + "conv1.1.") and state[name].ndim == 1:
                state[name] = state[name][index]  # gamma, beta, running mean and variance
            elif name == prefix + "conv2.0.conv.weight":
                state[name] = state[name][:, index]
    small.load_state_dict({k: np.array(v, order="C") for k, v in state.items()})
    return small.train(model.training)


def resnet20_macs(mid_channels: Sequence[int] | None = None, num_classes: int = 10) -> int:
    """Multiply-accumulates of one 32x32 image through ResNet-20's convs and FC.

    The head conv and stage 1 run at 32x32, stage 2 at 16x16, stage 3 at 8x8; each block's
    conv1 maps C_in -> mid, conv2 mid -> C_out, the shortcut conv (first block of stages 2
    and 3) C_in -> C_out with a 1x1 kernel. Batch norm, ReLU and adds are not counted.
    """
    widths = [16] * 3 + [32] * 3 + [64] * 3
    mids = widths if mid_channels is None else list(mid_channels)
    macs = 32 * 32 * 16 * 3 * 9  # head conv
    c_in = 16
    for i, (c_out, mid) in enumerate(zip(widths, mids, strict=True)):
        hw = 32 // 2 ** (i // 3)
        macs += hw * hw * mid * c_in * 9 + hw * hw * c_out * mid * 9
        if c_in != c_out:
            macs += hw * hw * c_out * c_in
        c_in = c_out
    return macs + 64 * num_classes


def round_widths(widths: Sequence[int], multiple: int = CHANNEL_TILE,
                 limits: Sequence[int] = FULL_WIDTHS) -> list[int]:
    """Each width rounded to the nearest multiple of `multiple` (a half rounds up), but at
    least `multiple` (never 0) and at most its limit.

    Args:
        widths: (9,) per block, the channels wanted (>= 0).
        multiple: the tile, `CHANNEL_TILE` by default.
        limits: (9,) per block, the full width (16/32/64 by default; a limit that is not a
            multiple is still never exceeded).
    """
    if multiple < 1:
        raise ValueError(f"the width multiple must be >= 1, got {multiple}")
    rounded = []
    for width, limit in zip(widths, limits, strict=True):
        if width < 0:
            raise ValueError(f"widths must be >= 0, got {list(widths)}")
        nearest = multiple * int(np.floor(width / multiple + 0.5))
        rounded.append(min(limit, max(multiple, nearest)))
    return rounded


def within_block_ranks(scores: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Per block, each channel's score replaced by ``1 - rank / width`` (the block's largest
    1.0, its smallest 1 / width): ranked on these, every block keeps about the same fraction
    of its channels (Li et al.'s uniform keep ratio, since L1 norms of filters with 16, 32
    or 64 inputs are not comparable across blocks)."""
    ranks = []
    for block_scores in scores:
        order = np.argsort(-np.asarray(block_scores, dtype=np.float64), kind="stable")
        rank = np.empty(order.size, dtype=np.float64)
        rank[order] = np.arange(order.size)
        ranks.append(1.0 - rank / order.size)
    return ranks


def widths_for_mac_budget(scores: Sequence[np.ndarray], budget_fraction: float,
                          multiple: int = CHANNEL_TILE, num_classes: int = 10) -> list[int]:
    """Per-block widths, multiples of `multiple`, whose MACs are at most `budget_fraction` of
    the full model's and within one tile step of it.

    All channels of the network are ranked by score (ties: earlier block, earlier channel);
    the widths are the per-block counts among the best n channels, `round_widths`-ed; n is
    the largest whose widths fit the budget. Going from n to n + 1 adds at most one tile to
    one block, so the next width profile would exceed the budget by less than one tile's
    MACs: the result is under the budget by less than the costliest tile (stage 1: 4
    channels at 32x32, 2.9 % of the model).

    Args:
        scores: per block, (width,) one score per channel, larger = keep first (the full
            model's widths: 16/32/64).
        budget_fraction: in (0, 1], the share of `resnet20_macs()` allowed.
        multiple: the tile (`CHANNEL_TILE`).
        num_classes: the classifier's outputs (for the MACs).

    Returns:
        (9,) the widths; `top_channels(scores, widths)` says which channels.

    Raises:
        MinitorchError: the budget is outside (0, 1] or below the smallest model of this tile.
    """
    if not 0 < budget_fraction <= 1:
        raise MinitorchError(f"a MAC budget is a fraction in (0, 1], got {budget_fraction}")
    limits = [len(s) for s in scores]
    budget = budget_fraction * resnet20_macs(num_classes=num_classes)
    block_of = np.concatenate([np.full(len(s), i) for i, s in enumerate(scores)])
    ranked = block_of[np.argsort(-np.concatenate(scores), kind="stable")]

    def macs_of(widths: list[int]) -> int:
        return resnet20_macs(widths, num_classes)

    counts = [0] * len(scores)
    best = round_widths(counts, multiple, limits)
    if macs_of(best) > budget:
        raise MinitorchError(
            f"a budget of {budget_fraction:.1%} of the MACs is below the smallest model with "
            f"{multiple} channels a block ({macs_of(best) / resnet20_macs():.1%})")
    for block in ranked:  # the MACs grow with every channel added: stop at the first miss
        counts[block] += 1
        widths = round_widths(counts, multiple, limits)
        if macs_of(widths) > budget:
            break
        best = widths
    return best


def predicted_group_norms(norms: Sequence[np.ndarray], strength: float, lr: float, steps: int,
                          momentum: float = 0.0, weight_decay: float = 0.0) -> list[np.ndarray]:
    """Each group's norm after `steps` SGD steps with the group-Lasso prox, if the loss
    gradient were 0 (a converged model, where it barely pushes back).

    Then weight decay and the prox only scale a group, never turn it, so its norm n follows
    the scalar recursion of `SGD` and `GroupLassoHook.after_step`::

        g = weight_decay * n;  b = g at the first step, else momentum * b + g
        n = n - lr * b;        n = n - lr * strength, or 0 once n <= lr * strength

    and a zeroed group stays 0 (its momentum is cleared and its decay is 0).

    Args:
        norms: per block, (mid,) the group norms at the start (`group_norms`).
        strength: the hook's lambda.
        lr, momentum, weight_decay: the recipe's SGD settings.
        steps: SGD steps in the run (steps per epoch x epochs).

    Returns:
        Per block, (mid,) the predicted norms (0 where the group dies).
    """
    sizes = [len(n) for n in norms]
    n = np.concatenate(norms).astype(np.float64)
    threshold = lr * strength
    buffer = np.zeros_like(n)
    for step in range(steps):
        decay = weight_decay * n
        buffer = decay if step == 0 else momentum * buffer + decay
        n = n - lr * buffer
        n = np.where(n > threshold, n - threshold, 0.0)
        buffer[n == 0] = 0.0
    return np.split(n, np.cumsum(sizes)[:-1])


def strength_for_mac_budget(norms: Sequence[np.ndarray], budget_fraction: float, lr: float,
                            steps: int, momentum: float = 0.0, weight_decay: float = 0.0,
                            num_classes: int = 10) -> float:
    """The smallest group-Lasso strength whose predicted survivors (`predicted_group_norms`,
    at least one channel a block) cost at most `budget_fraction` of the full model's MACs.

    A bisection on the prediction: more strength never keeps more channels. The real run
    keeps some more (the loss gradient holds useful groups up), and `widths_for_mac_budget`
    on its final group norms then lands exactly on the budget.

    Args:
        norms: per block, the group norms of the model the run starts from.
        budget_fraction: in (0, 1].
        lr, steps, momentum, weight_decay: the run's recipe (see `predicted_group_norms`).

    Raises:
        MinitorchError: the budget is outside (0, 1].
    """
    if not 0 < budget_fraction <= 1:
        raise MinitorchError(f"a MAC budget is a fraction in (0, 1], got {budget_fraction}")
    budget = budget_fraction * resnet20_macs(num_classes=num_classes)

    def fits(strength: float) -> bool:
        alive = predicted_group_norms(norms, strength, lr, steps, momentum, weight_decay)
        widths = [max(1, int(np.count_nonzero(a))) for a in alive]
        return resnet20_macs(widths, num_classes) <= budget

    if fits(0.0):
        return 0.0
    low, high = 0.0, 2 * max(float(np.max(n)) for n in norms) / (lr * steps)  # all dead
    for _ in range(50):  # 2^-50 of the bracket
        middle = (low + high) / 2
        low, high = (low, middle) if fits(middle) else (middle, high)
    return high


class GroupLassoHook:
    """Trainer hook: the proximal step of the group-Lasso penalty after every SGD step.

    With learning rate lr (the scheduler's current one) the threshold is ``lr * strength``,
    as Lab 1 (e)'s prox uses ``mu * lambda``; the momentum of the entries it zeroes is zeroed
    too, so a removed group comes back only if its gradient alone beats the threshold. (With
    momentum m the gradient steps are up to 1 / (1 - m) times larger than lr * gradient
    while the prox is not, so ``strength`` is the per-step prox strength, not the lambda of
    a group-Lasso objective.) Logs the surviving channels per block.

    Attributes:
        strength: lambda, the penalty's weight.
    """

    state_name = "group_lasso"

    def __init__(self, strength: float) -> None:
        if not strength >= 0:
            raise ValueError(f"the group-Lasso strength must be >= 0, got {strength}")
        self.strength = float(strength)

    def on_epoch_start(self, trainer: TrainerLike, epoch: int) -> None:
        """Nothing: the prox acts after each step."""

    def after_step(self, trainer: TrainerLike) -> None:
        """Group soft-thresholding with t = lr * strength, then the zeroed entries' momentum."""
        group_soft_threshold(trainer.model, trainer.optimizer.lr * self.strength)
        zero_momentum_of_zeros(trainer.optimizer, [p for block in trainer.model.body_op
                                                   for p in group_parameters(block)])

    def on_epoch_end(self, trainer: TrainerLike, epoch: int, metrics: dict[str, Any]) -> None:
        """Log ``channels`` (surviving per block) and ``channel_fraction`` (of all groups)."""
        alive = surviving_channels(trainer.model)
        total = sum(len(n) for n in group_norms(trainer.model))
        metrics["channels"] = [len(k) for k in alive]
        metrics["channel_fraction"] = sum(len(k) for k in alive) / total

    def state_dict(self) -> dict[str, np.ndarray]:
        """Nothing to keep: the zero groups are in the weights themselves."""
        return {}

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        """Nothing to restore."""
