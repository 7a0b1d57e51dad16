"""The ``slo`` policy: model-based count, observed-P99 correction, utilisation ceiling, windows."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tailguard.autoscale.policies.slo import SloConfig, SloState, decide, recommend
from tailguard.autoscale.queueing import predict_latency_quantile
from tailguard.autoscale.snapshot import MetricsSnapshot, ServiceProfile

PROFILE = ServiceProfile(fixed_s=0.020, per_row_s=0.002, max_batch_size=16)


def _snap(
    rate: float,
    ready: int = 4,
    p99: float | None = None,
    starting: int = 0,
    queue: int = 0,
    cv: float = 1.0,
) -> MetricsSnapshot:
    return MetricsSnapshot(
        window_s=10.0,
        arrival_rate_rps=rate,
        ready_replicas=ready,
        starting_replicas=starting,
        queue_depth=queue,
        ongoing_requests=queue,
        latency_p99_s=p99,
        arrival_cv=cv,
        service_profile=PROFILE,
    )


@settings(max_examples=40, deadline=None)
@given(st.floats(1.0, 30000.0), st.floats(0.5, 3.0))
def test_recommendation_meets_the_objective_with_headroom(rate: float, cv: float) -> None:
    cfg = SloConfig(slo_p99_s=0.2, rate_headroom=0.2)
    n = recommend(_snap(rate, cv=cv), cfg)
    planned = rate * 1.2
    assert predict_latency_quantile(planned, n, PROFILE, arrival_cv=cv).latency_s <= 0.2
    # and each replica stays under the utilisation ceiling at the largest batch
    assert planned / (n * PROFILE.capacity_rps()) <= 0.8 + 1e-9


@pytest.mark.parametrize("rate", [50.0, 500.0, 5000.0])
def test_more_load_never_means_fewer_replicas(rate: float) -> None:
    cfg = SloConfig()
    assert recommend(_snap(rate * 2), cfg) >= recommend(_snap(rate), cfg)


def test_tighter_objective_needs_more_replicas() -> None:
    tight = SloConfig(slo_p99_s=0.06, utilization_ceiling=1.0)
    loose = SloConfig(slo_p99_s=0.5, utilization_ceiling=1.0)
    assert recommend(_snap(3000.0), tight) > recommend(_snap(3000.0), loose)


def test_loose_objective_falls_back_to_the_utilisation_ceiling() -> None:
    rate = 3000.0
    cfg = SloConfig(slo_p99_s=10.0, rate_headroom=0.0, utilization_ceiling=0.5)
    assert recommend(_snap(rate), cfg) == math.ceil(rate / (PROFILE.capacity_rps() * 0.5))


def test_observed_p99_over_target_corrects_upwards_within_bounds() -> None:
    # The utilisation ceiling is lifted so that only the latency model decides.
    cfg = SloConfig(max_correction=3.0, utilization_ceiling=1.0)
    base = recommend(_snap(2000.0, ready=10, p99=0.05), cfg)
    corrected = recommend(_snap(2000.0, ready=10, p99=0.6), cfg)
    capped = recommend(_snap(2000.0, ready=10, p99=60.0), cfg)
    assert corrected > base
    assert corrected <= capped <= math.ceil(base * 3.0)


def test_no_correction_while_replicas_are_still_starting() -> None:
    cfg = SloConfig(utilization_ceiling=1.0)
    settled = recommend(_snap(2000.0, ready=10, p99=0.6), cfg)
    starting = recommend(_snap(2000.0, ready=10, p99=0.6, starting=3), cfg)
    assert starting < settled
    assert starting == recommend(_snap(2000.0, ready=10, starting=3), cfg)


def test_backlog_adds_capacity_to_drain_it() -> None:
    cfg = SloConfig(backlog_drain_s=5.0)
    assert recommend(_snap(1000.0, queue=5000), cfg) > recommend(_snap(1000.0), cfg)


def test_idle_recommends_zero_and_demand_at_least_one() -> None:
    assert recommend(_snap(0.0), SloConfig()) == 0
    assert recommend(_snap(0.0, queue=1), SloConfig()) >= 1


def test_scales_up_at_once_and_down_after_the_stabilisation_window() -> None:
    cfg = SloConfig(scale_down_stabilization_s=120.0)
    high = recommend(_snap(5000.0), cfg)
    low = recommend(_snap(500.0), cfg)
    assert high > low
    state = SloState()
    replicas, state = decide(_snap(500.0), state, cfg, now=0.0)
    assert replicas == low
    replicas, state = decide(_snap(5000.0, ready=low), state, cfg, now=1.0)
    assert replicas == high  # immediately
    for t in range(2, 121):
        replicas, state = decide(_snap(500.0, ready=high), state, cfg, now=float(t))
        assert replicas == high, t
    replicas, state = decide(_snap(500.0, ready=high), state, cfg, now=121.0)
    assert replicas == low


def test_config_is_checked() -> None:
    with pytest.raises(ValueError, match="utilization_ceiling"):
        SloConfig(utilization_ceiling=0.0)
    with pytest.raises(ValueError, match="max_correction"):
        SloConfig(max_correction=0.5)


def test_a_surge_in_the_recent_window_counts_before_the_average_moves() -> None:
    calm = _snap(400.0)
    surge = MetricsSnapshot(
        window_s=10.0,
        arrival_rate_rps=400.0,
        recent_arrival_rate_rps=1200.0,
        ready_replicas=4,
        service_profile=PROFILE,
    )
    assert surge.recent_rows_per_s == 1200.0 and calm.recent_rows_per_s == 400.0
    assert recommend(surge, SloConfig()) > recommend(calm, SloConfig())
