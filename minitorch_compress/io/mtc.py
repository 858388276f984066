"""The compressed model file (``.mtc``): Deep Compression for real, with nothing executable.

A pruned, quantized ResNet-20 is stored as what it is: the positions of its non-zero weights
(a sparse index), each weight's index into a small codebook of levels (n-bit codes), the
codebooks, and canonical Huffman coding of both streams. Everything the model needs at
inference that is not a prunable weight (batch-norm parameters and statistics, biases) is
stored losslessly as float32. Decoding gives back, bit for bit, the float32 weights the
in-memory model computes with (its *effective* weights: quantized where a quantizer is set),
so a model evaluated from its file scores exactly what it scored in memory.

Byte layout (little-endian throughout)::

    offset  size  field
    0       8     magic b"MTCMODEL"
    8       2     format version (uint16): 4, the one version this code writes and reads
    10      4     H: length of the compressed header (uint32)
    14      4     CRC32 of those H bytes (uint32)
    18      H     header: UTF-8 JSON (below), raw LZMA2 (`_RAW_LZMA2`, no container)
    18+H    ...   payload: the sections, back to back; the header gives each one's offset
                  (from the payload's start), length and CRC32

The header (JSON, no pickle)::

    {"architecture": {"name": "resnet20", "num_classes": 10, "mid_channels": [9 ints]},
     "sections": [[offset, length, crc32], ...],
     "dense": {"section": s, "codec": "raw" | "lzma" | "planes" | "grouped"},
     "batch_norm": "folded" (absent: the statistics are stored),
     "activation_ranges": {tensor name: [low, high], ...} (absent: none stored),
     "calibration": {"method": .., "images": .., "source": ..} (with activation_ranges),
     "tensors": {name: {"count": stored, "index": {...}, "values": {...},
                        "fill": bits (absent: 0)}, ...}}

Tensor names and shapes are not stored: the architecture fixes them (`ResNet20.state_dict`
order). Every tensor not under ``"tensors"`` is *dense*: its bytes (float32, or int64 for
``num_batches_tracked``) follow each other in state_dict order in the ``"dense"`` section,
stored by the smallest of the lossless float codecs (below) or ``"grouped"``: the float32
tensors regrouped by kind (every ``weight``, then every ``bias``, ``running_mean``,
``running_var``: the name's last part, kinds in order of first appearance, state_dict order
within a kind), byte planes of all of them (as ``"planes"``), then the int64 tensors'
bytes as they are, and the whole raw LZMA2. Like values then sit side by side (a batch
norm's variances resemble the next one's, not its own means), which LZMA2 codes in fewer
bytes.

A compressed tensor (the weights of a conv or linear layer) has a *fill*, the value of every
entry the index does not list: 0, or, under ``"fill"``, another float32 (its bits as a
uint32). A quantizer whose levels do not include 0 (the plain quantizer of Lab 3 (d)) maps
every pruned weight onto one non-zero level; the writer then also tries that level as the
fill, so the index lists the entries that differ from it, and keeps whichever encoding is
smaller. Below, "non-zero" means "not the fill". The tensor has:

* ``"index"``, where the non-zeros are, in C order, one of
  - ``{"kind": "all"}``: every entry is stored (a dense quantized layer);
  - ``{"kind": "bitmask", "part": p}``: one bit per entry, ``np.packbits`` order;
  - ``{"kind": "gaps", "width": w, "symbols": n, "part": p, "huffman": p or null}``:
    Deep Compression's relative index. Each symbol g < 2^w - 1 means "skip g zeros, then
    a non-zero"; the symbol 2^w - 1 is a filler, "skip 2^w - 1 zeros, no weight", so any
    gap fits in w bits. Symbols are w-bit packed (``"huffman": null``) or Huffman-coded with
    the code lengths in part ``"huffman"`` (a *code-length table*, below).
* ``"values"``, the non-zeros in order, one of
  - ``{"kind": "float32", "codec": "raw" | "lzma" | "planes", "part": p}``: the non-zeros
    as float32 (an unquantized pruned layer), by the smallest float codec;
  - ``{"kind": "codebook", "levels": K, "bits": b, "codebook": p, "codes": p, "huffman": p
    or null}``: K float32 levels and one code per non-zero, b-bit packed or Huffman-coded
    (code-length table over the K levels);
  - ``{"kind": "affine", "bits": b, "codebook": p, ...}``: the same with the codebook given
    as the quantizer's range (min, max: two float32) and rebuilt by `affine_levels`, which
    computes the levels exactly as `compression.quant` does (checked bit for bit on save).

A *code-length table* over an alphabet of A symbols gives each symbol's canonical Huffman
code length (0: the symbol does not occur). When every length is at most 15 it takes
ceil(A / 2) bytes, two 4-bit lengths a byte, the first symbol in the high nibble; otherwise
(or when A = 1) A bytes, one uint8 a length. Its byte count says which.

The *float codecs* (dense section, float32 non-zeros), all lossless on the exact bits:

* ``"raw"``: the little-endian bytes as they are;
* ``"lzma"``: those bytes, stdlib ``lzma`` (.xz container, preset 9e);
* ``"planes"``: the bytes cut into 4-byte words and regrouped by byte position (every
  word's byte 0, then every byte 1, ...), then raw LZMA2 (`_RAW_LZMA2`, no container).
  A float32's sign-and-exponent bytes of one tensor are nearly all alike and its low
  mantissa bytes are noise; kept apart, the first compress far better. int64 entries are
  two words.

*Folded batch norm* (``save(..., fold_batch_norm=True)``, ``compress --fold-batch-norm``):
eval-mode batch norm computes ``x*a + b`` with ``a = gamma / sqrt(var + eps)`` and
``b = beta - mean*a`` (float64, then float32: `batchnorm.eval_coefficients`). A folded file
stores (a, b) as each batch norm's weight and bias and leaves out its running mean, running
variance and batch counter; the reader puts back mean 0, variance 1, counter 0 and sets the
layer's eps to 0, so the same float32 (a, b), and so bit-identical logits, come out. The
file is for inference only: its batch statistics are gone, so it cannot be finetuned or
exported to PyTorch (whose batch norm has eps 1e-5).

A compressed tensor's parts are stored back to back as one section (``"section"``, with
``"parts"``: their lengths), so each tensor has one CRC32; ``p`` above indexes its parts.

*Activation ranges* (``save(..., activation_ranges=...)``, ``compress --int8``): the real
interval [low, high] of each activation tensor the integer model quantizes (the names of
`compression.calibration`), as measured on calibration images, with how they were measured
under ``"calibration"`` (free text fields: method, images). They are JSON numbers (float64,
exact round trip); the u8 scale and zero point of each tensor follow from its interval
(`int8_reference.choose_scale`), so the integer model built from the file is the same every
time. A file without them is an ordinary float model; the field is optional, so every file
written before it reads as it did.

A file of any other format version is refused with a one-line error naming both versions:
there is one writer and one reader, and every committed file is written by them.

`save` picks, per tensor, the combination with the fewest bytes (the encoding it chose is in
the header and `inspect` prints it). Every problem with a file (bad magic or version, a CRC
mismatch, a section outside the file, counts that do not add up to the shapes) is a one-line
`CheckpointError`; nothing larger than the architecture's own tensors is ever allocated.
"""

from __future__ import annotations

import json
import lzma
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from minitorch_compress.compression import huffman
from minitorch_compress.errors import CheckpointError
from minitorch_compress.io.checkpoint import atomic_write
from minitorch_compress.io.limits import read_model_file

MAGIC = b"MTCMODEL"
VERSION = 4  # the format version `save` writes and `load` reads (the only one)
#: the batch-norm buffers a folded file leaves out, and what the reader puts back
_FOLDED_BUFFERS = {"running_mean": 0.0, "running_var": 1.0, "num_batches_tracked": 0}
_PREAMBLE = struct.Struct("<8sHII")  # magic, version, header length, header CRC32
MAX_MID_CHANNELS = 1024  # bounds what a (hostile) architecture may make us allocate
MAX_CODEBOOK = 256  # more distinct values than this: stored as raw float32
#: raw LZMA2 for the "planes" and "grouped" codecs and the header; lc=lp=pb=0: no literal or
#: position context, since byte planes have no byte alignment for LZMA to exploit (fewer
#: bytes than the defaults on batch-norm planes and on the JSON header)
_RAW_LZMA2 = [{"id": lzma.FILTER_LZMA2, "preset": 9 | lzma.PRESET_EXTREME,
                    "lc": 0, "lp": 0, "pb": 0}]


# ----------------------------------------------------------------------------- bits
def pack_bits(values: np.ndarray, bits: int) -> bytes:
    """Each value (0 <= v < 2^bits) as `bits` bits, MSB first, zero-padded to bytes."""
    values = np.asarray(values, dtype=np.uint32)
    shifts = np.arange(bits - 1, -1, -1, dtype=np.uint32)
    return np.packbits(((values[:, None] >> shifts) & 1).astype(np.uint8).ravel()).tobytes()


def unpack_bits(data: bytes, bits: int, count: int) -> np.ndarray:
    """The inverse of `pack_bits`: `count` values of `bits` bits."""
    need = (count * bits + 7) // 8
    if len(data) < need:
        raise CheckpointError(f"a packed stream holds {len(data)} bytes, {need} needed")
    raw = np.unpackbits(np.frombuffer(data[:need], dtype=np.uint8))[: count * bits]
    weights = (1 << np.arange(bits - 1, -1, -1)).astype(np.int64)
    return raw.reshape(count, bits).astype(np.int64) @ weights


# ----------------------------------------------------------------------------- index
def gaps_of(flat_nonzero: np.ndarray, width: int) -> np.ndarray:
    """Relative index of the positions `flat_nonzero` (sorted) with `width`-bit symbols and
    fillers (see the module docstring)."""
    filler = (1 << width) - 1
    gaps = np.diff(np.concatenate([[-1], flat_nonzero])) - 1
    fillers = gaps // filler  # how many fillers before each non-zero
    symbols = np.empty(len(gaps) + int(fillers.sum()), dtype=np.int64)
    # each non-zero's symbol sits after its fillers
    ends = np.cumsum(fillers + 1) - 1
    symbols[:] = filler
    symbols[ends] = gaps - fillers * filler
    return symbols


def positions_of(symbols: np.ndarray, width: int, numel: int) -> np.ndarray:
    """The inverse of `gaps_of`: the flat positions of the non-zeros."""
    filler = (1 << width) - 1
    step = np.where(symbols == filler, filler, symbols + 1)
    ends = np.cumsum(step) - 1
    positions = ends[symbols != filler]
    if positions.size and (positions[-1] >= numel or positions[0] < 0):
        raise CheckpointError(f"the index points past the tensor's {numel} entries")
    return positions


# ----------------------------------------------------------------------------- levels
def affine_levels(low: float, high: float, bits: int) -> np.ndarray:
    """The 2^bits levels of the asymmetric quantizer between `low` and `high`, computed as
    `compression.quant` computes them (float64, then float32): ``k / (2^b - 1) * (high -
    low) + low`` for k = 0 .. 2^b - 1."""
    steps = (1 << bits) - 1
    k = np.arange(steps + 1, dtype=np.float64)
    return (k / steps * (np.float64(high) - np.float64(low)) + np.float64(low)).astype(np.float32)


def _affine_codes(values: np.ndarray) -> tuple[int, np.ndarray] | None:
    """(bits, codes) if every value is a level of `affine_levels(min, max, bits)` for some
    bits <= 8, reproduced bit for bit; else None (the codebook is then stored explicitly)."""
    if values.size == 0:
        return None
    low, high = values.min(), values.max()
    for bits in range(1, 9):
        levels = affine_levels(low, high, bits)
        lookup = {v: k for k, v in enumerate(levels.view(np.uint32).tolist())}
        keys = values.view(np.uint32)
        if len(lookup) == levels.size and all(v in lookup for v in np.unique(keys).tolist()):
            table = np.array(sorted(lookup), dtype=np.uint32)
            order = np.array([lookup[v] for v in table.tolist()], dtype=np.int64)
            return bits, order[np.searchsorted(table, keys)]
    return None


# ----------------------------------------------------------------------------- sections
class _Writer:
    def __init__(self) -> None:
        self.chunks: list[bytes] = []
        self.table: list[list[int]] = []
        self.offset = 0

    def add(self, data: bytes) -> int:
        self.table.append([self.offset, len(data), zlib.crc32(data)])
        self.chunks.append(data)
        self.offset += len(data)
        return len(self.table) - 1


def _huffman_table(lengths: dict[int, int], alphabet: int) -> bytes:
    """The code-length table (module docstring): 4 bits a length when all fit, else 8."""
    table = np.zeros(alphabet, dtype=np.uint8)
    for symbol, length in lengths.items():
        table[symbol] = length
    if table.max() > 15 or alphabet < 2:  # one symbol: 1 byte either way, so 8 bits
        return table.tobytes()
    padded = np.concatenate([table, np.zeros(alphabet % 2, dtype=np.uint8)])
    return (padded[0::2] << 4 | padded[1::2]).astype(np.uint8).tobytes()


def _lengths_from_table(data: bytes, alphabet: int) -> dict[int, int]:
    raw = np.frombuffer(data, dtype=np.uint8)
    if raw.size == -(-alphabet // 2) and raw.size != alphabet:
        table = np.stack([raw >> 4, raw & 15], axis=1).ravel()[:alphabet]
    elif raw.size == alphabet:
        table = raw
    else:
        raise CheckpointError(f"a Huffman code-length table holds {raw.size} bytes for "
                              f"{alphabet} symbols")
    lengths = {int(s): int(n) for s, n in enumerate(table) if n}
    if not lengths or max(lengths.values()) > huffman.MAX_LENGTH:
        raise CheckpointError("a Huffman code-length table is empty or out of range")
    if len(lengths) > 1 and sum(2.0 ** -n for n in lengths.values()) > 1.0:
        raise CheckpointError("a Huffman code-length table breaks Kraft's inequality")
    return lengths


@dataclass
class _Stream:
    """One symbol stream (index gaps or codes), ready to write: packed or Huffman-coded."""

    alphabet: int
    bits: int
    symbols: np.ndarray
    huffman: bool = False
    lengths: dict[int, int] = field(default_factory=dict)
    payload: bytes = b""

    @classmethod
    def best(cls, symbols: np.ndarray, alphabet: int, bits: int) -> _Stream:
        """Packed at `bits` bits or Huffman-coded, whichever is smaller (table included)."""
        packed = cls(alphabet, bits, symbols, payload=pack_bits(symbols, bits))
        if symbols.size == 0:
            return packed
        lengths = huffman.code_lengths(huffman.frequencies_of(symbols))
        coded = cls(alphabet, bits, symbols, True, lengths, huffman.encode(symbols, lengths))
        return coded if coded.size < packed.size else packed

    @property
    def size(self) -> int:
        table = len(_huffman_table(self.lengths, self.alphabet)) if self.huffman else 0
        return len(self.payload) + table

    def write(self, out: _Writer) -> tuple[int, int | None]:
        table = out.add(_huffman_table(self.lengths, self.alphabet)) if self.huffman else None
        return out.add(self.payload), table


def _read_stream(sections: list[bytes], record_section: int, table: int | None, bits: int,
                 count: int, alphabet: int) -> np.ndarray:
    if table is None:
        return unpack_bits(sections[record_section], bits, count)
    lengths = _lengths_from_table(sections[table], alphabet)
    try:
        return huffman.decode(sections[record_section], lengths, count)
    except ValueError as exc:
        raise CheckpointError(f"a Huffman stream is corrupt: {exc}") from None


# ----------------------------------------------------------------------------- tensors
def _encode_tensor(w: np.ndarray, out: _Writer, stats: dict[str, int]) -> dict[str, Any]:
    """The smallest encoding of one weight tensor; its sections are written to `out` (an
    empty writer: the record's part numbers are its own).

    Two are tried: the index around zero (the non-zeros are stored) and, where the most
    frequent value is not zero and holds most entries (a quantizer that maps pruned weights
    onto a level), the index around that value (``"fill"``: every other entry is stored).
    `stats` gets the bytes of each part ("index", "codes", "codebook", "values").
    """
    if out.table:
        raise ValueError("_encode_tensor writes a tensor's parts into a writer of its own")
    flat = np.ascontiguousarray(w, dtype=np.float32).ravel()
    options = [_encode_around(flat, np.float32(0.0))]
    values, counts = np.unique(flat, return_counts=True)
    if values.size and values[np.argmax(counts)] != 0 and counts.max() * 2 > flat.size:
        options.append(_encode_around(flat, np.float32(values[np.argmax(counts)])))
    record, parts, part_stats = min(options, key=lambda o: o[1].offset)
    for chunk in parts.chunks:
        out.add(chunk)
    for key, value in part_stats.items():
        stats[key] += value
    return record


def _encode_around(flat: np.ndarray, fill: np.float32
                   ) -> tuple[dict[str, Any], _Writer, dict[str, int]]:
    """`flat` encoded as `fill` everywhere except at the indexed positions: (record, its
    parts, the bytes of each kind of part)."""
    out = _Writer()
    stats = dict.fromkeys(("index", "codes", "codebook", "values"), 0)
    nonzero = np.flatnonzero(flat != fill)
    values = flat[nonzero]
    levels = np.unique(values)
    # the index: every width's relative index, and the bitmask; fewest bytes wins
    candidates: list[tuple[int, str, Any]] = [(-(-flat.size // 8), "bitmask", None)]
    for width in range(1, 9):
        stream = _Stream.best(gaps_of(nonzero, width), 1 << width, width)
        candidates.append((stream.size, "gaps", (width, stream)))
    use_codebook = levels.size <= MAX_CODEBOOK
    if fill == 0 and use_codebook and nonzero.size * 4 >= flat.size * 3:
        # nearly dense: store every entry's code, zero included, and no index at all
        all_levels = np.unique(flat)
        if all_levels.size <= MAX_CODEBOOK:
            candidates.append((0, "all", None))
    index_size, kind, chosen = min(candidates, key=lambda c: c[0])
    record: dict[str, Any] = {"count": int(nonzero.size)}
    if kind == "all":
        nonzero, values = np.arange(flat.size), flat
        levels = np.unique(flat)
        record["count"] = int(flat.size)
        record["index"] = {"kind": "all"}
    elif kind == "bitmask":
        mask = np.zeros(flat.size, dtype=np.uint8)
        mask[nonzero] = 1
        record["index"] = {"kind": "bitmask", "part": out.add(np.packbits(mask).tobytes())}
    else:
        width, stream = chosen
        part, table = stream.write(out)
        record["index"] = {"kind": "gaps", "width": width, "symbols": int(stream.symbols.size),
                           "part": part, "huffman": table}
    stats["index"] += index_size
    record["values"] = _encode_values(values, levels, out, stats)
    if fill != 0:
        record["fill"] = int(np.array(fill, dtype="<f4").view("<u4"))  # its exact bits
    return record, out, stats


def _encode_values(values: np.ndarray, levels: np.ndarray, out: _Writer,
                   stats: dict[str, int]) -> dict[str, Any]:
    """The non-zeros, in the smallest of: raw float32; codes into the quantizer's affine
    levels (8 bytes of range instead of a codebook); codes into an explicit codebook."""
    raw = values.size * 4
    options: list[tuple[int, str, Any]] = [(raw, "float32", None)]
    affine = _affine_codes(values) if values.size else None
    if affine is not None:
        bits, codes = affine
        options.append((8 + _Stream.best(codes, 1 << bits, bits).size, "affine", affine))
    if 0 < levels.size <= MAX_CODEBOOK:
        bits = max(1, int(np.ceil(np.log2(max(levels.size, 2)))))
        codes = np.searchsorted(levels, values)
        options.append((4 * levels.size + _Stream.best(codes, levels.size, bits).size,
                        "codebook", (bits, codes)))
    _, kind, chosen = min(options, key=lambda o: o[0])
    if kind == "float32":
        codec, data = pack_floats(values.astype("<f4").tobytes())
        stats["values"] += len(data)
        return {"kind": "float32", "codec": codec, "part": out.add(data)}
    bits, codes = chosen
    stream = _Stream.best(codes, 1 << bits if kind == "affine" else levels.size, bits)
    if kind == "affine":
        book = np.array([values.min(), values.max()], dtype="<f4").tobytes()
        record = {"kind": "affine", "bits": bits}
    else:
        book = levels.astype("<f4").tobytes()
        record = {"kind": "codebook", "levels": int(levels.size), "bits": bits}
    codebook = out.add(book)
    part, table = stream.write(out)
    stats["codes"] += stream.size
    stats["codebook"] += len(book)
    return {**record, "codebook": codebook, "codes": part, "huffman": table}


def _decode_tensor(record: dict[str, Any], shape: tuple[int, ...],
                   sections: list[bytes]) -> np.ndarray:
    numel = int(np.prod(shape))
    count = _int(record.get("count"), "count", 0, numel)
    index, values_record = record.get("index", {}), record.get("values", {})
    kind = index.get("kind")
    if kind == "all":
        if count != numel:
            raise CheckpointError(f"an 'all' index stores {count} of {numel} entries")
        positions = np.arange(numel)
    elif kind == "bitmask":
        bits = np.unpackbits(np.frombuffer(_section(sections, index.get("part")),
                                           dtype=np.uint8))[:numel]
        positions = np.flatnonzero(bits)
    elif kind == "gaps":
        width = _int(index.get("width"), "width", 1, 16)
        symbols = _int(index.get("symbols"), "symbols", count, count + numel)
        stream = _read_stream(sections, _section_id(sections, index.get("part")),
                              _optional_section(sections, index.get("huffman")), width, symbols,
                              1 << width)
        positions = positions_of(stream, width, numel)
    else:
        raise CheckpointError(f"unknown index kind {kind!r}")
    if positions.size != count:
        raise CheckpointError(f"the index gives {positions.size} positions, the header {count}")
    kind = values_record.get("kind")
    if kind == "float32":
        raw = unpack_floats(values_record.get("codec"), _section(sections,
                            values_record.get("part")), 4 * count, "a tensor's float32 values")
        if len(raw) != 4 * count:
            raise CheckpointError(f"{len(raw)} bytes of values for {count} non-zeros")
        values = np.frombuffer(raw, dtype="<f4")
    elif kind in ("affine", "codebook"):
        bits = _int(values_record.get("bits"), "bits", 1, 8)
        book = np.frombuffer(_section(sections, values_record.get("codebook")), dtype="<f4")
        if kind == "affine":
            if book.size != 2:
                raise CheckpointError(f"an affine codebook holds {book.size} values, not 2")
            levels = affine_levels(book[0], book[1], bits)
        else:
            levels = book
            if levels.size != _int(values_record.get("levels"), "levels", 1, MAX_CODEBOOK):
                raise CheckpointError(f"a codebook holds {levels.size} levels, not "
                                      f"{values_record.get('levels')}")
        codes = _read_stream(sections, _section_id(sections, values_record.get("codes")),
                             _optional_section(sections, values_record.get("huffman")), bits,
                             count, levels.size)
        if codes.size and (codes.min() < 0 or codes.max() >= levels.size):
            raise CheckpointError("a code points outside its codebook")
        values = levels[codes]
    else:
        raise CheckpointError(f"unknown value kind {kind!r}")
    flat = np.full(numel, fill_of(record), dtype=np.float32)
    flat[positions] = values
    return flat.reshape(shape)


def fill_of(record: dict[str, Any]) -> np.float32:
    """The value of a tensor's unindexed entries: 0, or its ``"fill"`` (float32 bits)."""
    bits = _int(record.get("fill", 0), "fill", 0, 2**32 - 1)
    return np.array(bits, dtype="<u4").view("<f4")[()]


def pack_floats(data: bytes) -> tuple[str, bytes]:
    """(codec, bytes): the smallest lossless float codec for `data` (little-endian float32 /
    int64 entries, a multiple of 4 bytes long; module docstring)."""
    options = [("raw", data), ("lzma", lzma.compress(data, preset=9 | lzma.PRESET_EXTREME)),
               ("planes", lzma.compress(_byte_planes(data), format=lzma.FORMAT_RAW,
                                        filters=_RAW_LZMA2))]
    return min(options, key=lambda option: len(option[1]))


def _byte_planes(data: bytes) -> bytes:
    """4-byte words regrouped by byte position (every word's byte 0, then every byte 1...)."""
    return np.frombuffer(data, dtype=np.uint8).reshape(-1, 4).T.tobytes()


def _words(planes: bytes) -> bytes:
    """The inverse of `_byte_planes`."""
    return np.frombuffer(planes, dtype=np.uint8).reshape(4, -1).T.tobytes()


def grouped_order(names: list[str]) -> list[str]:
    """`names` regrouped by kind (the last dotted part: every weight, then every bias...),
    kinds in order of first appearance, the given order within a kind: the order in which
    the ``"grouped"`` codec stores the dense float32 tensors."""
    kinds = list(dict.fromkeys(name.rsplit(".", 1)[-1] for name in names))
    return sorted(names, key=lambda name: kinds.index(name.rsplit(".", 1)[-1]))


def _grouped_bytes(entries: list[tuple[str, np.ndarray]]) -> bytes:
    """The ``"grouped"`` layout of dense tensors before LZMA2: the float tensors' bytes in
    `grouped_order`, as byte planes (zero-padded to whole words), then the integer
    tensors' bytes in their own order."""
    arrays = dict(entries)
    floats = [name for name, value in entries if value.dtype.kind == "f"]
    data = b"".join(arrays[name].tobytes() for name in grouped_order(floats))
    ints = b"".join(value.tobytes() for _, value in entries if value.dtype.kind != "f")
    return _byte_planes(data + b"\0" * (-len(data) % 4)) + ints


def pack_dense(entries: list[tuple[str, np.ndarray]]) -> tuple[str, bytes]:
    """(codec, bytes): the dense tensors `entries` ((name, little-endian array) in state_dict
    order) by the smallest of the float codecs on their bytes back to back and the
    ``"grouped"`` codec (module docstring)."""
    flat = b"".join(value.tobytes() for _, value in entries)
    codec, packed = pack_floats(flat + b"\0" * (-len(flat) % 4))  # float16 (what_if): words
    regrouped = lzma.compress(_grouped_bytes(entries), format=lzma.FORMAT_RAW,
                              filters=_RAW_LZMA2)
    return ("grouped", regrouped) if len(regrouped) < len(packed) else (codec, packed)


def unpack_dense(codec: Any, data: bytes, layout: list[tuple[str, np.dtype, int]],
                 what: str) -> bytes:
    """The inverse of `pack_dense`: the dense tensors' bytes back to back in state_dict order,
    for `layout` ((name, little-endian dtype, entries) in that order); a one-line
    `CheckpointError` for a stream that does not decode to their size."""
    size = sum(dtype.itemsize * count for _, dtype, count in layout)
    if codec != "grouped":
        return unpack_floats(codec, data, size, what)
    raw = _unlzma(data, size, what, filters=_RAW_LZMA2)
    if len(raw) != size:
        raise CheckpointError(f"{what}: {len(raw)} bytes, {size} expected")
    lengths = {name: dtype.itemsize * count for name, dtype, count in layout}
    floats = grouped_order([name for name, dtype, _ in layout if dtype.kind == "f"])
    float_size = sum(lengths[name] for name in floats)
    if float_size % 4:
        raise CheckpointError(f"{what}: float entries of {float_size} bytes are not words")
    pieces, offset = {}, 0
    unplaned = _words(raw[:float_size])
    for name in floats:
        pieces[name], offset = unplaned[offset:offset + lengths[name]], offset + lengths[name]
    for name, dtype, _ in layout:
        if dtype.kind != "f":
            pieces[name], offset = raw[offset:offset + lengths[name]], offset + lengths[name]
    return b"".join(pieces[name] for name, _, _ in layout)


def encode_header(header: dict[str, Any]) -> bytes:
    """The header's compact JSON, raw LZMA2 (module docstring)."""
    text = json.dumps(header, separators=(",", ":")).encode()
    return lzma.compress(text, format=lzma.FORMAT_RAW, filters=_RAW_LZMA2)


def decode_header(data: bytes) -> Any:
    """The inverse of `encode_header`; a one-line `CheckpointError` for bytes that are not
    compressed JSON. At most 4 MB are decompressed (headers are a few KB)."""
    try:
        text = lzma.LZMADecompressor(format=lzma.FORMAT_RAW, filters=_RAW_LZMA2
                                     ).decompress(data, max_length=1 << 22)
        return json.loads(text)
    except (lzma.LZMAError, ValueError, RecursionError) as exc:  # RecursionError: nested deep
        raise CheckpointError(f"the header is not valid compressed JSON ({exc})") from None


def unpack_floats(codec: Any, data: bytes, size: int, what: str) -> bytes:
    """The inverse of `pack_floats`, for `size` bytes of entries; a one-line
    `CheckpointError` for an unknown codec or a stream that does not decode to `size`."""
    if codec in (None, "raw"):
        raw = data
    elif codec == "lzma":
        raw = _unlzma(data, size, what)
    elif codec == "planes":
        raw = _unlzma(data, size, what, filters=_RAW_LZMA2)
        if len(raw) == size and size % 4 == 0:
            raw = _words(raw)
    else:
        raise CheckpointError(f"unknown float codec {codec!r} for {what}")
    if len(raw) != size:
        raise CheckpointError(f"{what}: {len(raw)} bytes, {size} expected")
    return raw


def _unlzma(data: bytes, size: int, what: str, filters: Any = None) -> bytes:
    """lzma-decompress at most `size` + 1 bytes (a bomb cannot make us allocate more)."""
    try:
        if filters is None:
            decompressor = lzma.LZMADecompressor()
        else:
            decompressor = lzma.LZMADecompressor(format=lzma.FORMAT_RAW, filters=filters)
        return decompressor.decompress(data, max_length=size + 1)
    except lzma.LZMAError as exc:
        raise CheckpointError(f"{what} does not decompress ({exc})") from None


def _parts(record: dict[str, Any], sections: list[bytes]) -> list[bytes]:
    """A tensor's section cut into the parts its record lists."""
    data = _section(sections, record.get("section"))
    lengths = record.get("parts")
    if not (isinstance(lengths, list) and all(isinstance(n, int) and n >= 0 for n in lengths)
            and sum(lengths) == len(data)):
        raise CheckpointError(f"a tensor's parts {lengths!r} do not add up to its "
                              f"{len(data)}-byte section")
    bounds = np.cumsum([0, *lengths]).tolist()
    return [data[a:b] for a, b in zip(bounds[:-1], bounds[1:], strict=True)]


def _int(value: Any, what: str, low: int, high: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise CheckpointError(f"header field {what}={value!r} is not in [{low}, {high}]")
    return value


def _section_id(sections: list[bytes], value: Any) -> int:
    return _int(value, "section", 0, len(sections) - 1)


def _optional_section(sections: list[bytes], value: Any) -> int | None:
    return None if value is None else _section_id(sections, value)


def _section(sections: list[bytes], value: Any) -> bytes:
    return sections[_section_id(sections, value)]


# ----------------------------------------------------------------------------- model
def architecture_of(model: Any) -> dict[str, Any]:
    """What the file records of a ResNet-20 so that `build_model` can rebuild it."""
    return {"name": "resnet20", "num_classes": int(model.final_fc.linear.out_features),
            "mid_channels": [int(m) for m in model.mid_channels]}


def build_model(architecture: dict[str, Any]) -> Any:
    """An (uninitialised-weights) ResNet-20 of the recorded architecture.

    Raises:
        CheckpointError: an unknown or out-of-range architecture.
    """
    from minitorch_compress.models.resnet import ResNet20

    if not isinstance(architecture, dict) or architecture.get("name") != "resnet20":
        raise CheckpointError(f"unknown architecture {architecture!r}; only resnet20 is known")
    mids = architecture.get("mid_channels")
    classes = _int(architecture.get("num_classes"), "num_classes", 1, 100_000)
    if not (isinstance(mids, list) and len(mids) == 9):
        raise CheckpointError(f"mid_channels must list 9 widths, got {mids!r}")
    mids = [_int(m, "mid_channels", 1, MAX_MID_CHANNELS) for m in mids]
    return ResNet20(num_classes=classes, rng=np.random.default_rng(0), mid_channels=mids)


def inference_state(model: Any) -> dict[str, np.ndarray]:
    """The arrays the model computes with at inference: its state_dict with every conv and
    linear weight replaced by its effective weight (quantized where a quantizer is set)."""
    from minitorch_compress.autograd.engine import no_grad
    from minitorch_compress.compression.masks import weight_layers

    state = model.state_dict()
    with no_grad():
        for name, layer in weight_layers(model).items():
            state[f"{name}.weight"] = np.array(layer.effective_weight().data, dtype=np.float32)
    return state


@dataclass
class SaveReport:
    """What `save` wrote, by part, in bytes."""

    total: int
    index: int
    codes: int
    codebook: int
    values: int  # raw float32 non-zeros of unquantized compressed tensors
    dense: int  # the dense section (batch norm etc.) as stored
    dense_raw: int  # the same tensors at 4 bytes (8 for int64) per entry
    header: int
    encodings: dict[str, str]


def batch_norm_names(model: Any) -> list[str]:
    """The module names of every BatchNorm2d of `model`."""
    from minitorch_compress.nn.layers import BatchNorm2d

    return [name for name, module in model.named_modules() if isinstance(module, BatchNorm2d)]


def folded_state(model: Any, state: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """`state` with every batch norm of `model` as its eval-mode (a, b) in weight and bias,
    and without its running statistics and batch counter (see the module docstring)."""
    from minitorch_compress.kernels.batchnorm import eval_coefficients

    modules = dict(model.named_modules())
    state = dict(state)
    for name in batch_norm_names(model):
        bn = modules[name]
        coef = eval_coefficients(bn.weight.data, bn.bias.data, bn.running_mean,
                                 bn.running_var, bn.eps, bn.num_features, np.dtype(np.float32))
        state[f"{name}.weight"], state[f"{name}.bias"] = coef[:, 0].copy(), coef[:, 1].copy()
        for buffer in _FOLDED_BUFFERS:
            del state[f"{name}.{buffer}"]
    return state


def save(path: str | Path, model: Any, compress: tuple[str, ...] | None = None,
         fold_batch_norm: bool = False,
         activation_ranges: ActivationRanges | None = None) -> SaveReport:
    """Write `model` (its `inference_state`) to `path` as an ``.mtc`` file, atomically.

    Args:
        path: the file to write.
        model: a ResNet-20 (any `mid_channels`), pruned and/or quantized or not.
        compress: the layers whose weights get the sparse/codebook encoding (default: every
            conv and linear layer); the rest is stored dense.
        fold_batch_norm: store each batch norm as its eval-mode (scale, shift): about 5 KB
            smaller, the same logits, inference only (see the module docstring).
        activation_ranges: the calibrated activation ranges for integer inference (see
            the module docstring), or None to store none.

    Returns:
        A `SaveReport` with the bytes of each part.
    """
    from minitorch_compress.compression.masks import weight_layers

    state = inference_state(model)
    if fold_batch_norm:
        state = folded_state(model, state)
    layers = list(weight_layers(model)) if compress is None else list(compress)
    out = _Writer()
    stats = dict.fromkeys(("index", "codes", "codebook", "values"), 0)
    tensors: dict[str, Any] = {}
    dense: list[tuple[str, np.ndarray]] = []
    for name, value in state.items():
        if name.removesuffix(".weight") in layers and name.endswith(".weight"):
            parts = _Writer()  # the tensor's parts, stored as one section (one CRC)
            record = _encode_tensor(value, parts, stats)
            record["section"] = out.add(b"".join(parts.chunks))
            record["parts"] = [length for _, length, _ in parts.table]
            tensors[name] = record
        else:
            dtype = "<i8" if np.asarray(value).dtype.kind in "iu" else "<f4"
            dense.append((name, np.ascontiguousarray(value, dtype=dtype)))
    dense_raw = sum(value.nbytes for _, value in dense)
    codec, dense_bytes = pack_dense(dense)
    dense_section = out.add(dense_bytes)
    header = {"architecture": architecture_of(model), "sections": out.table,
              "dense": {"section": dense_section, "codec": codec}, "tensors": tensors}
    if fold_batch_norm:
        header["batch_norm"] = "folded"
    if activation_ranges is not None:
        header["activation_ranges"] = {
            name: [float(low), float(high)]
            for name, (low, high) in check_activation_ranges(activation_ranges.ranges).items()}
        header["calibration"] = dict(activation_ranges.calibration)
    header_bytes = encode_header(header)
    blob = (_PREAMBLE.pack(MAGIC, VERSION, len(header_bytes), zlib.crc32(header_bytes))
            + header_bytes + b"".join(out.chunks))
    atomic_write(path, lambda f: f.write(blob))
    encodings = {name: _describe(record) for name, record in tensors.items()}
    return SaveReport(len(blob), stats["index"], stats["codes"], stats["codebook"],
                      stats["values"], len(dense_bytes), dense_raw,
                      _PREAMBLE.size + len(header_bytes), encodings)


def _describe(record: dict[str, Any]) -> str:
    index, values = record["index"], record["values"]
    coded = {True: "+huffman", False: ""}
    where = {"all": "dense", "bitmask": "bitmask"}.get(
        index["kind"], f"gaps w={index.get('width')}{coded[index.get('huffman') is not None]}")
    if "fill" in record:
        where += f" around {fill_of(record):.6g}"
    if values["kind"] == "float32":
        return f"{where}; float32"
    book = "affine levels" if values["kind"] == "affine" else f"{values['levels']} levels"
    return f"{where}; {book}, {values['bits']} bit{coded[values.get('huffman') is not None]}"


@dataclass(frozen=True)
class ActivationRanges:
    """Calibrated activation ranges, as an ``.mtc`` file stores them.

    Attributes:
        ranges: {tensor name: (low, high)} (`compression.calibration.calibrate`'s result).
        calibration: how they were measured, e.g. {"method": "percentile", "images":
            "the first 1,000 CIFAR-10 training images"} (strings or numbers).
    """

    ranges: dict[str, tuple[float, float]]
    calibration: dict[str, Any] = field(default_factory=dict)


#: most activation tensors a file may name (ResNet-20 has 30; bounds a crafted header)
MAX_ACTIVATION_RANGES = 256


def check_activation_ranges(ranges: Any) -> dict[str, tuple[float, float]]:
    """`ranges` as {name: (low, high)} if it is one: string names, two finite numbers
    each with low <= high, at most `MAX_ACTIVATION_RANGES` of them.

    Raises:
        CheckpointError: anything else (a one-line description).
    """
    if not isinstance(ranges, dict) or len(ranges) > MAX_ACTIVATION_RANGES:
        raise CheckpointError("activation_ranges must map at most "
                              f"{MAX_ACTIVATION_RANGES} tensor names to [low, high]")
    checked = {}
    for name, interval in ranges.items():
        if not (isinstance(name, str) and isinstance(interval, (list, tuple))
                and len(interval) == 2
                and all(isinstance(v, (int, float)) and not isinstance(v, bool)
                        for v in interval)):
            raise CheckpointError(f"activation range of {name!r} is {interval!r}, not "
                                  "[low, high]")
        low, high = float(interval[0]), float(interval[1])
        if not (np.isfinite(low) and np.isfinite(high) and low <= high):
            raise CheckpointError(f"activation range of {name!r} is [{low}, {high}]: not "
                                  "finite or low > high")
        checked[name] = (low, high)
    return checked


@dataclass
class Loaded:
    """A decoded ``.mtc`` file."""

    architecture: dict[str, Any]
    state: dict[str, np.ndarray]
    header: dict[str, Any]
    sections: list[bytes]
    file_bytes: int
    folded: bool = False  # batch norm stored folded: `load_model` sets each eps to 0
    #: the calibrated activation ranges for integer inference, None when the file has none
    activation_ranges: ActivationRanges | None = None


def load(path: str | Path) -> Loaded:
    """Read and check an ``.mtc`` file; every problem is a one-line `CheckpointError`."""
    path = Path(path)
    blob = read_model_file(path, ".mtc model file")  # a regular file of a model's size
    try:
        return _parse(blob)
    except CheckpointError as exc:
        raise CheckpointError(f"{path}: {exc}") from None
    except (KeyError, TypeError, AttributeError, IndexError, ValueError) as exc:
        # a header that passed its CRC yet holds records of the wrong shape (a crafted file)
        raise CheckpointError(f"{path}: a record of its header is malformed "
                              f"({type(exc).__name__}: {exc})") from None


def _parse(blob: bytes) -> Loaded:
    if len(blob) < _PREAMBLE.size:
        raise CheckpointError("the file is too short to be an .mtc model (truncated?)")
    magic, version, header_length, header_crc = _PREAMBLE.unpack_from(blob)
    if magic != MAGIC:
        raise CheckpointError("not an .mtc model file (wrong magic bytes)")
    if version != VERSION:
        raise CheckpointError(f"format version {version}; this code reads version {VERSION} "
                              "only")
    header_end = _PREAMBLE.size + header_length
    if header_end > len(blob):
        raise CheckpointError("the header runs past the end of the file (truncated?)")
    header_bytes = blob[_PREAMBLE.size:header_end]
    if zlib.crc32(header_bytes) != header_crc:
        raise CheckpointError("the header's CRC32 does not match (corrupt file)")
    header = decode_header(header_bytes)
    if not isinstance(header, dict):
        raise CheckpointError("the header is not a JSON object")
    model = build_model(header.get("architecture"))
    payload = blob[header_end:]
    table = header.get("sections")
    if not isinstance(table, list):
        raise CheckpointError("the header has no section table")
    sections = []
    for i, entry in enumerate(table):
        if not (isinstance(entry, list) and len(entry) == 3
                and all(isinstance(v, int) and v >= 0 for v in entry)):
            raise CheckpointError(f"section {i} is described as {entry!r}")
        offset, length, crc = entry
        if offset + length > len(payload):
            raise CheckpointError(f"section {i} runs past the end of the file (truncated?)")
        data = payload[offset:offset + length]
        if zlib.crc32(data) != crc:
            raise CheckpointError(f"section {i}'s CRC32 does not match (corrupt file)")
        sections.append(data)
    end = max((offset + length for offset, length, _ in table), default=0)
    if len(payload) != end:  # sections are written back to back, nothing after the last
        raise CheckpointError(f"{len(payload) - end:,} bytes follow the last section (a "
                              "damaged file, or something appended to it)")
    expected = model.state_dict()
    folded = header.get("batch_norm", "stored")
    if folded not in ("stored", "folded"):
        raise CheckpointError(f"batch_norm is {folded!r}, not 'stored' or 'folded'")
    folded = folded == "folded"
    left_out = ({f"{bn}.{buffer}" for bn in batch_norm_names(model) for buffer in _FOLDED_BUFFERS}
                if folded else set())
    tensors = header.get("tensors", {})
    if not isinstance(tensors, dict) or not set(tensors) <= set(expected):
        raise CheckpointError("the header names tensors the architecture does not have")
    dense_record = header.get("dense", {})
    if not isinstance(dense_record, dict):
        raise CheckpointError(f"the dense section is described as {dense_record!r}")
    codec = dense_record.get("codec", "?")
    layout = [(k, np.dtype("<i8" if v.dtype.kind in "iu" else "<f4"), v.size)
              for k, v in expected.items() if k not in tensors and k not in left_out]
    dense_bytes = unpack_dense(codec, _section(sections, dense_record.get("section")), layout,
                               "the dense section (batch norm etc.)")
    state: dict[str, np.ndarray] = {}
    offset = 0
    for name, like in expected.items():
        if name in tensors:
            if not isinstance(tensors[name], dict):
                raise CheckpointError(f"tensor {name} is described as {tensors[name]!r}")
            record = tensors[name]
            state[name] = _decode_tensor(record, like.shape, _parts(record, sections))
            continue
        if name in left_out:
            state[name] = np.full(like.shape, _FOLDED_BUFFERS[name.rsplit(".", 1)[1]],
                                  dtype=like.dtype)
            continue
        dtype = np.dtype("<i8") if like.dtype.kind in "iu" else np.dtype("<f4")
        size = like.size * dtype.itemsize
        state[name] = np.frombuffer(dense_bytes, dtype=dtype, count=like.size,
                                    offset=offset).reshape(like.shape).astype(like.dtype)
        offset += size
    ranges = None
    if "activation_ranges" in header:
        calibration = header.get("calibration", {})
        if not isinstance(calibration, dict):
            raise CheckpointError(f"calibration is described as {calibration!r}")
        ranges = ActivationRanges(check_activation_ranges(header["activation_ranges"]),
                                  calibration)
    return Loaded(header["architecture"], state, header, sections, len(blob), folded, ranges)


def tensor_bytes(record: dict[str, Any]) -> dict[str, int]:
    """Bytes of a compressed tensor's index, codes (+ Huffman table), codebook and raw
    float32 non-zeros, from its header record."""
    lengths = record["parts"]
    index, values = record["index"], record["values"]

    def of(*parts: int | None) -> int:
        return sum(lengths[p] for p in parts if p is not None)

    return {"index": of(index.get("part"), index.get("huffman")),
            "codes": of(values.get("codes"), values.get("huffman")),
            "codebook": of(values.get("codebook")),
            "floats": of(values.get("part")) if values["kind"] == "float32" else 0}


def stored_bits(record: dict[str, Any]) -> int | None:
    """The bit width a compressed tensor's values are stored with: ``"bits"`` of its codes
    (the affine grid's or the codebook's), None for raw float32 values. Mixed precision reads
    each layer's width from here; nothing else is stored for it. It is the quantizer's width
    b unless the values fit a coarser grid (the writer keeps the fewest bits that reproduce
    them, e.g. a b-bit layer using only every other level)."""
    values = record["values"]
    return None if values["kind"] == "float32" else int(values["bits"])


def describe(record: dict[str, Any]) -> str:
    """One line on how a tensor is encoded, e.g. "gaps w=2+huffman; affine levels, 4 bit"."""
    return _describe(record)


def load_model(path: str | Path) -> Any:
    """The ResNet-20 stored in `path`, in eval mode, computing with exactly the stored
    weights (no quantizer: the stored values are the levels already). From a folded file,
    every batch norm has eps 0 and the model's ``batch_norm_folded`` is True (training
    refuses it)."""
    loaded = load(path)
    model = build_model(loaded.architecture)
    model.load_state_dict(loaded.state)
    if loaded.folded:
        modules = dict(model.named_modules())
        for name in batch_norm_names(model):
            modules[name].eps = 0.0
    model.batch_norm_folded = loaded.folded
    return model.eval()
