"""ResNet-20 for CIFAR-10 (3 stages x 3 basic blocks, 16/32/64 channels).

Module names follow the course checkpoint exactly, so `named_parameters()`, masks, and every
sparsity table use the names students know: `head_conv.0.conv.weight`,
`body_op.3.conv1.0.conv.weight`, `body_op.3.id_mapping.1.running_mean`,
`final_fc.linear.bias`, ...
"""

from __future__ import annotations

import numpy as np

from minitorch_compress import ops
from minitorch_compress.autograd.engine import is_grad_enabled
from minitorch_compress.autograd.tensor import Tensor
from minitorch_compress.nn import BatchNorm2d, Conv2d, Linear, Module, ReLU, Sequential
from minitorch_compress.ops.fused import conv2d_batch_norm_eval

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


def conv_bn(in_channels: int, out_channels: int, kernel_size: int, stride: int,
            rng: np.random.Generator, relu: bool) -> Sequential:
    """Sequential(ConvLayer, BatchNorm2d[, ReLU]); "same" padding for odd kernel sizes."""
    layers: list[Module] = [
        ConvLayer(in_channels, out_channels, kernel_size, stride, kernel_size // 2, rng),
        BatchNorm2d(out_channels),
    ]
    if relu:
        layers.append(ReLU())
    return Sequential(*layers)


def _conv_bn_forward(block: Sequential, x: Tensor, shortcut: Tensor | None = None) -> Tensor:
    """Run conv -> BN (-> + shortcut) (-> ReLU), x (N, C, H, W) -> (N, K, Ho, Wo).

    The ReLU is the block's own (fused into the BN kernel), or with a shortcut the one after
    the residual add. At inference (BN in eval mode, no gradients recorded) all of it runs
    as one fused kernel over the conv's output (`ops.fused`), with the same numbers.
    """
    conv, bn = block[0].conv, block[1]
    relu = len(block) == 3 or shortcut is not None
    if not bn.training and not is_grad_enabled() and conv.bias is None:
        conv.check_input(x)
        return conv2d_batch_norm_eval(
            x, conv.effective_weight(), conv.stride, conv.padding, bn.weight, bn.bias,
            bn.running_mean, bn.running_var, bn.eps, relu=relu, residual=shortcut,
        )
    if shortcut is None:
        return bn(conv(x), relu=relu)
    return ops.add_relu(bn(conv(x)), shortcut)


class BasicBlock(Module):
    """conv3x3(stride) + BN + ReLU, conv3x3 + BN, plus the shortcut; then add and ReLU.

    The shortcut is the identity, or conv1x1(stride 2) + BN when the channel count changes.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int,
                 rng: np.random.Generator) -> None:
        super().__init__()
        self.conv1 = conv_bn(in_channels, out_channels, 3, stride, rng, relu=True)
        self.conv2 = conv_bn(out_channels, out_channels, 3, 1, rng, relu=False)
        if stride != 1 or in_channels != out_channels:
            self.id_mapping = conv_bn(in_channels, out_channels, 1, stride, rng, relu=False)
        else:
            self.id_mapping = None

    def forward(self, x: Tensor) -> Tensor:
        """x (N, C_in, H, W) -> (N, C_out, H / stride, W / stride)."""
        shortcut = x if self.id_mapping is None else _conv_bn_forward(self.id_mapping, x)
        return _conv_bn_forward(self.conv2, _conv_bn_forward(self.conv1, x), shortcut)


class ResNet20(Module):
    """ResNet-20: (N, 3, 32, 32) normalised images -> (N, 10) logits."""

    def __init__(self, num_classes: int = 10, rng: np.random.Generator | None = None) -> None:
        super().__init__()
        rng = rng if rng is not None else np.random.default_rng(0)
        self.head_conv = conv_bn(3, 16, 3, 1, rng, relu=True)
        blocks = []
        in_channels = 16
        for stage, channels in enumerate((16, 32, 64)):
            for index in range(3):
                stride = 2 if stage > 0 and index == 0 else 1
                blocks.append(BasicBlock(in_channels, channels, stride, rng))
                in_channels = channels
        self.body_op = Sequential(*blocks)
        self.final_fc = LinearLayer(64, num_classes, rng)

    def forward(self, x: Tensor) -> Tensor:
        if x.ndim != 4 or x.shape[1:] != (3, 32, 32):
            raise ValueError(f"ResNet20 expects images (N, 3, 32, 32), got {tuple(x.shape)}")
        out = _conv_bn_forward(self.head_conv, x)
        out = self.body_op(out)
        return self.final_fc(ops.global_avg_pool2d(out))


def resnet20(num_classes: int = 10, rng: np.random.Generator | None = None) -> ResNet20:
    """A freshly initialised ResNet-20 (use `load_state_dict` for the pretrained weights)."""
    return ResNet20(num_classes, rng)
