"""Deep Compression's pipeline on a ResNet-20: prune, quantize, entropy-code, and what each
stage is worth in bytes.

`compress_model` applies the two lossy stages the labs use (Lab 2 (b)'s per-layer pruning,
Lab 3 (d)'s mask-aware quantization of the body) and `stage_sizes` measures the stages the
way Deep Compression's table does:

* ``float32``: 4 bytes for every parameter and buffer the model holds;
* ``sparse``: a fixed-width relative index (the best width per layer) and the non-zeros in
  float32, everything else raw;
* ``sparse+quantized``: the same index and b-bit codes into each layer's levels;
* ``sparse+quantized+huffman``: the ``.mtc`` file itself (Huffman-coded index and codes,
  headers, CRCs and all);
* ``lzma_of_float32``: the general-purpose baseline, stdlib ``lzma`` on the float32 bytes.
"""

from __future__ import annotations

import lzma
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from minitorch_compress.compression.masks import weight_layers
from minitorch_compress.compression.prune import prune_model_by_percentage
from minitorch_compress.compression.quant import (
    QuantMode,
    set_bits_per_layer,
    set_weight_quantization,
)
from minitorch_compress.io import mtc

QUANTIZED_LAYERS = "body"  # Lab 3's choice: every conv of the residual blocks


def compress_model(model: Any, prune: float | None = None, bits: int | None = None,
                   mode: QuantMode = "masked",
                   bits_per_layer: Mapping[str, int] | None = None) -> Any:
    """Prune (per layer, the `prune` fraction of each prunable layer by magnitude, Lab 2 (b))
    and quantize (the body to `bits` bits, Lab 3 (d)'s mask-aware quantizer by default; then
    each layer `bits_per_layer` names to its own width: mixed precision), in place; returns
    the model."""
    if prune is not None:
        prune_model_by_percentage(model, prune)
    if bits is not None:
        set_weight_quantization(model, bits, QUANTIZED_LAYERS, mode)
    if bits_per_layer:
        set_bits_per_layer(model, bits_per_layer, mode)
    return model


def float32_bytes(model: Any) -> int:
    """4 bytes times every parameter and buffer of the model (its float32 size)."""
    return 4 * sum(np.asarray(v).size for v in model.state_dict().values())


def stage_sizes(model: Any, report: mtc.SaveReport) -> dict[str, int]:
    """Bytes of each Deep Compression stage for `model`, whose file `report` describes."""
    state = mtc.inference_state(model)
    layers = {f"{name}.weight" for name in weight_layers(model)}
    dense = sum(np.asarray(v).size * 4 for k, v in state.items() if k not in layers)
    sparse = quantized = dense
    for name in layers:
        w = state[name].ravel()
        nonzero = np.flatnonzero(w)
        index = min([-(-w.size // 8)] + [-(-mtc.gaps_of(nonzero, width).size * width // 8)
                                         for width in range(1, 9)])
        levels = np.unique(w[nonzero])
        sparse += index + 4 * nonzero.size
        if levels.size <= mtc.MAX_CODEBOOK:
            bits = max(1, int(np.ceil(np.log2(max(levels.size, 2)))))
            quantized += index + -(-nonzero.size * bits // 8) + 4 * levels.size
        else:
            quantized += index + 4 * nonzero.size
    raw = b"".join(np.ascontiguousarray(v, dtype=np.float32).tobytes() for v in state.values())
    return {"float32": float32_bytes(model), "sparse": sparse, "sparse+quantized": quantized,
            "sparse+quantized+huffman": report.total,
            "lzma_of_float32": len(lzma.compress(raw, preset=9 | lzma.PRESET_EXTREME))}


def _entropy_bits(symbols: np.ndarray) -> float:
    """Order-0 empirical entropy of a symbol stream, in bits for the whole stream."""
    if symbols.size == 0:
        return 0.0
    _, counts = np.unique(symbols, return_counts=True)
    return float(-(counts * np.log2(counts / counts.sum())).sum())


def entropy_bytes(path: str | Path) -> dict[str, int]:
    """What the file's two coded streams would take at their empirical (order-0, per tensor)
    entropy, the bound no symbol-by-symbol code of the same symbols can beat.

    ``index``: the gaps between stored entries (those that differ from the tensor's fill,
    usually 0; no fillers: the ideal alphabet), summed over the tensors the file indexes;
    ``codes``: each stored weight's level, over the tensors stored as codes. Both are rounded
    up to whole bytes per tensor; tables are not counted.
    """
    loaded = mtc.load(path)
    bound = {"index": 0, "codes": 0}
    for name, record in loaded.header["tensors"].items():
        flat = loaded.state[name].ravel()
        nonzero = np.flatnonzero(flat != mtc.fill_of(record))
        if record["index"]["kind"] != "all":
            gaps = np.diff(np.concatenate([[-1], nonzero])) - 1
            bound["index"] += -(-int(np.ceil(_entropy_bits(gaps))) // 8)
        if record["values"]["kind"] in ("affine", "codebook"):
            stored = flat if record["index"]["kind"] == "all" else flat[nonzero]
            codes = np.unique(stored, return_inverse=True)[1]
            bound["codes"] += -(-int(np.ceil(_entropy_bits(codes))) // 8)
    return bound


def write_model_file(model: Any, path: str | Path, fold_batch_norm: bool = False,
                     activation_ranges: mtc.ActivationRanges | None = None) -> dict[str, Any]:
    """Save `model` as ``.mtc`` (with `fold_batch_norm`, its batch norms folded: inference
    only; with `activation_ranges`, those for integer inference: `mtc.save`) and return its
    sizes: {"bytes", "float32_bytes" (of the unfolded model either way), "ratio", "stages",
    "parts" (index, codes, codebook, values, dense, header), "encodings", "entropy"
    (`entropy_bytes`)}."""
    report = mtc.save(path, model, fold_batch_norm=fold_batch_norm,
                      activation_ranges=activation_ranges)
    stages = stage_sizes(model, report)
    return {"bytes": report.total, "float32_bytes": stages["float32"],
            "ratio": stages["float32"] / report.total, "stages": stages,
            "parts": {"index": report.index, "codes": report.codes,
                      "codebook": report.codebook, "float32 non-zeros": report.values,
                      "dense tensors": report.dense, "header": report.header},
            "encodings": report.encodings, "entropy": entropy_bytes(path)}
