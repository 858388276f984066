"""Canonical Huffman coding (compression/huffman.py): exact, prefix-free, near the entropy."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minitorch_compress.compression import huffman

streams = st.lists(st.integers(0, 40), min_size=1, max_size=400)
skewed = st.lists(st.sampled_from([0, 0, 0, 0, 0, 0, 1, 1, 2, 3, 7, 15]), min_size=1,
                  max_size=400)


@settings(deadline=None, max_examples=150)
@given(st.one_of(streams, skewed))
def test_decode_inverts_encode_for_any_stream(symbols):
    lengths = huffman.code_lengths(huffman.frequencies_of(symbols))
    data = huffman.encode(symbols, lengths)
    np.testing.assert_array_equal(huffman.decode(data, lengths, len(symbols)), symbols)


@settings(deadline=None, max_examples=150)
@given(st.one_of(streams, skewed))
def test_code_lengths_satisfy_kraft_and_the_mean_is_within_one_bit_of_the_entropy(symbols):
    frequencies = huffman.frequencies_of(symbols)
    lengths = huffman.code_lengths(frequencies)
    kraft = sum(2.0 ** -length for length in lengths.values())
    if len(frequencies) >= 2:
        assert kraft == 1.0  # a full tree: no code space is wasted
        entropy = huffman.entropy_bits(frequencies)
        assert entropy - 1e-12 <= huffman.mean_length(frequencies, lengths) < entropy + 1
    else:
        assert lengths == {symbols[0]: 1} and kraft == 0.5


def test_canonical_codes_are_prefix_free_and_follow_the_lengths():
    lengths = {0: 1, 1: 2, 2: 3, 3: 3}
    codes = huffman.canonical_codes(lengths)
    assert codes == {0: (0b0, 1), 1: (0b10, 2), 2: (0b110, 3), 3: (0b111, 3)}


def test_a_truncated_stream_is_an_error_not_garbage():
    symbols = [0, 1, 2, 3] * 50
    lengths = huffman.code_lengths(huffman.frequencies_of(symbols))
    data = huffman.encode(symbols, lengths)
    with pytest.raises(ValueError, match="ends"):
        huffman.decode(data[: len(data) // 2], lengths, len(symbols))
    with pytest.raises(KeyError):
        huffman.encode([9], lengths)
