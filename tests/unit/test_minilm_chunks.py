"""MiniLM's forward passes: texts of similar length share one, so little is padding."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from tailguard.models.minilm import length_chunks


def _cost(chunks: list[list[int]], lengths: list[int], overhead: int) -> int:
    return sum(overhead + len(c) * max(lengths[i] for i in c) for c in chunks)


def test_similar_lengths_share_one_pass_and_outliers_get_their_own() -> None:
    assert length_chunks([12, 14, 13, 12]) == [[0, 3, 2, 1]]  # sorted, one pass
    short, long = [10] * 8, [60] * 8
    chunks = length_chunks(short + long)
    assert [sorted(c) for c in chunks] == [list(range(8)), list(range(8, 16))]
    assert length_chunks([]) == []


@settings(max_examples=200, deadline=None)
@given(lengths=st.lists(st.integers(1, 256), max_size=40), overhead=st.integers(0, 100))
def test_every_row_once_and_never_dearer_than_one_padded_pass(
        lengths: list[int], overhead: int) -> None:
    chunks = length_chunks(lengths, overhead)
    assert sorted(i for c in chunks for i in c) == list(range(len(lengths)))
    if lengths:
        one = [list(range(len(lengths)))]
        assert _cost(chunks, lengths, overhead) <= _cost(one, lengths, overhead)
        each = [[i] for i in range(len(lengths))]
        assert _cost(chunks, lengths, overhead) <= _cost(each, lengths, overhead)


def test_many_rows_fall_back_to_fixed_chunks_of_sorted_rows() -> None:
    lengths = list(range(300, 0, -1))
    chunks = length_chunks(lengths)
    assert all(len(c) <= 32 for c in chunks) and sum(map(len, chunks)) == 300
    assert [lengths[i] for i in chunks[0]] == sorted(lengths)[:32]
