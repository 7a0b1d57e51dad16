"""Pure order and partition logic: permutations, exactly-once splits, resume positions."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tailguard.data.order import EpochOrder, Partition, rank_positions


def _global_steps_concat(n: int, b: int, world: int, workers: int, start: int) -> np.ndarray:
    """Concatenate, step by step, (rank 0's batch, rank 1's batch, …) as DataLoaders yield them."""
    per_rank = []
    for r in range(world):
        parts = [Partition(n, b, world, r, start, workers, j) for j in range(workers)]
        order = rank_positions(parts)
        per_rank.append(np.array_split(order, range(b, len(order), b)) if len(order) else [])
    steps = max((len(x) for x in per_rank), default=0)
    out = [per_rank[r][s] for s in range(steps) for r in range(world) if s < len(per_rank[r])]
    return np.concatenate(out) if out else np.zeros(0, dtype=np.int64)


@settings(max_examples=150, deadline=None)
@given(
    n=st.integers(0, 300),
    b=st.integers(1, 17),
    world=st.integers(1, 4),
    workers=st.integers(1, 4),
    data=st.data(),
)
def test_partition_is_exactly_once_and_in_global_order(
    n: int, b: int, world: int, workers: int, data: st.DataObject
) -> None:
    start = data.draw(st.integers(0, n))
    got = _global_steps_concat(n, b, world, workers, start)
    np.testing.assert_array_equal(got, np.arange(start, n))
    for r in range(world):
        p = Partition(n, b, world, r, start)
        per_worker = [
            Partition(n, b, world, r, start, workers, j).positions() for j in range(workers)
        ]
        assert p.rank_samples() == sum(len(x) for x in per_worker)
        assert p.rank_batches() <= p.global_steps
        assert p.global_steps == -(-(n - start) // (b * world))


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(1, 200),
    b=st.integers(1, 9),
    world=st.integers(1, 4),
    workers=st.integers(1, 3),
    cuts=st.lists(st.integers(0, 200), max_size=5),
)
def test_positions_between_windows_concatenate_to_positions(
    n: int, b: int, world: int, workers: int, cuts: list[int]
) -> None:
    bounds = sorted({0, n, *(min(c, n) for c in cuts)})
    for r in range(world):
        for j in range(workers):
            p = Partition(n, b, world, r, 0, workers, j)
            pieces = [
                p.positions_between(lo, hi) for lo, hi in itertools.pairwise(bounds)
            ]
            np.testing.assert_array_equal(np.concatenate(pieces), p.positions())


def test_tail_batches_are_split_in_rank_order() -> None:
    # 10 samples, b=3, world=3: step 0 = [0..8] (3 each), step 1 = 9 only -> rank 0 short, 1-2 empty
    ranks = [Partition(10, 3, 3, r).positions().tolist() for r in range(3)]
    assert ranks == [[0, 1, 2, 9], [3, 4, 5], [6, 7, 8]]
    assert [Partition(10, 3, 3, r).rank_batches() for r in range(3)] == [2, 1, 1]
    assert Partition(10, 3, 3, 2).global_steps == 2


def test_workers_take_every_kth_rank_batch() -> None:
    w0 = Partition(20, 2, 1, 0, 0, 2, 0).positions().tolist()
    w1 = Partition(20, 2, 1, 0, 0, 2, 1).positions().tolist()
    assert w0 == [0, 1, 4, 5, 8, 9, 12, 13, 16, 17]
    assert w1 == [2, 3, 6, 7, 10, 11, 14, 15, 18, 19]


def test_partition_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="rank"):
        Partition(10, 2, 2, 2)
    with pytest.raises(ValueError, match="batch_size"):
        Partition(10, 0)
    with pytest.raises(ValueError, match="resume position"):
        Partition(10, 2, start=11)


@settings(max_examples=60, deadline=None)
@given(
    shard_rows=st.lists(st.integers(1, 40), min_size=0, max_size=12),
    seed=st.integers(0, 2**32),
    epoch=st.integers(0, 50),
    window=st.integers(1, 5),
)
def test_epoch_order_is_a_deterministic_permutation(
    shard_rows: list[int], seed: int, epoch: int, window: int
) -> None:
    order = EpochOrder(tuple(shard_rows), seed, epoch, True, window).global_order()
    n = sum(shard_rows)
    np.testing.assert_array_equal(np.sort(order), np.arange(n))
    again = EpochOrder(tuple(shard_rows), seed, epoch, True, window).global_order()
    np.testing.assert_array_equal(order, again)
    plain = EpochOrder(tuple(shard_rows), seed, epoch, False, window).global_order()
    np.testing.assert_array_equal(plain, np.arange(n))


def test_epoch_order_is_shard_local_and_changes_with_seed_and_epoch() -> None:
    rows = (10,) * 12
    base = EpochOrder(rows, 0, 0, True, window_shards=4)
    order = base.global_order()
    # each window of 4 shards (40 samples) holds exactly the rows of its 4 shards
    for k, shards in enumerate(base.windows):
        chunk = order[k * 40 : (k + 1) * 40]
        assert set((chunk // 10).tolist()) == set(shards)
    assert not np.array_equal(order, EpochOrder(rows, 0, 1, True).global_order())
    assert not np.array_equal(order, EpochOrder(rows, 1, 0, True).global_order())


def test_locate_maps_positions_to_shard_rows() -> None:
    order = EpochOrder((3, 5, 2), seed=7, epoch=2, shuffle=True, window_shards=2)
    ids = order.global_order()
    for k in range(len(order.windows)):
        pos = np.arange(order.window_starts[k], order.window_starts[k + 1])
        shards, rows = order.locate(k, pos)
        np.testing.assert_array_equal(order.shard_offsets[shards] + rows, ids[pos])
