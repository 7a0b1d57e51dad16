"""The finish-time predictors: fluid drain and batch by batch."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tailguard.serve.gate.finish import estimate_finish, estimate_finish_batched

FAST = settings(max_examples=150, deadline=None)


def test_estimate_finish_drains_inflight_and_queue_then_serves_the_batch() -> None:
    # 100 rows in flight + 300 ahead at 100 rows/s on each of 2 replicas = 2 s, + wait + batch.
    finish = estimate_finish(5.0, 300, 100.0, 2, 0.02, inflight_rows=100, batch_wait_s=0.005)
    assert finish == pytest.approx(5.0 + 2.0 + 0.005 + 0.02)
    assert estimate_finish(0.0, 0, 50.0, 1, 0.01) == pytest.approx(0.01)
    assert math.isinf(estimate_finish(0.0, 10, 0.0, 3))
    assert math.isinf(estimate_finish(0.0, 10, 50.0, 0))


def test_batched_estimate_hands_earlier_batches_to_the_replica_free_first() -> None:
    # Replicas free in 10 ms and 30 ms; full batches take 50 ms, the request's own 20 ms.
    free = (0.030, 0.010)
    assert estimate_finish_batched(1.0, free, 0, 0.05, 0.02) == pytest.approx(1.0 + 0.010 + 0.02)
    # One batch before: it takes the replica free at 10 ms (busy to 60); ours starts at 30.
    assert estimate_finish_batched(0.0, free, 1, 0.05, 0.02) == pytest.approx(0.030 + 0.02)
    # Two before: the second takes the one free at 30 (to 80); ours starts at 60, after the wait.
    assert estimate_finish_batched(0.0, free, 2, 0.05, 0.02, batch_wait_s=0.002) == (
        pytest.approx(0.060 + 0.002 + 0.02))
    assert estimate_finish_batched(0.0, (0.0,), 3, 0.05, 0.02) == pytest.approx(0.17)
    assert math.isinf(estimate_finish_batched(0.0, (), 0, 0.05, 0.02))
    # Far behind, the fluid mean: (10 + 30 ms + 1000 x 50 ms) / 2 replicas.
    assert estimate_finish_batched(0.0, free, 1000, 0.05, 0.0) == pytest.approx(25.02)


@given(free=st.lists(st.floats(0.0, 0.5), min_size=1, max_size=6),
       before=st.integers(0, 200), full=st.floats(0.001, 0.2))
@FAST
def test_batched_estimate_grows_with_the_queue_and_shares_it_across_replicas(
        free: list[float], before: int, full: float) -> None:
    one = estimate_finish_batched(0.0, free, before, full, 0.0)
    assert estimate_finish_batched(0.0, free, before + 1, full, 0.0) >= one
    # Work-conserving: no earlier than the first free replica, no later than the last one
    # after its even share of the batches ahead.
    assert min(free) - 1e-9 <= one <= max(free) + math.ceil(before / len(free)) * full + 1e-9


