"""LiveRecorder: the request-path event sink and the snapshot it builds (hand-made events)."""

from __future__ import annotations

import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tailguard.autoscale.live import LiveRecorder
from tailguard.autoscale.snapshot import MetricsSnapshot

COUNTS1 = {"ready": 1, "starting": 0, "draining": 0}


def snap(rec: LiveRecorder, now: float, *, counts: dict[str, int] | None = None,
         window_s: float = 10.0, recent_window_s: float = 2.0, max_batch_size: int = 8,
         queue_depth: int = 0) -> MetricsSnapshot:
    return rec.snapshot(now, counts=counts or COUNTS1, queue_depth=queue_depth,
                        window_s=window_s, recent_window_s=recent_window_s,
                        max_batch_size=max_batch_size)


def test_empty_recorder_reports_no_traffic() -> None:
    s = snap(LiveRecorder(), 100.0)
    assert s.arrival_rate_rps == 0.0 and s.recent_arrival_rate_rps == 0.0
    assert s.latency_p50_s is None and s.latency_p99_s is None and s.completed == 0
    assert s.busy_ratio == 0.0 and s.ongoing_requests == 0 and not s.has_demand
    assert s.service_profile.max_batch_size == 8


def test_constant_rate_gives_rate_rows_and_zero_cv() -> None:
    rec = LiveRecorder()
    for i in range(400):  # 20 req/s for 20 s, 3 rows each
        rec.arrival(i * 0.05, 3)
    s = snap(rec, 19.99, window_s=10.0, recent_window_s=2.0)
    assert s.arrival_rate_rps == pytest.approx(20.0, rel=0.01)
    assert s.rows_per_s == pytest.approx(60.0, rel=0.01)
    assert s.recent_arrival_rate_rps == pytest.approx(20.0, rel=0.03)
    assert s.arrival_cv == pytest.approx(0.0, abs=1e-6)
    assert s.window_s == 10.0


def test_recent_rate_sees_a_step_before_the_window_average() -> None:
    rec = LiveRecorder()
    for i in range(100):  # 10 req/s from t=0.05 ...
        rec.arrival(0.05 + i * 0.1, 1)
    for i in range(50):  # ... then 50 req/s over the last second, (10, 11)
        rec.arrival(10.01 + i * 0.02, 1)
    s = snap(rec, 11.0, window_s=10.0, recent_window_s=1.0)
    assert s.recent_arrival_rate_rps == pytest.approx(50.0, rel=0.05)
    assert s.arrival_rate_rps == pytest.approx((90 + 50) / 10.0, rel=0.05)
    assert s.arrival_cv > 0.3  # gaps of 0.1 s and 0.02 s


def test_fresh_history_divides_by_the_time_observed_not_the_whole_window() -> None:
    rec = LiveRecorder()
    for i in range(30):  # 10 req/s for 3 s, the first events ever
        rec.arrival(100.0 + i * 0.1, 1)
    s = snap(rec, 103.0, window_s=10.0)
    assert s.window_s == pytest.approx(3.0)
    assert s.arrival_rate_rps == pytest.approx(10.0, rel=0.05)


def test_percentiles_cover_only_completions_in_the_window() -> None:
    rec = LiveRecorder()
    rec.completed(1.0, 9.0, ok=False)  # long ago: outside a 10 s window at t=20
    for i in range(100):  # latencies 1..100 ms, completed in the window
        rec.completed(11.0 + i * 0.05, (i + 1) / 1000.0, ok=True)
    s = snap(rec, 20.0, window_s=10.0)
    assert s.completed == 100
    assert s.latency_p50_s == pytest.approx(0.050)
    assert s.latency_p99_s == pytest.approx(0.099)


def test_ongoing_is_admitted_minus_completed() -> None:
    rec = LiveRecorder()
    for i in range(5):
        rec.arrival(float(i), 1)
    rec.completed(4.5, 0.5, ok=True)
    rec.completed(4.6, 0.5, ok=False)
    assert rec.ongoing == 3
    assert snap(rec, 5.0).ongoing_requests == 3
    assert rec.snapshot(5.0, counts=COUNTS1, queue_depth=7, window_s=5.0, max_batch_size=1,
                        ongoing=9).ongoing_requests == 9
    assert rec.totals == {"arrivals": 5, "completed": 2, "batches": 0}


def test_busy_ratio_from_batch_service_times_clipped_to_the_window() -> None:
    rec = LiveRecorder()
    rec.arrival(0.0, 1)  # history starts at 0
    # Two replicas over (10, 20]: 4 s + 1 s of batches inside, a 2 s batch half outside.
    for end in (12.0, 14.0, 16.0, 18.0):
        rec.batch(end, 1, 1.0)
    rec.batch(15.0, 1, 1.0)
    rec.batch(11.0, 1, 2.0)  # ran 9..11: 1 s inside the window
    rec.batch(5.0, 1, 1.0)  # outside
    counts = {"ready": 2, "starting": 0, "draining": 0}
    s = snap(rec, 20.0, counts=counts, window_s=10.0)
    assert s.busy_ratio == pytest.approx((4 + 1 + 1) / (2 * 10.0))


def test_busy_ratio_weighs_replica_counts_seen_at_earlier_snapshots() -> None:
    rec = LiveRecorder()
    rec.arrival(0.0, 1)
    one = {"ready": 1, "starting": 0, "draining": 0}
    four = {"ready": 4, "starting": 0, "draining": 0}
    snap(rec, 10.0, counts=one, window_s=10.0)  # one replica served (10, 15] ...
    snap(rec, 15.0, counts=four, window_s=10.0)  # ... four from 15 on
    for k in range(5):  # the one replica busy all of (10, 15]
        rec.batch(11.0 + k, 1, 1.0)
    s = snap(rec, 20.0, counts=four, window_s=10.0)
    # 5 busy seconds over 1 * 5 + 4 * 5 = 25 replica-seconds (not 4 * 10 = 40).
    assert s.busy_ratio == pytest.approx(5.0 / 25.0)


def test_busy_ratio_never_exceeds_one() -> None:
    rec = LiveRecorder()
    rec.arrival(0.0, 1)
    for k in range(10):
        rec.batch(1.0 + k, 4, 1.0)
        rec.batch(1.0 + k, 4, 1.0)  # two replicas busy ...
    s = snap(rec, 10.5, window_s=10.0)  # ... but one was reported
    assert s.busy_ratio == 1.0


def test_profile_is_the_deployments_one_service_model() -> None:
    from tailguard.serve.deployment.estimates import ServiceModel

    model = ServiceModel()
    rec = LiveRecorder(service=model)
    for k in (1, 2, 4, 8) * 20:
        model.observe(k, 0.010 + 0.005 * k)  # the batcher feeds the model ...
        rec.batch(0.0, k, 0.010 + 0.005 * k)  # ... and the recorder only records
    p = snap(rec, 1.0, max_batch_size=8).service_profile
    assert p.fixed_s == pytest.approx(0.010, rel=1e-6)
    assert p.per_row_s == pytest.approx(0.005, rel=1e-6)
    assert p.max_batch_size == 8
    assert (p.fixed_s, p.per_row_s) == pytest.approx(model.coefficients())


def test_own_model_fits_what_it_records() -> None:
    rec = LiveRecorder()
    t = 0.0
    for _ in range(50):
        for k in (1, 2, 4, 8):
            t += 0.1
            rec.batch(t, k, 0.010 + 0.005 * k)
    p = snap(rec, t, max_batch_size=8).service_profile
    assert p.fixed_s == pytest.approx(0.010, rel=1e-6)
    assert p.per_row_s == pytest.approx(0.005, rel=1e-6)


def test_one_batch_size_extrapolates_without_assuming_a_batching_gain() -> None:
    rec = LiveRecorder()
    for i in range(20):
        rec.batch(float(i), 1, 0.040)
    p = snap(rec, 20.0, max_batch_size=4).service_profile
    assert p.service_time_s(1) == pytest.approx(0.040)
    assert p.capacity_rps() == pytest.approx(25.0)  # 4 rows take 4 x 40 ms


def test_profile_persists_when_no_batch_is_new_and_defaults_before_any() -> None:
    rec = LiveRecorder()
    assert snap(rec, 1.0, max_batch_size=16).service_profile.max_batch_size == 16
    rec.batch(1.0, 2, 0.030)
    first = snap(rec, 2.0, max_batch_size=16).service_profile
    assert snap(rec, 500.0, max_batch_size=16).service_profile == first


def test_ring_overflow_keeps_rates_right_over_the_span_it_covers() -> None:
    rec = LiveRecorder(capacity=64)
    for i in range(1000):  # 100 req/s for 10 s; the ring keeps the last 64 (0.64 s)
        rec.arrival(i * 0.01, 1)
        rec.completed(i * 0.01, 0.001 * (i % 10 + 1), ok=True)
    s = snap(rec, 9.995, window_s=5.0, recent_window_s=1.0)
    assert s.arrival_rate_rps == pytest.approx(100.0, rel=0.05)
    assert s.recent_arrival_rate_rps == pytest.approx(100.0, rel=0.05)
    assert s.completed == 64
    assert s.latency_p99_s == pytest.approx(0.010)


def test_capacity_must_be_a_power_of_two() -> None:
    with pytest.raises(ValueError, match="power of two"):
        LiveRecorder(capacity=1000)


def test_request_path_calls_are_cheap() -> None:
    rec = LiveRecorder(capacity=1 << 12)
    n = 100_000
    start = time.perf_counter()
    for i in range(n):
        t = i * 1e-4
        rec.arrival(t, 1)
        rec.completed(t, 0.001, True)
        rec.batch(t, 1, 0.001)
    per_request_us = (time.perf_counter() - start) / n * 1e6
    # About 1 us here; 25 us would still be only 25% of one core at 10k req/s.
    assert per_request_us < 25, per_request_us
    assert rec.totals["arrivals"] == n


@settings(max_examples=60, deadline=None)
@given(
    gaps=st.lists(st.floats(0.001, 2.0), min_size=1, max_size=200),
    window_s=st.floats(1.0, 30.0),
)
def test_rate_times_window_counts_the_arrivals_in_it(gaps: list[float], window_s: float) -> None:
    rec = LiveRecorder(capacity=256)
    times = np.cumsum(gaps)
    for t in times:
        rec.arrival(float(t), 1)
    now = float(times[-1])
    s = snap(rec, now, window_s=window_s, recent_window_s=min(1.0, window_s))
    if now - times[0] < window_s:  # less history than the window: all of it, from its start
        inside = times.size
    else:
        inside = int(np.count_nonzero(times > now - s.window_s))
    assert s.arrival_rate_rps * s.window_s == pytest.approx(inside)
    assert s.window_s <= window_s
