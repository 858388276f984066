"""Early exit for ResNet-20 (Shallow-Deep Networks, Kaya et al. 2019): a small classifier
after every residual block, and a policy that stops at the first confident one.

The backbone stays frozen, so everything an internal classifier sees is the globally
average-pooled output of its block, computed once per image (`pooled_block_features`).
Each internal classifier is global average pool + ``Linear(C_b, 10)``, the same shape as
the network's own head; the ninth exit IS the network's own head (``final_fc``), so the
early-exit model computes exactly what the pretrained one does when nothing exits early.

Exit ``e`` (0..8) sits after block ``body_op.e``. An image that leaves at exit ``e`` has paid
for the head conv, blocks 0..e, and the classifiers 0..e it consulted on the way
(`exit_costs`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from minitorch_compress import ops
from minitorch_compress.autograd.engine import no_grad
from minitorch_compress.autograd.tensor import Tensor
from minitorch_compress.data.transforms import normalize
from minitorch_compress.models.resnet import ConvBN, ResNet20
from minitorch_compress.nn import Linear, Module, Sequential

NUM_EXITS = 9  # one after each residual block; the last is the network's own head


class InternalClassifiers(Module):
    """The classifiers of exits 0..7: ``heads.e`` is Linear(C_e, num_classes) on the pooled
    output of block e. (Exit 8 is the model's ``final_fc``, not held here.)"""

    def __init__(self, channels: Sequence[int], num_classes: int = 10,
                 rng: np.random.Generator | None = None) -> None:
        super().__init__()
        rng = rng if rng is not None else np.random.default_rng(0)
        self.heads = Sequential(*[Linear(c, num_classes, rng=rng) for c in channels])

    def forward(self, features: Sequence[Tensor]) -> list[Tensor]:
        """features[e] (N, C_e) -> logits (N, num_classes) of exit e, for e = 0..7."""
        return [head(f) for head, f in zip(self.heads, features, strict=True)]


def block_channels(model: ResNet20) -> list[int]:
    """Output channels of each of the nine blocks (16, 16, 16, 32, ..., 64)."""
    return [block.conv2[0].conv.out_channels for block in model.body_op]


def internal_classifiers_for(model: ResNet20, rng: np.random.Generator | None = None
                             ) -> InternalClassifiers:
    """Freshly initialised classifiers for exits 0..7 of `model`."""
    classes = model.final_fc.linear.out_features
    return InternalClassifiers(block_channels(model)[:-1], classes, rng)


def pooled_block_features(model: ResNet20, images: np.ndarray, batch_size: int = 500
                          ) -> list[np.ndarray]:
    """The globally average-pooled output of every block, through the model's own forward.

    Args:
        model: the (frozen) backbone; run in eval mode, without a graph.
        images: uint8 (N, 3, 32, 32), normalised here batch by batch.

    Returns:
        Nine float32 arrays, entry e of shape (N, C_e): what exit e's classifier sees.
    """
    was_training = model.training
    model.eval()
    features = [np.empty((len(images), c), np.float32) for c in block_channels(model)]
    try:
        with no_grad():
            for begin in range(0, len(images), batch_size):
                out = model.head_conv(Tensor(normalize(images[begin:begin + batch_size])))
                for e, block in enumerate(model.body_op):
                    out = block(out)
                    features[e][begin:begin + len(out.data)] = ops.global_avg_pool2d(out).data
    finally:
        model.train(was_training)
    return features


def exit_logits(model: ResNet20, classifiers: InternalClassifiers,
                features: Sequence[np.ndarray]) -> np.ndarray:
    """Logits of all nine exits from the pooled features: float32 (9, N, num_classes).
    Row 8 is the model's own head, i.e. the pretrained model's logits."""
    with no_grad():
        inner = classifiers([Tensor(f) for f in features[:-1]])
        final = model.final_fc(Tensor(features[-1]))
    return np.stack([t.data for t in [*inner, final]])


def softmax_confidence(logits: np.ndarray) -> np.ndarray:
    """max softmax probability along the last axis: (..., K) -> (...)."""
    shifted = logits - logits.max(axis=-1, keepdims=True)
    probabilities = np.exp(shifted)
    return probabilities.max(axis=-1) / probabilities.sum(axis=-1)


def confidence_exits(logits: np.ndarray, threshold: float) -> np.ndarray:
    """The exit policy: each image leaves at the first exit whose max softmax probability is
    at least `threshold`, and at the last exit when none is.

    Args:
        logits: (E, N, K), the logits of every exit for every image.
        threshold: in [0, 1]; above 1 nothing exits early.

    Returns:
        int64 (N,): the exit each image takes.
    """
    confident = softmax_confidence(logits[:-1]) >= threshold  # (E - 1, N)
    confident = np.concatenate([confident, np.ones((1, logits.shape[1]), bool)])
    return confident.argmax(axis=0).astype(np.int64)  # argmax: the first True


def predictions_at(logits: np.ndarray, exits: np.ndarray) -> np.ndarray:
    """The class each image gets at its own exit: (E, N, K), (N,) -> int64 (N,)."""
    return logits[exits, np.arange(logits.shape[1])].argmax(axis=-1)


def wasteful_and_destructive(correct: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """SDN's two measures of overthinking, per exit, from who is right where.

    Args:
        correct: bool (E, N), whether exit e classifies image n right.

    Returns:
        ``(wasteful, destructive)``, float (E,) each: wasteful[e] is the fraction of the
        images that some exit before e already classifies right (computing up to e was not
        needed for them); destructive[e] the fraction that some exit before e classifies
        right and exit e gets wrong (going on made the answer worse). Both are 0 at exit 0.
    """
    correct = np.asarray(correct, bool)
    # earlier[e, n]: an exit < e is right on n (cumulative OR, shifted down by one exit)
    earlier = np.zeros_like(correct)
    earlier[1:] = np.logical_or.accumulate(correct[:-1], axis=0)
    return earlier.mean(axis=1), (earlier & ~correct).mean(axis=1)


# --------------------------------------------------------------------------------------------
# Cost: multiply-accumulates per image, counted from the layer shapes.
# --------------------------------------------------------------------------------------------


def _conv_macs(module: ConvBN, height: int, width: int) -> tuple[int, int, int]:
    """(MACs of one image through the conv, output height, output width)."""
    conv = module[0].conv
    out_h = (height + 2 * conv.padding - conv.kernel_size) // conv.stride + 1
    out_w = (width + 2 * conv.padding - conv.kernel_size) // conv.stride + 1
    per_pixel = conv.out_channels * conv.in_channels * conv.kernel_size ** 2
    return per_pixel * out_h * out_w, out_h, out_w


def segment_macs(model: ResNet20, image_size: int = 32) -> list[int]:
    """MACs of one image through each stretch of backbone between exits: entry 0 is the
    head conv plus block 0, entry e the block e (conv1, conv2 and the shortcut conv).
    Batch norm, ReLU, adds and pooling are not counted."""
    macs, height, width = _conv_macs(model.head_conv, image_size, image_size)
    segments = []
    for block in model.body_op:
        conv1, out_h, out_w = _conv_macs(block.conv1, height, width)
        conv2, _, _ = _conv_macs(block.conv2, out_h, out_w)
        shortcut = 0 if block.id_mapping is None else _conv_macs(block.id_mapping, height,
                                                                 width)[0]
        segments.append(macs + conv1 + conv2 + shortcut)
        macs, height, width = 0, out_h, out_w
    return segments


def exit_costs(model: ResNet20, classifiers: InternalClassifiers) -> np.ndarray:
    """int64 (9,): MACs of one image that leaves at exit e, i.e. the backbone up to block e
    plus every classifier consulted on the way (0..e). Exit 8's cost is the full model's
    plus the eight internal classifiers."""
    heads = [h.in_features * h.out_features for h in classifiers.heads]
    final = model.final_fc.linear
    heads.append(final.in_features * final.out_features)
    return np.cumsum(np.asarray(segment_macs(model)) + np.asarray(heads), dtype=np.int64)


def full_model_macs(model: ResNet20) -> int:
    """MACs of one image through the plain model (backbone and its own head)."""
    final = model.final_fc.linear
    return int(sum(segment_macs(model)) + final.in_features * final.out_features)


# --------------------------------------------------------------------------------------------
# Running it: images that exit leave the batch.
# --------------------------------------------------------------------------------------------


def early_exit_predict(model: ResNet20, classifiers: InternalClassifiers, images: np.ndarray,
                       threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """Classify a batch with the exit policy, dropping from the batch every image that exits,
    so the rest continue through the next block alone (what saves real time).

    Args:
        model: the backbone, in eval mode.
        images: float32 (N, 3, 32, 32), already normalised.
        threshold: the policy's confidence threshold (`confidence_exits`).

    Returns:
        ``(predictions, exits)``: int64 (N,) each, the same as `confidence_exits` and
        `predictions_at` give from all exits' logits.
    """
    predictions = np.empty(len(images), np.int64)
    exits = np.empty(len(images), np.int64)
    remaining = np.arange(len(images))  # the images still in the batch, by position
    with no_grad():
        out = model.head_conv(Tensor(images))
        for e, block in enumerate(model.body_op):
            out = block(out)
            pooled = ops.global_avg_pool2d(out)
            last = e == len(model.body_op) - 1
            logits = (model.final_fc(pooled) if last else classifiers.heads[e](pooled)).data
            leaving = (np.ones(len(logits), bool) if last
                       else softmax_confidence(logits) >= threshold)
            predictions[remaining[leaving]] = logits[leaving].argmax(axis=1)
            exits[remaining[leaving]] = e
            if leaving.all():
                break
            if leaving.any():
                remaining = remaining[~leaving]
                out = Tensor(np.ascontiguousarray(out.data[~leaving]))
    return predictions, exits
