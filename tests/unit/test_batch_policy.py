"""The batch cap as a pure function of the service fit, the fleet and the backlog."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tailguard.serve.deployment.batch_policy import (
    BatchPolicy,
    BatchView,
    batch_cap,
    slo_budget_s,
)
from tailguard.serve.deployment.estimates import ServiceFit, ServiceModel


def _cap(fit: ServiceFit | None, *, replicas: int = 1, queued: int = 0, slo_ms: float = 100,
         fraction: float = 0.7, max_batch: int = 64) -> int:
    policy = BatchPolicy(max_batch, slo_ms / 1000.0, fraction)
    return batch_cap(BatchView(fit, replicas, queued), policy)


def test_no_objective_or_nothing_measured_means_max_batch() -> None:
    assert batch_cap(BatchView(ServiceFit(0.01, 0.002), 1), BatchPolicy(64)) == 64
    assert _cap(None) == 64


@pytest.mark.parametrize(("replicas", "fixed_ms", "per_row_ms", "slo_ms", "expected"), [
    (1, 10, 2, 100, 12),  # 35 ms per batch: 10 + 2 x 12 = 34
    (2, 10, 2, 100, 18),  # 46.7 ms: the next replica frees after half a batch
    (4, 10, 2, 100, 23),  # 56 ms
    (1, 10, 2, 20, 1),  # nothing fits the budget: one row still runs
    (1, 0, 1, 1000, 64),  # everything fits: max_batch_size
    (2, 12, 9, 50, 1),  # the default minilm's fit on this machine: one row fits 23 ms
])
def test_slo_size_leaves_room_for_the_wait_and_own_batch(
        replicas: int, fixed_ms: float, per_row_ms: float, slo_ms: float, expected: int) -> None:
    fit = ServiceFit(fixed_ms / 1000, per_row_ms / 1000)
    cap = _cap(fit, replicas=replicas, slo_ms=slo_ms)
    assert cap == expected
    budget = slo_budget_s(BatchPolicy(64, slo_ms / 1000, 0.7), replicas)
    assert budget is not None
    assert cap == 1 or fit.seconds(cap) <= budget + 1e-12
    assert cap == 64 or fit.seconds(cap + 1) > budget


def test_a_proportional_fit_does_not_trap_the_cap_at_one_row() -> None:
    # Only 1-row batches seen (20 ms each): the fit goes through the origin and predicts
    # 40 ms for two rows, over the 35 ms budget; the cap still probes two rows, once.
    model = ServiceModel()
    for _ in range(20):
        model.observe(1, 0.020)
    assert _cap(model.fit) == 2
    for _ in range(5):
        model.observe(2, 0.024)  # two rows took 24 ms: there is a batching gain
    assert _cap(model.fit) == 4  # 16 ms + 4 ms a row: 4 rows in 32 ms, within 35
    model.observe(6, 0.080)  # measured far over budget: the largest size blocks the probe
    assert _cap(model.fit) < 6


def test_a_backlog_the_slo_size_cannot_drain_grows_the_batch() -> None:
    fit = ServiceFit(0.030, 0.002)  # 35 ms budget: 2 rows; 34 ms a batch
    assert _cap(fit) == 2
    assert _cap(fit, queued=5) == 2  # drained within 100 ms at 2 rows per 34 ms
    grown = _cap(fit, queued=40)  # late anyway at 2 rows a batch: drain it in one SLO
    assert 2 < grown < 64
    assert grown * 0.1 / fit.seconds(grown) >= 40
    assert (grown - 1) * 0.1 / fit.seconds(grown - 1) < 40
    assert _cap(fit, queued=10_000) == 64  # nothing drains it in time: the most throughput


@given(fixed=st.floats(0.0, 0.1), per_row=st.floats(1e-5, 0.05),
       replicas=st.integers(1, 8), queued=st.integers(0, 10_000),
       slo_ms=st.floats(1.0, 2000.0), max_batch=st.integers(1, 512))
def test_cap_is_within_bounds_and_grows_with_the_backlog(
        fixed: float, per_row: float, replicas: int, queued: int, slo_ms: float,
        max_batch: int) -> None:
    fit = ServiceFit(fixed, per_row)
    cap = _cap(fit, replicas=replicas, queued=queued, slo_ms=slo_ms, max_batch=max_batch)
    assert 1 <= cap <= max_batch
    assert cap >= _cap(fit, replicas=replicas, queued=0, slo_ms=slo_ms, max_batch=max_batch)
