"""ResNet-20 that computes its convolutions in integers (u8 activations, int8 weights).

Built from a float `ResNet20` and the real range of each activation tensor (measured by
`compression.calibration`). Every conv + batch norm (+ ReLU) (+ residual add) becomes one
integer layer of `kernels/int8_reference.py` (`IntConv`):

* batch norm is folded into the conv: ``w' = a w`` and bias ``b'`` per output channel with
  ``a = gamma / sqrt(var + eps)``, ``b' = beta_bn - mean a`` (float64);
* weights on an asymmetric grid of at most 8 bits (a Lab 3 model: every non-zero weight of
  the tensor, or of each output channel, is ``beta + k step`` with integer k, pruned weights
  are exact zeros) keep their values exactly: the codes are k (zero where pruned), and the
  folded layer computes ``a step * A + a beta * B`` (see `int8_reference`), so the weights
  are used as trained, not re-quantized;
* any other weights (a float model) get symmetric int8 codes per output channel:
  ``step[o] = max|w'[o]| / 127``, codes ``round(w'[o] / step[o])``;
* the bias is an int32 at the A sum's scale, ``round(b' / (s_x step))``;
* each block's conv2 adds the shortcut (the block input's codes or the 1x1 conv's) in its
  epilogue, rescaled to the block output's scale, and clamps (ReLU).

What stays float: quantizing the normalised input images to u8 codes, and the end of the
network (the last block's codes back to real values, global average pool, the final linear
layer). Everything between is integer arithmetic.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial

import numpy as np

from minitorch_compress.data.transforms import normalize
from minitorch_compress.kernels import int8_conv
from minitorch_compress.kernels import int8_reference as ir
from minitorch_compress.kernels.select import kernel_choice
from minitorch_compress.models.resnet import ConvBN, ResNet20

#: A Lab 3 grid has at most this many bits (its codes then fit int8 after centring).
MAX_GRID_BITS = 8
#: How close (relative to the largest |w|) a weight must be to its grid level: float32
#: storage of levels computed in float64 is off by about 6e-8.
GRID_TOLERANCE = 1e-5



def _nchw_channels(q: np.ndarray, channels: int) -> np.ndarray:
    """NCHW codes stay as they are (they hold exactly `channels`)."""
    return q


@dataclass(frozen=True)
class IntKernel:
    """An integer conv layer implementation and the activation layout it works in.

    Attributes:
        conv: (codes, IntConv, residual codes or None) -> the output's codes.
        enter: (real values (N, C, H, W), scale, zero point) -> their codes in this layout.
        leave: (codes in this layout, channels) -> u8 codes (N, channels, H, W).
    """

    conv: Callable[..., np.ndarray]
    enter: Callable[[np.ndarray, float, int], np.ndarray] = ir.quantize
    leave: Callable[[np.ndarray, int], np.ndarray] = _nchw_channels


#: The integer conv layer implementations, by name, all computing
#: `int8_reference.conv_layer`'s codes bit for bit (tested): the int64 loop (slow, for
#: reading), the same integers from a float64 BLAS GEMM (`conv2d_int_via_float64`), both on
#: NCHW codes, and the numba kernel of `kernels/int8_conv.py` (AMX tiles or AVX-512 VNNI
#: where the CPU has them, `int8_isa()`) on channels-last codes with a zero-point border,
#: quantized into that layout at the network's input and converted back once at its output.
INT8_KERNELS: dict[str, IntKernel] = {
    "reference": IntKernel(ir.conv_layer),
    "reference_blas": IntKernel(partial(ir.conv_layer, exact_gemm=ir.conv2d_int_via_float64)),
    "fast": IntKernel(int8_conv.conv_padded, int8_conv.quantize_padded, int8_conv.from_padded),
}

#: What the kernel switch (`kernels/select.py`) picks when a model names no kernel: the int64
#: loop and its BLAS twin compute the same integers, the twin in seconds on 10,000 images.
SWITCHED = {"fast": "fast", "reference": "reference_blas"}


# ------------------------------------------------------------------ weights
@dataclass(frozen=True)
class WeightGrid:
    """A weight tensor w (K, C, kh, kw) as ``mask * (step[o] * codes + beta[o])``.

    Attributes:
        codes: int64 k, same shape as w, 0 where the mask is 0.
        mask: uint8 0/1 (w != 0).
        step, beta: float64 (K,), the grid of each output channel.
        bits: the fewest bits whose grid holds every channel's non-zero values.
    """

    codes: np.ndarray
    mask: np.ndarray
    step: np.ndarray
    beta: np.ndarray
    bits: int


def _grid_of(values: np.ndarray, tolerance: float) -> tuple[float, float, np.ndarray, int] | None:
    """(step, beta, codes, bits) of the smallest grid beta + k step, k in [0, 2^bits - 1],
    with beta = min and the top level = max that holds all `values` (1-D, non-empty), or
    None when no grid of at most MAX_GRID_BITS bits does."""
    low, high = values.min(), values.max()
    if high == low:
        return 0.0, float(low), np.zeros(values.shape, np.int64), 0
    for bits in range(1, MAX_GRID_BITS + 1):
        step = (high - low) / (2**bits - 1)
        codes = np.round((values - low) / step)
        if np.abs(codes * step + low - values).max() <= tolerance:
            return float(step), float(low), codes.astype(np.int64), bits
    return None


def find_grid(w: np.ndarray) -> WeightGrid | None:
    """The asymmetric grid of at most 8 bits that w's non-zero weights sit on, if any.

    Tried for the whole tensor (the Lab 3 quantizers' grid), then for each output channel.

    Args:
        w: weights (K, C, kh, kw).

    Returns:
        The WeightGrid (one step/beta per tensor broadcast to (K,), or per channel), or None.
    """
    w = np.asarray(w, np.float64)
    mask = (w != 0).astype(np.uint8)
    tolerance = GRID_TOLERANCE * max(float(np.abs(w).max()), 1e-30)
    k = w.shape[0]
    codes = np.zeros(w.shape, np.int64)
    nonzero = mask.astype(bool)
    if not nonzero.any():
        return WeightGrid(codes, mask, np.zeros(k), np.zeros(k), 0)
    whole = _grid_of(w[nonzero], tolerance)
    if whole is not None:
        step, beta, codes[nonzero], bits = whole
        return WeightGrid(codes, mask, np.full(k, step), np.full(k, beta), bits)
    steps, betas, widths = np.zeros(k), np.zeros(k), []
    for o in range(k):
        kept = nonzero[o]
        if not kept.any():
            continue
        grid = _grid_of(w[o][kept], tolerance)
        if grid is None:
            return None
        steps[o], betas[o], codes[o][kept], bits = grid
        widths.append(bits)
    return WeightGrid(codes, mask, steps, betas, max(widths))


def fold_batch_norm(layer: ConvBN) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(w, a, b) in float64: the conv's effective weight (K, C, kh, kw) and the eval batch
    norm's per-channel factor a and offset b (K,), so that BN(conv(x, w)) = a conv(x, w) + b."""
    conv, bn = layer[0].conv, layer[1]
    w = np.asarray(conv.effective_weight().data, np.float64)
    a = np.asarray(bn.weight.data, np.float64) / np.sqrt(
        np.asarray(bn.running_var, np.float64) + bn.eps)
    b = np.asarray(bn.bias.data, np.float64) - np.asarray(bn.running_mean, np.float64) * a
    if conv.bias is not None:
        b = b + a * np.asarray(conv.bias.data, np.float64)
    return w, a, b


@dataclass(frozen=True)
class Codes:
    """Scale and zero point of one u8 activation tensor: real = scale * (code - zero_point)."""

    scale: float
    zero_point: int

    @classmethod
    def covering(cls, low: float, high: float) -> Codes:
        """The u8 grid over [low, high] (widened to include 0), `int8_reference.choose_scale`."""
        return cls(*ir.choose_scale(low, high))


def integer_conv(layer: ConvBN, x: Codes, out: Codes, relu: bool,
                 residual: Codes | None = None) -> tuple[ir.IntConv, str]:
    """One ConvBN as an integer layer.

    Args:
        layer: the float conv + batch norm.
        x, out: the input's and output's codes.
        relu: whether the output is clamped at real 0.
        residual: the codes of a residual added before the clamp (a block's conv2), or None.

    Returns:
        (IntConv, how its weights were coded: "grid<b>" for a b-bit grid used exactly,
        "s8" for per-channel symmetric int8).
    """
    w, a, b = fold_batch_norm(layer)
    grid = find_grid(w)
    if grid is not None:
        codes, mask = grid.codes.copy(), grid.mask
        step, beta = a * grid.step, a * grid.beta
        if codes.max() > 127:  # an 8-bit grid: centre k in [0, 255] to [-128, 127]
            codes -= 128 * mask
            beta = beta + 128 * step
        kind = f"grid{grid.bits}"
    else:
        folded = w * a[:, None, None, None]
        step = np.abs(folded).reshape(len(a), -1).max(axis=1) / 127
        safe = np.where(step == 0, 1.0, step)
        codes = np.round(folded / safe[:, None, None, None]).astype(np.int64)
        mask, beta, kind = None, None, "s8"
    dead = step == 0  # a channel whose weights are all 0 (or whose BN factor is 0)
    codes[dead] = 0
    step = np.where(dead, 1.0, step)
    bias = np.round(b / (x.scale * step))
    int_layer = ir.IntConv(
        weight=codes.astype(np.int8),
        bias=np.clip(bias, -(2**30), 2**30).astype(np.int32),
        scale_a=ir.Requant.from_real(np.where(dead, 0.0, x.scale * step / out.scale)),
        mask=mask,
        scale_b=None if mask is None else ir.Requant.from_real(x.scale * beta / out.scale),
        stride=layer[0].conv.stride, padding=layer[0].conv.padding,
        in_zero_point=x.zero_point, out_zero_point=out.zero_point, relu=relu,
        residual_scale=None if residual is None else ir.Requant.from_real(
            np.float64(residual.scale / out.scale)),
        residual_zero_point=0 if residual is None else residual.zero_point)
    return int_layer, kind


# ------------------------------------------------------------------ the network
@dataclass(frozen=True)
class IntBlock:
    """A basic block in integers: conv1 (ReLU), the optional 1x1 shortcut conv, and conv2
    with the shortcut added and the ReLU clamp in its epilogue."""

    conv1: ir.IntConv
    conv2: ir.IntConv
    id_mapping: ir.IntConv | None


@dataclass
class Int8ResNet20:
    """Integer ResNet-20: normalised float images (N, 3, 32, 32) -> (N, 10) float logits.

    Attributes:
        input_codes: how the images are quantized (the one float -> u8 step).
        head: the head conv layer.
        blocks: the 9 blocks.
        output_codes: scale and zero point of the last block's output.
        fc_weight, fc_bias: the final linear layer, float64 (10, 64) and (10,).
        weight_kinds: {ConvBN name: "grid<b>" or "s8"}, how each layer's weights are coded.
        kernel: the name of the integer conv implementation in `INT8_KERNELS`, or None (the
            default) to follow the kernel switch (`use_kernels`): "fast" under the fast
            kernels, "reference_blas" under the reference ones. Every choice gives the same
            codes.
    """

    input_codes: Codes
    head: ir.IntConv
    blocks: list[IntBlock]
    output_codes: Codes
    fc_weight: np.ndarray
    fc_bias: np.ndarray
    weight_kinds: dict[str, str] = field(default_factory=dict)
    kernel: str | None = None

    def named_layers(self) -> list[tuple[str, ir.IntConv]]:
        """[(the float model's ConvBN name, its integer layer)] in the order they run."""
        layers = [("head_conv", self.head)]
        for i, block in enumerate(self.blocks):
            layers.append((f"body_op.{i}.conv1", block.conv1))
            if block.id_mapping is not None:
                layers.append((f"body_op.{i}.id_mapping", block.id_mapping))
            layers.append((f"body_op.{i}.conv2", block.conv2))
        return layers

    def codes(self, x: np.ndarray) -> np.ndarray:
        """Normalised images (N, 3, 32, 32) -> the last block's u8 codes (N, 64, 8, 8).

        The input is quantized straight into the kernel's layout and left once at the end;
        every layer between reads and writes codes in that layout."""
        kernel = INT8_KERNELS[self.kernel or SWITCHED[kernel_choice()]]
        conv = kernel.conv
        q = kernel.enter(x, self.input_codes.scale, self.input_codes.zero_point)
        q = conv(q, self.head)
        for block in self.blocks:
            inner = conv(q, block.conv1)
            shortcut = q if block.id_mapping is None else conv(q, block.id_mapping)
            q = conv(inner, block.conv2, shortcut)
        return kernel.leave(q, self.fc_weight.shape[1])  # the last codes' channels

    def logits(self, x: np.ndarray) -> np.ndarray:
        """Normalised images (N, 3, 32, 32) -> float64 logits (N, 10): integer body, then
        the float global average pool and linear layer."""
        features = ir.dequantize(self.codes(x), self.output_codes.scale,
                                 self.output_codes.zero_point).mean(axis=(2, 3))
        return features @ self.fc_weight.T + self.fc_bias


def build_int8_resnet(model: ResNet20, ranges: dict[str, tuple[float, float]]) -> Int8ResNet20:
    """The integer version of a float ResNet-20.

    Args:
        model: the float model (standard or Lab 4 block widths; its weights are read).
        ranges: {tensor name: (low, high)} for "input", "head_conv", "body_op.<i>.conv1",
            "body_op.<i>.id_mapping" (blocks with a shortcut conv) and "body_op.<i>"
            (see `compression.calibration`).

    Raises:
        KeyError: a tensor's range is missing.
    """
    codes = {name: Codes.covering(*interval) for name, interval in ranges.items()}
    kinds = {}
    head, kinds["head_conv"] = integer_conv(model.head_conv, codes["input"],
                                            codes["head_conv"], relu=True)
    blocks, previous = [], codes["head_conv"]
    for i, block in enumerate(model.body_op):
        name = f"body_op.{i}"
        conv1, kinds[f"{name}.conv1"] = integer_conv(block.conv1, previous,
                                                     codes[f"{name}.conv1"], relu=True)
        shortcut_codes, id_mapping = previous, None
        if block.id_mapping is not None:
            shortcut_codes = codes[f"{name}.id_mapping"]
            id_mapping, kinds[f"{name}.id_mapping"] = integer_conv(
                block.id_mapping, previous, shortcut_codes, relu=False)
        conv2, kinds[f"{name}.conv2"] = integer_conv(
            block.conv2, codes[f"{name}.conv1"], codes[name], relu=True,
            residual=shortcut_codes)
        blocks.append(IntBlock(conv1, conv2, id_mapping))
        previous = codes[name]
    fc = model.final_fc.linear
    return Int8ResNet20(
        input_codes=codes["input"], head=head, blocks=blocks, output_codes=previous,
        fc_weight=np.asarray(fc.weight.data, np.float64),
        fc_bias=np.asarray(fc.bias.data, np.float64), weight_kinds=kinds)


def predict_int8(model: Int8ResNet20, images: np.ndarray, batch_size: int = 500) -> np.ndarray:
    """Predicted classes (N,) of raw uint8 images (N, 3, 32, 32), `batch_size` at a time."""
    predictions = np.empty(len(images), np.int64)
    for start in range(0, len(images), batch_size):
        x = normalize(images[start:start + batch_size])
        predictions[start:start + len(x)] = model.logits(x).argmax(axis=1)
    return predictions
