"""Erlang B/C, the batching latency model, and the replica search built on them."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tailguard.autoscale.queueing import (
    erlang_b,
    erlang_c,
    min_replicas_for_latency,
    min_replicas_for_utilization,
    mmc_wait_quantile_s,
    predict_latency_quantile,
)
from tailguard.autoscale.snapshot import ServiceProfile


def _erlang_b_recursive(c: int, a: float) -> float:
    b = 1.0
    for n in range(1, c + 1):
        b = a * b / (n + a * b)
    return b


@pytest.mark.parametrize(
    ("servers", "load", "expected"),
    [(1, 1.0, 0.5), (2, 1.0, 0.2), (10, 8.0, 0.12166)],
)
def test_erlang_b_known_values(servers: int, load: float, expected: float) -> None:
    assert erlang_b(servers, load) == pytest.approx(expected, rel=1e-4)


@pytest.mark.parametrize(
    ("servers", "load", "expected"),
    # C(2, 1) = 1/3; C(10, 8) = 0.4092 (standard tables); M/M/1: C = rho.
    [(2, 1.0, 1 / 3), (10, 8.0, 0.40918), (1, 0.7, 0.7)],
)
def test_erlang_c_known_values(servers: int, load: float, expected: float) -> None:
    assert erlang_c(servers, load) == pytest.approx(expected, rel=1e-4)


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 2000), st.floats(0.01, 1500.0))
def test_erlang_b_matches_the_classic_recursion(servers: int, load: float) -> None:
    assert erlang_b(servers, load) == pytest.approx(_erlang_b_recursive(servers, load), rel=1e-7)


def test_unstable_queue_waits_forever() -> None:
    assert erlang_c(4, 4.0) == 1.0
    assert mmc_wait_quantile_s(100.0, 0.05, 5, 0.99) == math.inf


def test_mm1_wait_quantile_matches_closed_form() -> None:
    # M/M/1: P(Wq > t) = rho * exp(-(mu - lambda) t)
    lam, s = 8.0, 0.1
    rho, mu = lam * s, 1 / s
    expected = math.log(rho / 0.01) / (mu - lam)
    assert mmc_wait_quantile_s(lam, s, 1, 0.99) == pytest.approx(expected)


PROFILE = ServiceProfile(fixed_s=0.020, per_row_s=0.002, max_batch_size=16)


@settings(max_examples=40, deadline=None)
@given(st.floats(1.0, 20000.0), st.integers(1, 200), st.floats(0.3, 4.0))
def test_predicted_latency_never_increases_with_replicas(rate: float, c: int, cv: float) -> None:
    a = predict_latency_quantile(rate, c, PROFILE, arrival_cv=cv).latency_s
    b = predict_latency_quantile(rate, c + 1, PROFILE, arrival_cv=cv).latency_s
    assert b <= a


def test_load_picks_bigger_batches() -> None:
    light = predict_latency_quantile(20.0, 1, PROFILE)
    heavy = predict_latency_quantile(250.0, 1, PROFILE)
    assert light.batch_size < heavy.batch_size
    assert heavy.utilization < 1.0
    # Beyond one replica's capacity at the largest batch (16 / 0.052 s = 307 rows/s): infinite.
    assert predict_latency_quantile(400.0, 1, PROFILE).latency_s == math.inf


@settings(max_examples=40, deadline=None)
@given(st.floats(1.0, 50000.0), st.floats(0.08, 1.0), st.floats(0.5, 3.0))
def test_min_replicas_is_the_fewest_that_meet_the_target(
    rate: float, target: float, cv: float
) -> None:
    c = min_replicas_for_latency(rate, PROFILE, target, arrival_cv=cv)
    assert predict_latency_quantile(rate, c, PROFILE, arrival_cv=cv).latency_s <= target
    if c > 1:
        assert predict_latency_quantile(rate, c - 1, PROFILE, arrival_cv=cv).latency_s > target


def test_min_replicas_caps_at_max_when_target_is_impossible() -> None:
    # No batch is faster than s(1) = 22 ms, so a 10 ms objective cannot be met.
    assert min_replicas_for_latency(100.0, PROFILE, 0.010, max_replicas=50) == 50
    assert min_replicas_for_latency(0.0, PROFILE, 0.2) == 0


def test_utilization_bound() -> None:
    cap = PROFILE.capacity_rps()
    assert min_replicas_for_utilization(cap * 0.8 * 3, PROFILE, 0.8) == 3
    assert min_replicas_for_utilization(cap * 0.8 * 3 + 1, PROFILE, 0.8) == 4
    with pytest.raises(ValueError, match="ceiling"):
        min_replicas_for_utilization(1.0, PROFILE, 1.5)


def test_service_profile_table_and_fit() -> None:
    table = {1: 0.022, 4: 0.028, 16: 0.052}
    prof = ServiceProfile.from_table(table)
    assert prof.max_batch_size == 16
    assert prof.service_time_s(1) == pytest.approx(0.022)
    assert prof.service_time_s(10) == pytest.approx(0.028 + (0.052 - 0.028) * 6 / 12)
    assert prof.service_time_s(32) == pytest.approx(0.052 + 0.002 * 16)
    fit = ServiceProfile.fit(table)
    assert fit.fixed_s == pytest.approx(0.020, abs=1e-9)
    assert fit.per_row_s == pytest.approx(0.002, abs=1e-9)
    with pytest.raises(ValueError, match="increasing"):
        ServiceProfile(table=((4, 0.1), (2, 0.05)))
