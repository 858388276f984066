"""What would make a model file smaller still: each option measured on a real ``.mtc`` file.

`shrink_options` takes a written file and, one option at a time against the file as it is,
measures the bytes each would save and, for the lossy ones, the test accuracy it would cost:

* **index / codes at their order-0 entropy** (exact): what an arithmetic or ANS coder over
  the same symbols could reach at best (`pipeline.entropy_bytes`), against the Huffman
  streams with their tables.
* **header without its section table** (exact): each tensor's section length is the sum of
  the part lengths its record already lists, and the sections follow each other, so only
  the dense section's length and the CRCs need stating.
* **batch norm folded for inference** (exact for inference; a real file mode,
  ``compress --fold-batch-norm``, so the saving is that file's size against this one's):
  eval-mode batch norm computes
  ``x*a + b`` with ``a = gamma/sqrt(var + eps)``, ``b = beta - mean*a`` in float64, then
  cast to float32 (`batchnorm.eval_coefficients`). Stored as ``gamma = a``, ``beta = b``,
  ``mean = 0``, ``var = 1``, ``eps = 0``, the same float32 (a, b) come out, so two floats per
  channel replace four and the batch counters go. The model can no longer be finetuned from
  the file as it was (its batch statistics are gone). Checked here by evaluating the folded
  file: its predictions must equal the file's, every one.
* **folded, in float16** (lossy): (a, b) rounded to float16; the accuracy is measured.

Every size comes from encoding the changed tensors with the file's own float codec
(`mtc.pack_dense`), so the savings are what the format would really gain.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from minitorch_compress.compression.masks import weight_layers
from minitorch_compress.compression.pipeline import entropy_bytes
from minitorch_compress.io import mtc
from minitorch_compress.kernels.batchnorm import eval_coefficients
from minitorch_compress.nn.layers import BatchNorm2d


def _header(path: Path) -> dict[str, Any]:
    blob = path.read_bytes()
    _, _, length, _ = mtc._PREAMBLE.unpack_from(blob)
    return mtc.decode_header(blob[mtc._PREAMBLE.size:mtc._PREAMBLE.size + length])


def header_without_sections(path: str | Path) -> int:
    """Bytes the header would save without its section table (the dense section's length
    and every CRC kept: `[length, crc]` for the dense one, `crc` for each tensor's)."""
    header = _header(Path(path))
    compact = dict(header)
    table = header["sections"]
    dense = header["dense"]["section"]
    compact["sections"] = [[table[dense][1], table[dense][2]]] + [
        entry[2] for i, entry in enumerate(table) if i != dense]

    def size(h: dict[str, Any]) -> int:
        return len(mtc.encode_header(h))

    return size(header) - size(compact)


def fold_batch_norms(model: Any, half: bool = False) -> Any:
    """Every BatchNorm2d of `model` (in place) as its eval-mode affine map: weight = a,
    bias = b, running mean 0, running var 1, eps 0, from `eval_coefficients`; with `half`,
    (a, b) rounded to float16 (and back to float32). Returns `model`."""
    for _, module in model.named_modules():
        if isinstance(module, BatchNorm2d):
            coef = eval_coefficients(module.weight.data, module.bias.data,
                                     module.running_mean, module.running_var, module.eps,
                                     module.num_features, np.dtype(np.float32))
            if half:
                coef = coef.astype(np.float16).astype(np.float32)
            module.weight.data[...] = coef[:, 0]
            module.bias.data[...] = coef[:, 1]
            module.running_mean[...] = 0.0
            module.running_var[...] = 1.0
            module.eps = 0.0
    return model


def dense_bytes(model: Any, folded: bool, half: bool = False) -> int:
    """Bytes of the file's dense section for `model`: as written today, or with its batch
    norms folded (two float32s, or with `half` two float16s, per channel; no running
    statistics, no batch counters). Encoded with `mtc.pack_dense`."""
    state = mtc.inference_state(model)
    compressed = {f"{name}.weight" for name in weight_layers(model)}
    entries = []
    for name, value in state.items():
        if name in compressed:
            continue
        if folded and name.endswith((".running_mean", ".running_var", ".num_batches_tracked")):
            continue
        dtype = "<i8" if np.asarray(value).dtype.kind in "iu" else "<f2" if half else "<f4"
        entries.append((name, np.ascontiguousarray(value, dtype)))
    return len(mtc.pack_dense(entries)[1])


def shrink_options(path: str | Path, predict_fn: Any, labels: np.ndarray,
                   own: np.ndarray | None = None) -> dict[str, Any]:
    """Each option of the module docstring measured on the file at `path`.

    Args:
        path: a written ``.mtc`` file.
        predict_fn: model -> predicted labels on the test set (1-D int array); the file's
            own predictions, the folded model's and the float16 one's are compared.
        labels: the test set's true labels.
        own: the file's predictions, if already made (else `predict_fn` makes them).

    Returns:
        {"bytes": the file's size, "accuracy": the file's, "options": [{"option", "exact",
        "saved" (bytes), "accuracy" (lossy ones and the fold's check), "same_predictions"
        (the fold: whether every prediction equals the file's)}]}.
    """
    path = Path(path)
    total = path.stat().st_size
    model = mtc.load_model(path)
    own = predict_fn(model) if own is None else own
    accuracy = float((own == labels).mean())
    entropy = entropy_bytes(path)
    report = mtc.load(path)
    parts = {"index": 0, "codes": 0}
    for record in report.header["tensors"].values():
        sizes = mtc.tensor_bytes(record)
        parts["index"] += sizes["index"]
        parts["codes"] += sizes["codes"]
    dense_now = dense_bytes(model, folded=False)
    options = [
        {"option": "index at its order-0 entropy (arithmetic/ANS coder)", "exact": True,
         "saved": parts["index"] - entropy["index"]},
        {"option": "codes at their order-0 entropy (arithmetic/ANS coder)", "exact": True,
         "saved": parts["codes"] - entropy["codes"]},
        {"option": "header without its section table", "exact": True,
         "saved": header_without_sections(path)},
    ]
    with tempfile.TemporaryDirectory() as tmp:  # the real folded file, written and read
        folded_path = Path(tmp) / "folded.mtc"
        mtc.save(folded_path, model, fold_batch_norm=True)
        folded_total = folded_path.stat().st_size
        folded_predictions = predict_fn(mtc.load_model(folded_path))
    options.append({"option": "batch norm folded to (scale, shift), float32", "exact": True,
                    "saved": total - folded_total, "file": "compress --fold-batch-norm",
                    "accuracy": float((folded_predictions == labels).mean()),
                    "same_predictions": bool((folded_predictions == own).all())})
    half = fold_batch_norms(mtc.load_model(path), half=True)
    options.append({"option": "batch norm folded, (scale, shift) in float16", "exact": False,
                    "saved": dense_now - dense_bytes(half, folded=True, half=True),
                    "accuracy": float((predict_fn(half) == labels).mean())})
    return {"bytes": total, "accuracy": accuracy, "options": options}
