"""Canonical Huffman coding: Deep Compression's third stage, written out to be read.

Deep Compression (Han, Mao, Dally, ICLR 2016) prunes, quantizes, then entropy-codes what is
left: after quantization a layer's weights are small integers (indices into a codebook of
2^b levels) whose distribution is far from uniform, and so are the gaps between kept weights.
Huffman coding gives frequent symbols short codes and rare ones long codes; its mean code
length L satisfies H <= L < H + 1 bits per symbol (H: the empirical entropy).

1. **Code lengths** (`code_lengths`): repeatedly merge the two least frequent subtrees; a
   symbol's length is its depth in the final tree. The lengths satisfy Kraft's equality,
   sum 2^-l = 1 (the tree is full), whenever there are at least two symbols.
2. **Canonical codes** (`canonical_codes`): sort the symbols by (length, symbol) and count
   upwards, shifting left when the length grows. The code is then fixed by the lengths
   alone, so a file stores one length per symbol, not the tree.
3. **Encode** (`encode`): concatenate the codes, most significant bit first, pad the last
   byte with zeros.
4. **Decode** (`decode`): canonical codes are prefix-free and ordered, so a table indexed by
   the next `max_length` bits gives the symbol and its length directly.

A stream with a single distinct symbol gets a 1-bit code (Kraft's sum is then 1/2).
"""

from __future__ import annotations

import heapq
from collections.abc import Mapping, Sequence

import numpy as np

#: Longest code this module produces or accepts (the decoder's table has 2^MAX_LENGTH rows).
MAX_LENGTH = 24


def code_lengths(frequencies: Mapping[int, int]) -> dict[int, int]:
    """Huffman code length of each symbol.

    Args:
        frequencies: symbol (int >= 0) -> count (> 0).

    Returns:
        symbol -> length in bits (>= 1). Ties are broken by symbol, so the result is
        deterministic.

    Raises:
        ValueError: no symbol, a count <= 0, or a code longer than `MAX_LENGTH` would be
            needed (only for astronomically skewed counts).
    """
    if not frequencies:
        raise ValueError("no symbols to code")
    if any(count <= 0 for count in frequencies.values()):
        raise ValueError("every symbol needs a count > 0")
    if len(frequencies) == 1:
        return {next(iter(frequencies)): 1}
    # heap of (count, tie-breaker, symbols in the subtree); merging adds 1 to their depth
    heap = [(count, symbol, [symbol]) for symbol, count in sorted(frequencies.items())]
    heapq.heapify(heap)
    depth = dict.fromkeys(frequencies, 0)
    while len(heap) > 1:
        count_a, tie_a, symbols_a = heapq.heappop(heap)
        count_b, tie_b, symbols_b = heapq.heappop(heap)
        for symbol in symbols_a + symbols_b:
            depth[symbol] += 1
        heapq.heappush(heap, (count_a + count_b, min(tie_a, tie_b), symbols_a + symbols_b))
    if max(depth.values()) > MAX_LENGTH:
        raise ValueError(f"a code longer than {MAX_LENGTH} bits would be needed")
    return depth


def canonical_codes(lengths: Mapping[int, int]) -> dict[int, tuple[int, int]]:
    """The canonical code of each symbol from its length alone.

    Returns:
        symbol -> (code as an int, length): symbols sorted by (length, symbol) get
        consecutive codes, shifted left whenever the length grows.
    """
    codes: dict[int, tuple[int, int]] = {}
    code, previous = 0, 0
    for symbol, length in sorted(lengths.items(), key=lambda item: (item[1], item[0])):
        code <<= length - previous
        codes[symbol] = (code, length)
        code += 1
        previous = length
    return codes


def encode(symbols: Sequence[int] | np.ndarray, lengths: Mapping[int, int]) -> bytes:
    """The concatenated canonical codes of `symbols`, MSB first, zero-padded to bytes.

    Raises:
        KeyError: a symbol without a code length.
    """
    codes = canonical_codes(lengths)
    symbols = np.asarray(symbols, dtype=np.int64).ravel()
    if symbols.size == 0:
        return b""
    # every symbol's code as a row of bits, then all rows joined: vectorised per distinct
    # symbol rather than a Python loop over the stream
    longest = max(length for _, length in codes.values())
    alphabet = np.array(sorted(codes), dtype=np.int64)
    bit_rows = np.zeros((alphabet.size, longest), dtype=np.uint8)
    row_lengths = np.zeros(alphabet.size, dtype=np.int64)
    for row, symbol in enumerate(alphabet):
        code, length = codes[int(symbol)]
        row_lengths[row] = length
        for i in range(length):
            bit_rows[row, i] = (code >> (length - 1 - i)) & 1
    rows = np.searchsorted(alphabet, symbols)
    if np.any(rows >= alphabet.size) or np.any(alphabet[np.minimum(rows, alphabet.size - 1)]
                                               != symbols):
        missing = symbols[(rows >= alphabet.size)
                          | (alphabet[np.minimum(rows, alphabet.size - 1)] != symbols)][0]
        raise KeyError(f"symbol {int(missing)} has no code length")
    keep = np.arange(longest)[None, :] < row_lengths[rows][:, None]
    bits = bit_rows[rows][keep]
    return np.packbits(bits).tobytes()


def decode(data: bytes, lengths: Mapping[int, int], count: int) -> np.ndarray:
    """The first `count` symbols coded in `data` (the inverse of `encode`).

    Raises:
        ValueError: `data` ends before `count` symbols, or holds a bit pattern that is no
            code (possible only when the lengths do not fill the code space).
    """
    if count == 0:
        return np.zeros(0, dtype=np.int64)
    codes = canonical_codes(lengths)
    longest = max(length for _, length in codes.values())
    # table[v] for every `longest`-bit value v: the symbol whose code prefixes v, and its
    # length; -1 where no code does
    table_symbol = np.full(1 << longest, -1, dtype=np.int64)
    table_length = np.zeros(1 << longest, dtype=np.int64)
    for symbol, (code, length) in codes.items():
        first = code << (longest - length)
        table_symbol[first:first + (1 << (longest - length))] = symbol
        table_length[first:first + (1 << (longest - length))] = length
    bits = np.unpackbits(np.frombuffer(data, dtype=np.uint8))
    bits = np.concatenate([bits, np.zeros(longest, dtype=np.uint8)])  # room to peek
    # window[p]: the `longest` bits starting at bit p, as an integer
    window = np.zeros(bits.size - longest + 1, dtype=np.int64)
    for i in range(longest):
        window = (window << 1) | bits[i:i + window.size]
    window_list = window.tolist()
    symbol_list, length_list = table_symbol.tolist(), table_length.tolist()
    total = bits.size - longest
    out = [0] * count
    position = 0
    for k in range(count):
        if position >= total:
            raise ValueError(f"the coded stream ends after {k} of {count} symbols")
        value = window_list[position]
        symbol = symbol_list[value]
        if symbol < 0:
            raise ValueError(f"bit pattern at bit {position} is no code")
        out[k] = symbol
        position += length_list[value]
    if position > total:
        raise ValueError(f"the coded stream ends inside symbol {count}")
    return np.array(out, dtype=np.int64)


def frequencies_of(symbols: Sequence[int] | np.ndarray) -> dict[int, int]:
    """symbol -> count, for `code_lengths`."""
    values, counts = np.unique(np.asarray(symbols, dtype=np.int64).ravel(), return_counts=True)
    return {int(v): int(c) for v, c in zip(values, counts, strict=True)}


def entropy_bits(frequencies: Mapping[int, int]) -> float:
    """Empirical entropy H of a stream with these counts, in bits per symbol."""
    counts = np.array(list(frequencies.values()), dtype=np.float64)
    p = counts / counts.sum()
    return float(-(p * np.log2(p)).sum())


def mean_length(frequencies: Mapping[int, int], lengths: Mapping[int, int]) -> float:
    """Mean code length in bits per symbol of a stream with these counts."""
    total = sum(frequencies.values())
    return sum(count * lengths[s] for s, count in frequencies.items()) / total
