"""Step plans agree with the data pipeline's partition; collation shapes and placeholders."""

from __future__ import annotations

from itertools import pairwise

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from tailguard.data.order import Partition
from tailguard.train.batching import (
    BatchTaker,
    Collator,
    StepPlan,
    per_rank_batch,
    resolve_columns,
)


@given(n=st.integers(0, 500), b=st.integers(1, 40), world=st.integers(1, 6),
       start_frac=st.floats(0, 1))
def test_plan_matches_data_partition(n: int, b: int, world: int, start_frac: float) -> None:
    start = int(n * start_frac)
    plan = StepPlan(n, b, world)
    steps = plan.steps_left(start)
    assert steps == Partition(n, b, world, 0, start).global_steps
    for rank in range(world):
        consumed, taken = start, []
        for _ in range(steps):
            rows = plan.rank_rows(consumed, rank)
            taken.append(rows)
            consumed += plan.global_rows(consumed)
        assert consumed == n
        assert sum(taken) == Partition(n, b, world, rank, start).rank_samples()
        # every rank's rows are exactly the positions the dataset yields for it, step by step
        positions = Partition(n, b, world, rank, start).positions()
        assert len(positions) == sum(taken)


def test_last_global_batch_leaves_high_ranks_empty() -> None:
    plan = StepPlan(num_samples=10, per_rank_batch=4, world_size=2)
    assert [plan.rank_rows(8, r) for r in (0, 1)] == [2, 0]
    assert plan.global_rows(8) == 2


@pytest.mark.parametrize("global_batch, world, nominal, expected",
                         [(32, 2, 16, 16), (32, 1, 16, 32), (32, 4, 16, 8), (30, 4, 15, 15)])
def test_per_rank_batch_keeps_global_batch_when_it_divides(
        global_batch: int, world: int, nominal: int, expected: int) -> None:
    assert per_rank_batch(global_batch, world, nominal) == expected


def test_resolve_columns_expands_globs_in_dataset_order() -> None:
    cols = ["id", "px0", "px1", "px10", "px2", "label"]
    assert resolve_columns(["px*"], cols) == ["px0", "px1", "px10", "px2"]
    # patterns keep their own order; a column matched twice is taken once
    assert resolve_columns(["px1", "px*"], cols) == ["px1", "px0", "px10", "px2"]
    with pytest.raises(ValueError, match="matches none"):
        resolve_columns(["feat*"], cols)


def test_collator_stacks_numeric_columns_and_pads_empty_ranks() -> None:
    collate = Collator(["a", "b"], "y", label_dtype=torch.int64)
    with pytest.raises(RuntimeError, match="placeholder"):
        collate([])
    batch = collate([{"a": np.float64(1), "b": np.float64(2), "y": np.int64(3)},
                     {"a": np.float64(4), "b": np.float64(5), "y": np.int64(6)}])
    assert isinstance(batch.features, torch.Tensor)
    assert batch.features.dtype == torch.float32 and batch.features.shape == (2, 2)
    assert batch.labels.tolist() == [3, 6] and batch.weights.tolist() == [1.0, 1.0]
    empty = collate([])
    assert empty.rows == 1 and empty.weights.tolist() == [0.0]


def test_collator_passes_text_as_strings() -> None:
    collate = Collator(["text"], "y", label_dtype=torch.int64)
    batch = collate([{"text": "hello", "y": 1}, {"text": b"bye", "y": 0}])
    assert batch.features == ["hello", "bye"]


def _chunks(columns: dict[str, np.ndarray], sizes: list[int]) -> list[dict[str, np.ndarray]]:
    bounds = np.cumsum([0, *sizes])
    return [{c: v[lo:hi] for c, v in columns.items()} for lo, hi in pairwise(bounds)]


@given(sizes=st.lists(st.integers(0, 9), min_size=1, max_size=6), b=st.integers(1, 7))
def test_list_column_batches_equal_sample_collation(sizes: list[int], b: int) -> None:
    """Collating column chunks and slicing them gives the batches that collating one dict per
    sample gives, across chunk (shuffle-window) boundaries; a list column is densified,
    labels kept."""
    n = sum(sizes)
    rng = np.random.default_rng(n)
    vectors = np.empty(n, dtype=object)
    vectors[:] = [rng.random(3).astype(np.float32) for _ in range(n)]
    columns = {"v": vectors, "label": rng.integers(0, 5, n)}
    samples = [{c: v[i] for c, v in columns.items()} for i in range(n)]
    fast = Collator(["v"], "label", label_dtype=torch.int64)
    slow = Collator(["v"], "label", label_dtype=torch.int64)
    taker = BatchTaker(fast.from_columns(c) for c in _chunks(columns, sizes)
                       if len(c["label"]))
    for lo in range(0, n - n % b, b):
        got, want = taker.take(b), slow(samples[lo:lo + b])
        assert got is not None
        assert isinstance(got.features, torch.Tensor) and isinstance(want.features, torch.Tensor)
        torch.testing.assert_close(got.features, want.features)
        torch.testing.assert_close(got.labels, want.labels)
        torch.testing.assert_close(got.weights, want.weights)
    if n % b:
        assert taker.take(b) is None  # the stream ends inside the batch


def test_from_columns_stacks_numeric_columns_and_keeps_text() -> None:
    numeric = Collator(["a", "b"], "y", label_dtype=torch.float32)
    batch = numeric.from_columns({"a": np.array([1, 2]), "b": np.array([0.5, 1.5]),
                                  "y": np.array([0.0, 1.0])})
    assert isinstance(batch.features, torch.Tensor)
    assert batch.features.tolist() == [[1.0, 0.5], [2.0, 1.5]]
    text = Collator(["t"], "y", label_dtype=torch.int64)
    words = np.array(["hi", "yo"], dtype=object)
    assert text.from_columns({"t": words, "y": np.array([0, 1])}).features == ["hi", "yo"]
    placeholder = text.from_columns({"t": words[:0], "y": np.array([], dtype=np.int64)})
    assert placeholder.rows == 1 and float(placeholder.weights.sum()) == 0.0


@given(sizes=st.lists(st.integers(0, 9), min_size=1, max_size=6), b=st.integers(1, 7))
def test_batch_taker_slices_collated_chunks_like_per_sample_collation(sizes: list[int],
                                                                      b: int) -> None:
    """Collating each chunk once and slicing it gives the batches that collating one dict per
    sample gives, across chunk boundaries, for tensor and text features."""
    n = sum(sizes)
    rng = np.random.default_rng(n + b)
    words = np.array([f"w{i}" for i in range(n)], dtype=object)
    columns = {"v": rng.random((n, 3)).astype(np.float32), "t": words,
               "label": rng.integers(0, 5, n)}
    samples = [{c: v[i] for c, v in columns.items()} for i in range(n)]
    for feature in ("v", "t"):
        fast = Collator([feature], "label", label_dtype=torch.int64)
        slow = Collator([feature], "label", label_dtype=torch.int64)
        taker = BatchTaker(fast.from_columns(c) for c in _chunks(columns, sizes)
                           if len(c["label"]))
        for lo in range(0, n - n % b, b):
            got, want = taker.take(b), slow(samples[lo:lo + b])
            assert got is not None and got.rows == b and not got.placeholder
            if feature == "t":
                assert got.features == want.features
            else:
                assert isinstance(got.features, torch.Tensor)
                assert isinstance(want.features, torch.Tensor)
                torch.testing.assert_close(got.features, want.features)
            torch.testing.assert_close(got.labels, want.labels)
            torch.testing.assert_close(got.weights, want.weights)
        if n % b:
            assert taker.take(b) is None  # the stream ends inside the batch


def test_placeholder_batches_are_marked() -> None:
    collate = Collator(["x"], "y", label_dtype=torch.int64)
    assert not collate([{"x": 1.0, "y": 0}]).placeholder
    assert collate([]).placeholder
