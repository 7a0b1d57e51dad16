"""The ``slo`` policy: forecast, data-driven margins, model-based count, correction, windows."""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tailguard.autoscale.policies import make_autoscaler
from tailguard.autoscale.policies.slo import (
    SLO_STATE_VERSION,
    SloState,
    decide,
    forecast_rate,
    recommend,
)
from tailguard.autoscale.policies.slo import SloConfig as _SloConfig
from tailguard.autoscale.queueing import predict_latency_quantile
from tailguard.autoscale.snapshot import MetricsSnapshot, ServiceProfile

PROFILE = ServiceProfile(fixed_s=0.020, per_row_s=0.002, max_batch_size=16)


def SloConfig(**fields: Any) -> _SloConfig:
    """The policy's sizing core, without its spare replicas: these tests pin the fewest
    replicas that meet the objective; test_autoscale_slo_steps.py tests the headroom."""
    return _SloConfig(**{"spare_replicas": 0, "floor_replicas": 1, **fields})


def _snap(
    rate: float,
    ready: int = 4,
    p99: float | None = None,
    starting: int = 0,
    queue: int = 0,
    cv: float = 1.0,
    recent: float | None = None,
) -> MetricsSnapshot:
    return MetricsSnapshot(
        window_s=10.0,
        arrival_rate_rps=rate,
        recent_arrival_rate_rps=recent,
        ready_replicas=ready,
        starting_replicas=starting,
        queue_depth=queue,
        ongoing_requests=queue,
        latency_p99_s=p99,
        arrival_cv=cv,
        service_profile=PROFILE,
    )


def _run(rates: list[float], config: SloConfig) -> tuple[list[int], SloState]:
    """Decide once a second over ``rates``; the fleet is whatever was asked for last."""
    state, out, ready = SloState(), [], 1
    for t, rate in enumerate(rates):
        replicas, state = decide(_snap(rate, ready=ready), state, config, float(t))
        out.append(replicas)
        ready = replicas
    return out, state


@settings(max_examples=40, deadline=None)
@given(st.floats(1.0, 30000.0), st.floats(0.5, 3.0))
def test_recommendation_is_the_fewest_that_meet_the_objective_at_the_plan(
    rate: float, cv: float
) -> None:
    cfg = SloConfig(slo_p99_s=0.2)
    snap = _snap(rate, cv=cv)
    planned = forecast_rate(snap, (), cfg, 0.0).planned_rows_per_s
    n = recommend(snap, cfg)
    target = 0.2 * (1 - cfg.latency_margin)

    def ok(c: int) -> bool:
        fits = predict_latency_quantile(planned, c, PROFILE, arrival_cv=cv).latency_s <= target
        return fits and planned / (c * PROFILE.capacity_rps()) <= cfg.utilization_ceiling + 1e-9

    assert ok(n)
    assert n == 1 or not ok(n - 1)


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
    cfg = SloConfig(slo_p99_s=10.0, rate_confidence_z=0.0, utilization_ceiling=0.5)
    assert recommend(_snap(rate), cfg) == math.ceil(rate / (PROFILE.capacity_rps() * 0.5))


@pytest.mark.parametrize(
    ("rate", "expected"),
    # Batching is credited: one replica serves up to ~280 rows/s within 180 ms at batch 16
    # (capacity 308/s), so these loads need 1, 2 and 3 replicas, not rate / capacity(1).
    [(200.0, 1), (450.0, 2), (700.0, 3)],
)
def test_batched_capacity_is_credited(rate: float, expected: int) -> None:
    assert recommend(_snap(rate), SloConfig()) == expected


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


def test_a_surge_in_the_recent_window_counts_before_the_average_moves() -> None:
    calm = _snap(400.0)
    surge = _snap(400.0, recent=1200.0)
    assert surge.recent_rows_per_s == 1200.0 and calm.recent_rows_per_s == 400.0
    assert recommend(surge, SloConfig()) > recommend(calm, SloConfig())


@pytest.mark.parametrize(("cv", "factor"), [(0.5, 1.0), (1.0, 1.0), (2.0, 1.5), (3.0, 2.0)])
def test_burst_headroom_grows_with_overdispersion_only(cv: float, factor: float) -> None:
    cfg = SloConfig(rate_confidence_z=0.0, burst_headroom=0.5)
    fc = forecast_rate(_snap(400.0, cv=cv), (), cfg, 0.0)
    assert fc.planned_rows_per_s == pytest.approx(400.0 * factor)


def test_clustered_arrivals_hold_more_replicas_than_poisson_at_the_same_rate() -> None:
    cfg = SloConfig()
    poisson, bursty = recommend(_snap(400.0, cv=1.0), cfg), recommend(_snap(400.0, cv=3.0), cfg)
    assert poisson == 2
    # Twice the rate, sized with CV 3 in the queueing model: room for a 3x cluster.
    assert bursty == 4


def test_confidence_margin_is_the_standard_error_of_the_rate() -> None:
    cfg = SloConfig(rate_confidence_z=2.0)
    fc = forecast_rate(_snap(1000.0), (), cfg, 0.0)
    assert fc.planned_rows_per_s == pytest.approx(1000.0 + 2.0 * math.sqrt(1000.0 / 10.0))


def _line(slope: float, start: float = 400.0, n: int = 60) -> tuple[tuple[float, float], ...]:
    return tuple((float(t), start + slope * t) for t in range(n))


@pytest.mark.parametrize("slope", [0.5, 2.0, 10.0])
def test_rising_trend_is_extrapolated_over_half_a_window_and_a_cold_start(slope: float) -> None:
    cfg = SloConfig(rate_confidence_z=0.0, cold_start_s=10.0)
    history = _line(slope)
    now, rate = history[-1]
    fc = forecast_rate(_snap(rate), history, cfg, now)
    assert fc.slope_rows_per_s2 == pytest.approx(slope)
    assert fc.expected_rows_per_s == pytest.approx(rate + slope * (5.0 + 10.0))
    assert fc.smooth  # a clean line is as predictable as it gets


def test_falling_trend_never_plans_below_the_measured_rate() -> None:
    cfg = SloConfig(rate_confidence_z=0.0)
    history = _line(-3.0, start=800.0)
    now, rate = history[-1]
    fc = forecast_rate(_snap(rate), history, cfg, now)
    assert fc.slope_rows_per_s2 == pytest.approx(-3.0)
    assert fc.planned_rows_per_s == pytest.approx(rate)


def test_too_little_history_means_no_trend_and_not_smooth() -> None:
    fc = forecast_rate(_snap(400.0), _line(5.0, n=3), SloConfig(), 2.0)
    assert fc.slope_rows_per_s2 == 0.0
    assert fc.dispersion == math.inf and not fc.smooth


def test_scales_up_at_once_and_down_after_the_smooth_window_on_a_steady_rate() -> None:
    cfg = SloConfig(scale_down_stabilization_s=120.0, smooth_scale_down_stabilization_s=20.0)
    replicas, _ = _run([500.0] * 40 + [5000.0] + [500.0] * 30, cfg)
    low, high = replicas[39], replicas[40]
    assert high > low  # the surge is answered in the same tick
    assert replicas[41] == high
    # The step makes the history unpredictable for a while: the long window holds the fleet.
    assert replicas[-1] == high


def test_smooth_ramp_scales_down_after_the_short_window() -> None:
    cfg = SloConfig(scale_down_stabilization_s=120.0, smooth_scale_down_stabilization_s=20.0)
    down = [2400.0 - 3.0 * t for t in range(400)]  # a slow, clean ramp down
    replicas, state = _run(down, cfg)
    # Only the first few ticks (too little history) were unpredictable.
    assert state.unpredictable_s is not None and state.unpredictable_s < 10.0
    rec = [recommend(_snap(r), cfg) for r in down]
    drops = [t for t in range(130, len(replicas)) if replicas[t] < replicas[t - 1]]
    assert len(drops) >= 2, replicas
    for t in range(130, len(replicas)):
        assert replicas[t] == max(rec[t - 19 : t + 1])  # the 20 s window, never 120 s


@pytest.mark.parametrize("noise", [150.0, 300.0])
def test_noisy_rate_keeps_the_long_stabilisation_window(noise: float) -> None:
    cfg = SloConfig(scale_down_stabilization_s=120.0, smooth_scale_down_stabilization_s=20.0)
    rates = [800.0 + (noise if t % 2 else -noise) for t in range(60)]
    history = tuple((float(t), r) for t, r in enumerate(rates))
    fc = forecast_rate(_snap(rates[-1]), history, cfg, 59.0)
    assert fc.dispersion > cfg.smooth_dispersion_max and not fc.smooth
    replicas, _ = _run([*rates, *([200.0] * 60)], cfg)
    peak = max(replicas[:60])
    # 60 s into the calm the 120 s window still holds the peak; a smooth ramp would not.
    assert replicas[-1] == peak


def test_state_round_trips_and_refuses_foreign_or_old_state() -> None:
    _, state = _run([400.0 + t for t in range(30)], SloConfig())
    raw = state.state_dict()
    assert raw["kind"] == "slo" and raw["version"] == SLO_STATE_VERSION == 2
    assert SloState.from_state_dict(raw) == state
    with pytest.raises(ValueError, match="version"):
        SloState.from_state_dict({**raw, "version": 1})
    with pytest.raises(ValueError, match="policy 'hpa'"):
        SloState.from_state_dict({**raw, "kind": "hpa"})


def test_the_wrapped_autoscaler_restores_its_state() -> None:
    scaler = make_autoscaler("slo")
    state = scaler.initial_state()
    for t in range(20):
        _, state = scaler.decide(_snap(400.0 + 5 * t), state, float(t))
    restored = scaler.load_state_dict(state.state_dict())
    assert restored == state
    a, _ = scaler.decide(_snap(600.0), state, 20.0)
    b, _ = scaler.decide(_snap(600.0), restored, 20.0)
    assert a == b


def test_recommend_with_state_sees_the_trend() -> None:
    cfg = SloConfig()
    _, state = _run([250.0 + 8.0 * t for t in range(60)], cfg)
    snap = _snap(250.0 + 8.0 * 60)
    assert recommend(snap, cfg, state, 60.0) > recommend(snap, cfg)


@pytest.mark.parametrize(
    ("field", "value", "match"),
    [
        ("utilization_ceiling", 0.0, "utilization_ceiling"),
        ("max_correction", 0.5, "max_correction"),
        ("latency_margin", 1.0, "latency_margin"),
        ("burst_headroom", -0.1, "burst_headroom"),
        ("rate_confidence_z", -1.0, "rate_confidence_z"),
        ("cold_start_s", -1.0, "cold_start_s"),
        ("trend_window_s", 0.0, "trend_window_s"),
        ("smooth_dispersion_max", 0.0, "smooth_dispersion_max"),
    ],
)
def test_config_is_checked(field: str, value: float, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        SloConfig(**{field: value})  # type: ignore[arg-type]


def test_short_window_returns_after_a_whole_long_window_of_predictable_rate() -> None:
    cfg = SloConfig(scale_down_stabilization_s=120.0, smooth_scale_down_stabilization_s=20.0)
    noise = [1400.0 + (300.0 if t % 2 else -300.0) for t in range(60)]
    rates = noise + [1400.0 - 3.0 * t for t in range(340)]  # then a clean ramp down
    replicas, state = _run(rates, cfg)
    rec = [recommend(_snap(r), cfg) for r in rates]
    # The noise leaves the 60 s trend window near 120 s; for a long window after that the
    # 120 s window applies, then the 20 s one.
    assert state.unpredictable_s is not None and 100.0 <= state.unpredictable_s < 125.0
    assert replicas[200] == max(rec[81:201]) > max(rec[181:201])
    assert replicas[399] == max(rec[380:400])


@pytest.mark.parametrize("long_s", [0.0, 5.0])
def test_the_short_window_never_exceeds_the_long_one(long_s: float) -> None:
    cfg = SloConfig(scale_down_stabilization_s=long_s, smooth_scale_down_stabilization_s=20.0)
    rates = [2000.0] * 30 + [100.0] * 30
    replicas, _ = _run(rates, cfg)
    low = recommend(_snap(100.0), cfg)
    assert replicas[29] > low
    # A step is unpredictable, so the long window applies; 0 s or 5 s, never 20 s.
    assert replicas[30 + int(long_s)] == low
