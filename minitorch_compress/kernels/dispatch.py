"""Which fast kernel computes each convolution: the whole choice, in one table.

Per op and direction, the kernel, when it runs, and why (float32 is what training and
inference use; float64 is what grad checks use):

conv forward, plain or with the fused inference epilogue (batch norm, residual, ReLU)
    `TILED_3X3`           float32, 3x3, stride 1 or 2, any K and width (K is padded to a
                          multiple of 4 with zero filters, Wo to 8): the sums stay in
                          vector registers for the whole reduction; fastest at every
                          ResNet-20 size (results/benchmark.md).
    `IM2COL_GEMM`         everything else (1x1, float64, other kernels and strides): one
                          BLAS GEMM per chunk of images.
conv grad-input
    the forward's kernel  stride 1, kh == kw, padding <= kh - 1: a forward conv of grad_y
                          with flipped, channel-swapped weights, so it contracts over
                          K*kh*kw like the forward and gathers instead of scattering.
    `GEMM_COL2IM`         otherwise (ResNet-20: stride 2): w2d.T @ grad_y, then a
                          scatter-add.
conv grad-weight
    `DIRECT_GRAD_WEIGHT`  float32, 3x3, stride 1 or 2, any C, on CPUs with 32 vector
                          registers: no cols buffer; a tile of 3 output channels x 9 taps
                          x one vector of input channels in registers (channels-last copy
                          of the input); faster than im2col at every ResNet-20 size
                          (`benchmarks/bench_direct_conv.py` times both per layer).
    `GEMM_GRAD_WEIGHT`    otherwise (float64, 1x1, other strides, 16 vector registers):
                          cols @ grad_y.T, one GEMM per chunk of images.
sparse conv (inference of pruned models, `models.resnet.to_sparse`)
    `SPARSE_TILED`        float32, any kernel size and stride: tiles of 8 position vectors
                          of one output channel, the sums in registers across its non-zeros
                          (vectors of `sparse_lanes` floats).
    `IM2COL_GEMM`         float64: the dense forward of the decoded weights.
    Which convs of a model take the sparse path at all is decided by the break-even
    sparsity measured on this CPU (`kernels/sparse_break_even.py`).

Four choices depend on the CPU, all by whether it has AVX-512 (and so 32 vector
registers, `common.has_32_vector_registers`): `TILE_VECTORS`, the register tile of
`TILED_3X3` (4 output channels x 4 position vectors with 32 registers, x 3 with 16);
`forward_lanes`, the width of its position vectors (16 floats, one 512-bit register, on
AVX-512 for every output but a stride-2 one narrower than 16, else 8); whether
`DIRECT_GRAD_WEIGHT` runs at all (`DIRECT_GRAD_WEIGHT_FITS`); and `grad_weight_lanes`, the
width of its input-channel vectors (16 on AVX-512 where that pads C to no more channels
than 8 would, else 8).

So ResNet-20 in float32 (`RESNET20_CONVS` lists the shapes; tests/test_dispatch.py checks
every row): every 3x3 forward and every stride-1 grad-input runs `TILED_3X3`; the two 1x1
stride-2 shortcuts run `IM2COL_GEMM` forward; every stride-2 grad-input runs
`GEMM_COL2IM`; with 32 vector registers every 3x3 grad-weight runs `DIRECT_GRAD_WEIGHT`
(the head conv's 3 input channels on 8-lane vectors, the rest on 16) and the two 1x1 ones
`GEMM_GRAD_WEIGHT` (with 16 registers, all of them). At inference of a pruned model, every
3x3 conv (stride 1 or 2) whose sparsity reaches its shape's measured break-even runs
`SPARSE_TILED`. The kernels themselves are in `direct_conv_tiled.py`, `conv.py`,
`direct_conv.py` and `sparse_conv.py`.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from minitorch_compress.kernels.common import has_32_vector_registers

TILED_3X3 = "tiled3x3"  # direct_conv_tiled.tiled3x3_forward_serial
IM2COL_GEMM = "im2col_gemm"  # conv._forward_cols
GEMM_COL2IM = "gemm_col2im"  # conv._backward_serial: w2d.T @ grad_y, then conv._col2im
DIRECT_GRAD_WEIGHT = "direct_grad_weight"  # direct_conv.direct3x3_grad_weight_serial
GEMM_GRAD_WEIGHT = "gemm_grad_weight"  # conv._backward_serial: cols @ grad_y.T
SPARSE_TILED = "sparse_tiled"  # sparse_conv._sparse_tiled

#: Every kernel the table can name.
KERNELS = (TILED_3X3, IM2COL_GEMM, GEMM_COL2IM, DIRECT_GRAD_WEIGHT, GEMM_GRAD_WEIGHT,
           SPARSE_TILED)

# Position vectors in one `TILED_3X3` tile: 4 (16 sums + 4 inputs + 1 weight = 21
# registers) with 32 vector registers, else 3 (12 + 3 + 1 = AVX2's 16).
TILE_VECTORS = 4 if has_32_vector_registers() else 3
# 16-lane position vectors for `TILED_3X3` (`forward_lanes`): AVX-512 CPUs only; elsewhere
# LLVM would split each 512-bit operation into two 256-bit ones.
WIDE_VECTORS = has_32_vector_registers()
# `DIRECT_GRAD_WEIGHT`'s tile holds 27 sums + 3 broadcasts + 1 input vector: 31 registers.
# With 16 they would spill on every multiply-add, so such CPUs keep im2col + GEMM.
DIRECT_GRAD_WEIGHT_FITS = has_32_vector_registers()


def forward_kernel(kh: int, kw: int, stride: int, dtype: np.dtype) -> str:
    """The kernel of a conv forward (plain or with the fused inference epilogue)."""
    if np.dtype(dtype) == np.float32 and (kh, kw) == (3, 3) and stride in (1, 2):
        return TILED_3X3
    return IM2COL_GEMM


def forward_lanes(ho: int, wo: int, stride: int) -> int:
    """Floats in one position vector of `TILED_3X3` for an Ho x Wo output: 16 where the CPU
    has AVX-512 (`WIDE_VECTORS`) and either Wo is a multiple of 16 (a vector is 16 outputs
    of one row) or the conv has stride 1 and Ho*Wo >= 16 (the flat layout, where a vector
    may span rows: `direct_conv_tiled._pack_shifted`); else 8.

    Measured per ResNet-20 shape (rocketlake, batch 100, 16 lanes against 8): 1.2-1.3x at
    32x32 and 16x16, 1.1x at 8x8 stride 1 (flat), 0.65x at stride 2 into 8x8, where 16
    lanes would pad each 8-wide row to 16 (results/benchmark.md)."""
    if not WIDE_VECTORS:
        return 8
    return 16 if wo % 16 == 0 or (stride == 1 and ho * wo >= 16) else 8


def grad_input_kernel(kh: int, kw: int, stride: int, padding: int, dtype: np.dtype) -> str:
    """The kernel of a conv's input gradient: at stride 1 (square kernel, padding <= kh - 1)
    the forward kernel of the flipped conv, which has stride 1 too; else `GEMM_COL2IM`."""
    if stride == 1 and kh == kw and padding <= kh - 1:
        return forward_kernel(kh, kw, 1, dtype)
    return GEMM_COL2IM


def grad_weight_kernel(kh: int, kw: int, stride: int, dtype: np.dtype) -> str:
    """The kernel of a conv's weight gradient."""
    if (DIRECT_GRAD_WEIGHT_FITS and np.dtype(dtype) == np.float32 and (kh, kw) == (3, 3)
            and stride in (1, 2)):
        return DIRECT_GRAD_WEIGHT
    return GEMM_GRAD_WEIGHT


def grad_weight_lanes(in_channels: int) -> int:
    """Input channels in one vector of `DIRECT_GRAD_WEIGHT` (C is padded to a multiple of
    it with zero channels): 16 where the CPU has AVX-512 (`WIDE_VECTORS`) and 16 lanes pad C
    to no more channels than 8 would (C = 16, 32, 64, 12; not 3 or 20), else 8.

    Measured (rocketlake, 1 thread, batch 128, against the 8-lane kernel): 1.3-1.4x at
    ResNet-20's 16, 32 and 64 channels; 0.6x at 3 channels (padded to 16 instead of 8)."""
    if not WIDE_VECTORS:
        return 8
    return 16 if -(-in_channels // 16) * 16 <= -(-in_channels // 8) * 8 else 8


def sparse_forward_kernel(dtype: np.dtype) -> str:
    """The kernel of a sparse conv at inference (`sparse_conv.sparse_conv2d_forward`)."""
    return SPARSE_TILED if np.dtype(dtype) == np.float32 else IM2COL_GEMM


def sparse_lanes(wo: int) -> int:
    """Floats in one position vector of `SPARSE_TILED` for an output Wo wide: 16 where the
    CPU has AVX-512 (`WIDE_VECTORS`) and Wo is a multiple of 16, else 8. Unlike
    `forward_lanes`, an 8-wide plane stays on 8 lanes: 16-lane vectors spanning rows need
    three shifted copies of the input (the flat layout), and the sparse tile ran 2x slower
    on them (rocketlake, 64x8x8 at 80 %).

    Measured per ResNet-20 shape at 65-95 % sparsity (rocketlake, 1 thread, 16 lanes
    against 8): 1.07-1.16x at stride 1 into 32x32 and 16x16, 1.03-1.07x at stride 2 into
    16x16 (results/benchmark.md)."""
    return 16 if WIDE_VECTORS and wo % 16 == 0 else 8


class ConvShape(NamedTuple):
    """One conv of ResNet-20: channels in and out, input size, kernel, stride, padding."""

    name: str
    c: int
    k: int
    size: int
    kernel: int
    stride: int
    padding: int


#: The distinct conv shapes of ResNet-20 on CIFAR-10 (32x32 inputs), in model order.
RESNET20_CONVS = (
    ConvShape("head_conv", 3, 16, 32, 3, 1, 1),
    ConvShape("stage 1 conv", 16, 16, 32, 3, 1, 1),
    ConvShape("stage 2 first conv1", 16, 32, 32, 3, 2, 1),
    ConvShape("stage 2 shortcut", 16, 32, 32, 1, 2, 0),
    ConvShape("stage 2 conv", 32, 32, 16, 3, 1, 1),
    ConvShape("stage 3 first conv1", 32, 64, 16, 3, 2, 1),
    ConvShape("stage 3 shortcut", 32, 64, 16, 1, 2, 0),
    ConvShape("stage 3 conv", 64, 64, 8, 3, 1, 1),
)
