"""The fast integer conv layer on AMX tiles: the same padded codes in and out, the same packed
weights and the same epilogue as the VNNI kernel (`kernels/int8_conv.py`), with the sums
done by ``tdpbusd`` (`kernels/amx.py`), bit for bit `int8_reference.conv_layer`.

No im2col: a conv is a sum over the kernel's rows ky of tile products
[positions x (kx, input channel)] x [(kx, input channel) x output channels]. For one row ky
the inputs of an output position are kw neighbouring pixels of the padded codes, whose
kw x CP bytes lie side by side in memory; the next position's start `step` pixels further
on (its stride). So the A tile (one row per position) is loaded straight from the
activations with a row stride of step x CP bytes, the rows overlapping, and the B tile
straight from `PackedConv.w32`, whose [ky, kx, g, k] layout already holds, for one ky, the
(kx, g) rows of 4-channel groups in the VNNI layout tdpbusd reads. A row's kw x CP bytes go
in chunks of `chunk` bytes (at most 64, a tile row), one tdpbusd each.

Blocks of positions (`positions` rows of a tile, at most 16):

* stride 1: consecutive positions of the padded image taken as one long row of Wp pixels
  (Wp = Wo + 2 for a conv with padding 1), so a block may run on into the next output row;
  the positions that fall on the Wp - Wo border columns are computed and not stored;
* stride 2: blocks within one output row (step 2 pixels).

The last block of a range starts early so it stays inside (some positions are computed
twice, with the same result). Tiles: 0-3 the int32 sums of up to 4 blocks of 16 packed
output channels (a grid layer's mask channels are further packed channels), 4 the
positions' codes, 5 and 6 the weights. The sums go through a small int32 scratch array
(`tile_store`) to the epilogue (`int8_epilogue.finish`), 16 channels of one position at a
time. Each thread loads the tile configuration itself and releases the tiles at the end.

Call only where `amx.amx_available()` (`int8_conv.default_kernel()` checks).
"""

from __future__ import annotations

import functools

import numpy as np
from numba import njit

from minitorch_compress.kernels.amx import (
    ROW_BYTES,
    ROWS,
    tile_config,
    tile_config_bytes,
    tile_dpbusd,
    tile_load,
    tile_release,
    tile_store,
    tile_zero,
)
from minitorch_compress.kernels.int8_epilogue import channel_epilogue, finish
from minitorch_compress.kernels.simd_int8 import (
    LANES,
    ibroadcast,
    iload,
    iload_u8,
    istore_u8,
    izero,
)

BLOCK_CHANNELS = 4 * LANES  # packed output channels per pass: 4 sum tiles of 16


def chunk_bytes(row_bytes: int) -> int:
    """The tile row's width for a kernel row of `row_bytes` = kw x CP bytes: the largest
    multiple of 4 that divides it and is at most 64."""
    return next(c for c in range(ROW_BYTES, 0, -4) if row_bytes % c == 0)


def block_positions(stride: int, out_height: int, out_width: int, padded_width: int) -> int:
    """Positions per block: 16, or fewer when a range has fewer (a row of Wo positions for
    stride > 1; for stride 1 the (Ho - 1) Wp + Wo positions of the padded image's rows)."""
    span = (out_height - 1) * padded_width + out_width if stride == 1 else out_width
    return min(ROWS, span)


@functools.cache
def tile_setup(positions: int, chunk: int) -> np.ndarray:
    """The tile configuration: sums 0-3 (positions x 16 int32), codes 4 (positions x chunk
    bytes), weights 5 and 6 (chunk / 4 groups x 16 channels x 4 bytes). Kept once per
    shape (read only)."""
    shapes = {t: (positions, ROW_BYTES) for t in range(4)}
    shapes[4] = (positions, chunk)
    shapes[5] = shapes[6] = (chunk // 4, ROW_BYTES)
    cfg = tile_config_bytes(shapes)
    cfg.flags.writeable = False
    return cfg


@njit(nogil=True, cache=True, inline="always")
def _sums(x8, w32, sums, base, first, step, wp, kh, row_bytes, chunk, packed, k0, blocks):
    """sums[base + m * packed + k0 + k] (k < 16 blocks) = the raw sums of the block's
    positions m (the first's codes at byte `first` of x8, the next `step` bytes on) over the
    packed channels k0..k0 + 16 blocks."""
    cp = x8.shape[3]
    tile_zero(0)
    if blocks > 1:
        tile_zero(1)
    if blocks > 2:
        tile_zero(2)
    if blocks > 3:
        tile_zero(3)
    for ky in range(kh):
        row = first + ky * wp * cp
        for c0 in range(0, row_bytes, chunk):
            tile_load(4, x8, row + c0, step)
            # w32 row of (ky, kx, g) with 4 (kx * G + g) = the byte offset within the row
            w = (ky * row_bytes + c0) // 4 * packed + k0
            tile_load(5, w32, w, 4 * packed)
            tile_dpbusd(0, 4, 5)
            if blocks > 1:
                tile_load(6, w32, w + LANES, 4 * packed)
                tile_dpbusd(1, 4, 6)
            if blocks > 2:
                tile_load(5, w32, w + 2 * LANES, 4 * packed)
                tile_dpbusd(2, 4, 5)
            if blocks > 3:
                tile_load(6, w32, w + 3 * LANES, 4 * packed)
                tile_dpbusd(3, 4, 6)
    tile_store(0, sums, base + k0, 4 * packed)
    if blocks > 1:
        tile_store(1, sums, base + k0 + LANES, 4 * packed)
    if blocks > 2:
        tile_store(2, sums, base + k0 + 2 * LANES, 4 * packed)
    if blocks > 3:
        tile_store(3, sums, base + k0 + 3 * LANES, 4 * packed)


def _make_kernel(bounded):
    """The AMX conv kernel (module docstring) for layers whose `PackedConv.bounded` is
    `bounded`."""

    @njit(nogil=True, cache=True)
    def conv(x8, w32, ep, settings, residual, out8, cfg, positions, chunk):
        """out8 (N, Ho + 2, Wo + 2, KA) = the layer's padded output codes for the padded
        input codes x8 (N, Hp, Wp, CP) and the residual's padded codes (same shape as out8,
        or a placeholder); w32, ep, settings: the layer's `PackedConv`; cfg: `tile_setup`
        of `positions` and `chunk`."""
        n, hp, wp, cp = x8.shape
        _, ho, wo, c = out8.shape
        ho, wo = ho - 2, wo - 2
        kh, kw, stride, skip, has_b, has_residual = settings[:6]
        residual_zero, residual_multiplier, left, right, z_out, low = settings[6:]
        packed = ep.shape[1]
        row_bytes = kw * cp
        rescale = (has_residual != 0, (ibroadcast(-residual_zero),
                   ibroadcast(residual_multiplier), ibroadcast(left), ibroadcast(right)))
        no_residual = izero()
        # the sums from sums[base] on, base at a 64-byte boundary (a tile row that
        # straddles two cache lines costs a second access)
        sums = np.empty(positions * packed + LANES, np.int32)
        base = (-sums.ctypes.data % 64) // 4
        where = np.empty(positions, np.int64)
        # stride 1: one range of positions over the padded image's rows (row length wp);
        # else one range per output row (row length wo)
        rows = 1 if stride == 1 else ho
        span = (ho - 1) * wp + wo if stride == 1 else wo
        line = wp if stride == 1 else wo
        tile_config(cfg)
        for b in range(n):
            out8[b, 0, :, :] = z_out
            out8[b, ho + 1, :, :] = z_out
            out8[b, :, 0, :] = z_out
            out8[b, :, wo + 1, :] = z_out
            for i in range(rows):
                for start in range(0, span, positions):
                    p0 = min(start, span - positions)
                    # the block's first position's codes, in bytes
                    first = ((b * hp + skip + i * stride) * wp + skip + p0 * stride) * cp
                    for k0 in range(0, packed, BLOCK_CHANNELS):
                        blocks = min(4, (packed - k0) // LANES)
                        _sums(x8, w32, sums, base, first, stride * cp, wp, kh, row_bytes,
                              chunk, packed, k0, blocks)
                    # where each position's codes go (-1: a border column of the long row,
                    # not an output), found without a division per position
                    row, column = i + p0 // line, p0 % line
                    for m in range(positions):
                        where[m] = -1 if column >= wo else (
                            ((b * (ho + 2) + row + 1) * (wo + 2) + column + 1) * c)
                        column += 1
                        if column == line:
                            row, column = row + 1, 0
                    for k in range(0, c, LANES):
                        epilogue = channel_epilogue(ep, k, c, has_b != 0, rescale, z_out, low)
                        for m in range(positions):
                            at = where[m]
                            if at < 0:
                                continue
                            total = base + m * packed + k
                            sum_b = iload(sums, total + c) if has_b != 0 else no_residual
                            r = iload_u8(residual, at + k) if has_residual != 0 else no_residual
                            istore_u8(out8, at + k, finish(iload(sums, total), sum_b, r,
                                                           epilogue, bounded))
        tile_release()

    return conv


#: PackedConv.bounded -> the compiled kernel.
KERNELS = {bounded: _make_kernel(bounded) for bounded in (False, True)}
