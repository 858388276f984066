"""ResNet-20 for CIFAR-10 (3 stages x 3 basic blocks, 16/32/64 channels).

Module names follow the course checkpoint exactly, so `named_parameters()`, masks, and every
sparsity table use the names students know: `head_conv.0.conv.weight`,
`body_op.3.conv1.0.conv.weight`, `body_op.3.id_mapping.1.running_mean`,
`final_fc.linear.bias`, ...
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from minitorch_compress import ops
from minitorch_compress.autograd.engine import is_grad_enabled, no_grad
from minitorch_compress.autograd.tensor import Tensor
from minitorch_compress.kernels import sparse_break_even
from minitorch_compress.kernels.rules import conv2d_output_size
from minitorch_compress.kernels.sparse_break_even import ConvGeometry
from minitorch_compress.kernels.sparse_conv import SparseWeights
from minitorch_compress.nn import BatchNorm2d, Conv2d, Linear, Module, Sequential
from minitorch_compress.ops.fused import conv2d_batch_norm_eval, sparse_conv2d_batch_norm_eval

CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2023, 0.1994, 0.2010)


class ConvLayer(Module):
    """Holds one `Conv2d` as `.conv`: the extra level gives the checkpoint's names (`0.conv`)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int,
                 padding: int, rng: np.random.Generator) -> None:
        super().__init__()
        self.conv = Conv2d(in_channels, out_channels, kernel_size, stride, padding, rng=rng)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(x)


class LinearLayer(Module):
    """Holds one `Linear` as `.linear` (checkpoint name `final_fc.linear`)."""

    def __init__(self, in_features: int, out_features: int, rng: np.random.Generator) -> None:
        super().__init__()
        self.linear = Linear(in_features, out_features, rng=rng)

    def forward(self, x: Tensor) -> Tensor:
        return self.linear(x)


class ConvBN(Sequential):
    """``Sequential(ConvLayer, BatchNorm2d)`` (checkpoint names ``.0.conv``, ``.1``) and what
    follows the batch norm, named here rather than implied: ``activation="relu"`` or None,
    and, when `forward` gets a residual, ``+ residual`` then ReLU (a ResNet block's tail).

    At inference the whole of it can run as one fused op (`fused_inference`) when
    `fuse_at_inference` is True (the default; `ResNet20` sets it for all its ConvBNs); the
    forward says when.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int,
                 rng: np.random.Generator, activation: str | None,
                 fuse_at_inference: bool = True) -> None:
        if activation not in ("relu", None):
            raise ValueError(f"activation must be 'relu' or None, got {activation!r}")
        super().__init__(
            ConvLayer(in_channels, out_channels, kernel_size, stride, kernel_size // 2, rng),
            BatchNorm2d(out_channels),
        )
        self.activation = activation
        #: Run conv -> BN (-> + residual) (-> ReLU) as one op when nothing needs gradients
        #: (see `fused_inference`); False runs the separate ops, to compare with them.
        self.fuse_at_inference = fuse_at_inference
        self.sparse_weights = None  # set by `to_sparse`: the conv's non-zeros, for inference

    def forward(self, x: Tensor, residual: Tensor | None = None) -> Tensor:
        """x (N, C, H, W) -> (N, K, Ho, Wo): conv, BN, then ReLU (``activation="relu"``) or,
        with `residual` (same shape as the output), ``relu(BN(conv(x)) + residual)``."""
        if self.runs_fused(x):
            return self.fused_inference(x, residual)
        conv, bn = self[0].conv, self[1]
        if residual is None:
            return bn(conv(x), relu=self.activation == "relu")
        return ops.add_relu(bn(conv(x)), residual)

    def runs_fused(self, x: Tensor) -> bool:
        """Whether `forward` takes the fused path: batch norm in eval mode and no gradient
        recorded (e.g. ``model.eval()`` under ``no_grad()``), since the fused kernel has no
        backward, and it is only worth having where nothing trains."""
        return (self.fuse_at_inference and not self[1].training and not is_grad_enabled()
                and self[0].conv.bias is None)

    def fused_inference(self, x: Tensor, residual: Tensor | None = None) -> Tensor:
        """The same result as the separate ops, bit for bit on the fast kernels (tested), in one
        pass over the conv's output: eval batch norm, residual add and ReLU as the conv's
        epilogue (`ops.fused`; on the reference kernels, the steps one after the other).
        Inference only: the result records no gradient.

        A conv given `sparse_weights` (see `to_sparse`) runs the direct sparse kernel
        instead, with the same epilogue (equal to float rounding: sums run in another order).
        """
        conv, bn = self[0].conv, self[1]
        conv.check_input(x)
        if self.sparse_weights is not None:
            return sparse_conv2d_batch_norm_eval(
                x, self.sparse_weights, conv.stride, conv.padding, bn.weight, bn.bias,
                bn.running_mean, bn.running_var, bn.eps,
                relu=self.activation == "relu" or residual is not None, residual=residual)
        return conv2d_batch_norm_eval(
            x, conv.effective_weight(), conv.stride, conv.padding, bn.weight, bn.bias,
            bn.running_mean, bn.running_var, bn.eps,
            relu=self.activation == "relu" or residual is not None, residual=residual)


class BasicBlock(Module):
    """conv3x3(stride) + BN + ReLU, conv3x3 + BN, plus the shortcut; then add and ReLU.

    The shortcut is the identity, or conv1x1(stride 2) + BN when the channel count changes.
    `mid_channels` is the block-internal width (conv1's outputs, conv2's inputs; default
    `out_channels`): channel pruning changes it without touching the residual path.
    `fuse_at_inference` is passed to the three `ConvBN`s.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int,
                 rng: np.random.Generator, mid_channels: int | None = None,
                 fuse_at_inference: bool = True) -> None:
        super().__init__()
        mid = out_channels if mid_channels is None else mid_channels
        fuse = fuse_at_inference
        self.conv1 = ConvBN(in_channels, mid, 3, stride, rng, activation="relu",
                            fuse_at_inference=fuse)
        self.conv2 = ConvBN(mid, out_channels, 3, 1, rng, activation=None,
                            fuse_at_inference=fuse)
        if stride != 1 or in_channels != out_channels:
            self.id_mapping = ConvBN(in_channels, out_channels, 1, stride, rng, activation=None,
                                     fuse_at_inference=fuse)
        else:
            self.id_mapping = None

    def forward(self, x: Tensor) -> Tensor:
        """x (N, C_in, H, W) -> (N, C_out, H / stride, W / stride)."""
        shortcut = x if self.id_mapping is None else self.id_mapping(x)
        return self.conv2(self.conv1(x), residual=shortcut)


STAGE_CHANNELS = (16, 32, 64)
BLOCKS_PER_STAGE = 3


class ResNet20(Module):
    """ResNet-20: (N, 3, H, W) normalised images -> (N, 10) logits.

    CIFAR-10's images are 32x32; the network is convolutional up to a global average pool,
    so smaller images work too (`labs/step_through.py` steps the fast kernels on 8x8 ones).

    Args:
        num_classes: outputs of the final FC.
        rng: initialisation (default seed 0).
        mid_channels: the block-internal width of each of the 9 blocks (default: the stage
            width, 16/32/64); a channel-pruned model is the same network with fewer.
        fuse_at_inference: whether each conv + batch norm (+ residual) (+ ReLU) runs as one
            fused op in eval mode under ``no_grad()`` (default True; see `ConvBN`). Change
            it later with `set_fuse_at_inference`.
    """

    def __init__(self, num_classes: int = 10, rng: np.random.Generator | None = None,
                 mid_channels: Sequence[int] | None = None,
                 fuse_at_inference: bool = True) -> None:
        super().__init__()
        rng = rng if rng is not None else np.random.default_rng(0)
        widths = [c for c in STAGE_CHANNELS for _ in range(BLOCKS_PER_STAGE)]
        mids = list(widths if mid_channels is None else mid_channels)
        if len(mids) != len(widths) or not all(isinstance(m, int) and m >= 1 for m in mids):
            raise ValueError(f"mid_channels needs {len(widths)} widths >= 1, got {mids}")
        self.mid_channels = tuple(mids)
        self.head_conv = ConvBN(3, STAGE_CHANNELS[0], 3, 1, rng, activation="relu",
                                fuse_at_inference=fuse_at_inference)
        blocks = []
        in_channels = STAGE_CHANNELS[0]
        for i, (channels, mid) in enumerate(zip(widths, mids, strict=True)):
            stride = 2 if i > 0 and i % BLOCKS_PER_STAGE == 0 else 1
            blocks.append(BasicBlock(in_channels, channels, stride, rng, mid,
                                     fuse_at_inference))
            in_channels = channels
        self.body_op = Sequential(*blocks)
        self.final_fc = LinearLayer(STAGE_CHANNELS[-1], num_classes, rng)

    def set_fuse_at_inference(self, fuse: bool) -> None:
        """Turn the fused inference path on or off for every conv + batch norm of this model."""
        for _, module in self.named_modules():
            if isinstance(module, ConvBN):
                module.fuse_at_inference = fuse

    def forward(self, x: Tensor) -> Tensor:
        """x (N, 3, H, W) -> logits (N, num_classes); the shape after each stage is printed
        by `labs/step_through.py`."""
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"ResNet20 expects images (N, 3, H, W), got {tuple(x.shape)}")
        out = self.head_conv(x)
        out = self.body_op(out)
        return self.final_fc(ops.global_avg_pool2d(out))


def resnet20(num_classes: int = 10, rng: np.random.Generator | None = None,
             mid_channels: Sequence[int] | None = None) -> ResNet20:
    """A freshly initialised ResNet-20 (use `load_state_dict` for the pretrained weights)."""
    return ResNet20(num_classes, rng, mid_channels)


def to_sparse(model: ResNet20, break_even: dict[ConvGeometry, float] | None = None,
              min_sparsity: float | None = None, image_size: int = 32) -> dict[str, float]:
    """Let the model's inference run its sparse convs on the direct sparse kernel.

    A conv takes the sparse path when the effective weight it computes with (quantized,
    where a quantizer is set) is at least as sparse as the break-even of its shape on this
    CPU (`kernels.sparse_break_even`: measured at the first use of a shape, then cached),
    so a model never runs slower than dense; or at least as sparse as `min_sparsity` when
    given, or as `break_even[shape]` when a table is given (shapes not in it stay dense).
    The weights are copied as they are now: call it again after changing them (`to_dense`
    undoes it).

    Args:
        image_size: the input images' height and width (the conv shapes depend on it).

    Returns:
        {conv name: its sparsity} of the convs switched to the sparse path.
    """
    sizes = _conv_input_sizes(model, image_size)
    chosen = {}
    with no_grad():
        for name, module in model.named_modules():
            if not isinstance(module, ConvBN):
                continue
            conv = module[0].conv
            weights = SparseWeights.from_dense(np.asarray(conv.effective_weight().data))
            k, c, kernel, _ = conv.weight.shape
            shape = ConvGeometry(c, k, sizes[id(module)], kernel, conv.stride, conv.padding)
            if min_sparsity is not None:
                sparse = weights.sparsity >= min_sparsity
            elif break_even is not None:
                sparse = weights.sparsity >= break_even.get(shape, sparse_break_even.NEVER)
            else:
                sparse = sparse_break_even.runs_sparse(shape, weights.sparsity)
            module.sparse_weights = weights if sparse else None
            if module.sparse_weights is not None:
                chosen[name] = weights.sparsity
    return chosen


def _conv_input_sizes(model: ResNet20, image_size: int) -> dict[int, int]:
    """{id(ConvBN): the height (= width) of its input} for square images of `image_size`."""
    def out(size: int, module: ConvBN) -> int:
        conv = module[0].conv
        kernel = conv.weight.shape[2]
        return conv2d_output_size(size, size, kernel, kernel, conv.stride, conv.padding)[0]

    sizes = {id(model.head_conv): image_size}
    size = out(image_size, model.head_conv)
    for block in model.body_op:
        sizes[id(block.conv1)] = size
        if block.id_mapping is not None:
            sizes[id(block.id_mapping)] = size
        size = out(size, block.conv1)
        sizes[id(block.conv2)] = size
    return sizes


def to_dense(model: ResNet20) -> None:
    """Back to the dense inference path everywhere."""
    for _, module in model.named_modules():
        if isinstance(module, ConvBN):
            module.sparse_weights = None
