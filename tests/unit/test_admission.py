from __future__ import annotations

import math
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tailguard.serve.admission import (
    AdmissionConfig,
    AdmissionSnapshot,
    RejectReason,
    RequestInfo,
    TokenBucket,
    admit,
    estimate_finish,
    estimate_finish_batched,
    initial_bucket,
    take,
    within_concurrency,
)
from tailguard.serve.tenants import Priority, TenantSpec

CRIT, STD, SHED = Priority.CRITICAL, Priority.STANDARD, Priority.SHEDDABLE
FAST = settings(max_examples=150, deadline=None)

# ---------------------------------------------------------------------- token bucket


def test_full_bucket_allows_burst_then_refuses_with_time_to_next_token() -> None:
    bucket = TokenBucket.full(rate_per_s=4.0, burst=3.0, now=10.0)
    for _ in range(3):
        allowed, bucket, retry = take(bucket, 10.0)
        assert allowed and retry == 0.0
    allowed, after, retry = take(bucket, 10.0)
    assert not allowed and after == bucket and retry == pytest.approx(0.25)
    allowed, after, retry = take(bucket, 10.1)
    assert not allowed and retry == pytest.approx(0.15)


def test_bucket_refills_continuously_up_to_burst() -> None:
    bucket = TokenBucket(rate_per_s=4.0, burst=3.0, tokens=0.0, updated_s=0.0)
    assert bucket.level(0.5) == pytest.approx(2.0)
    assert bucket.level(100.0) == 3.0
    allowed, bucket, _ = take(bucket, 0.5, cost=2.0)
    assert allowed and bucket.tokens == pytest.approx(0.0) and bucket.updated_s == 0.5


def test_cost_above_burst_is_never_allowed() -> None:
    allowed, _, retry = take(TokenBucket.full(1.0, 2.0, 0.0), 0.0, cost=3.0)
    assert not allowed and math.isinf(retry)


def test_clock_going_backwards_mints_no_tokens() -> None:
    bucket = TokenBucket(rate_per_s=1.0, burst=5.0, tokens=1.0, updated_s=10.0)
    allowed, bucket, _ = take(bucket, 9.0)  # stale timestamp
    assert allowed and bucket.tokens == 0.0 and bucket.updated_s == 10.0
    assert not take(bucket, 9.5)[0]
    assert take(bucket, 11.0)[0]


@pytest.mark.parametrize(
    ("rate", "burst", "tokens"),
    [(0.0, 1.0, 0.0), (-1.0, 1.0, 0.0), (math.inf, 1.0, 0.0), (1.0, 0.0, 0.0), (1.0, 2.0, 3.0)],
)
def test_invalid_buckets_are_refused(rate: float, burst: float, tokens: float) -> None:
    with pytest.raises(ValueError):
        TokenBucket(rate, burst, tokens, 0.0)


@FAST
@given(
    rate=st.floats(0.1, 100.0),
    burst=st.floats(1.0, 20.0),
    gaps=st.lists(st.floats(0.0, 0.5), min_size=1, max_size=120),
    costs=st.lists(st.sampled_from([0.5, 1.0, 2.0]), min_size=120, max_size=120),
)
def test_never_more_than_burst_plus_rate_times_t_over_any_interval(
    rate: float, burst: float, gaps: list[float], costs: list[float]
) -> None:
    bucket = TokenBucket.full(rate, burst, 0.0)
    now = 0.0
    granted: list[tuple[float, float]] = []
    for gap, cost in zip(gaps, costs, strict=False):
        now += gap
        allowed, bucket, retry = take(bucket, now, cost)
        if allowed:
            granted.append((now, cost))
        elif cost <= burst:
            # The promised retry time is honest: waiting that long is enough.
            assert take(bucket, now + retry * (1 + 1e-9) + 1e-9, cost)[0]
    for i, (start, _) in enumerate(granted):
        total = 0.0
        for end, cost in granted[i:]:
            total += cost
            assert total <= burst + rate * (end - start) + 1e-6


# ---------------------------------------------------------------------- concurrency


@pytest.mark.parametrize(
    ("inflight", "cap", "ok"), [(0, None, True), (10**6, None, True), (3, 4, True), (4, 4, False)]
)
def test_concurrency_cap(inflight: int, cap: int | None, ok: bool) -> None:
    assert within_concurrency(inflight, cap) is ok


# ---------------------------------------------------------------------- feasibility


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


def test_admit_does_not_charge_a_request_for_rows_riding_in_its_own_batch() -> None:
    # 20 rows ahead, batches of up to 32 rows: all of them ride with this request. An idle
    # replica: the prediction is its own batch (30 ms), where a fluid drain also charges the
    # 20 rows (20 ms at 1000 rows/s): 50 ms, past 80% of a 60 ms budget.
    batched = AdmissionSnapshot({}, 1000.0, 1, batch_service_s=0.03, replica_free_in_s=(0.0,),
                                batch_rows=32, full_batch_s=0.032)
    fluid = AdmissionSnapshot({}, 1000.0, 1, batch_service_s=0.03)
    req = request(budget_s=0.06, rows_ahead=20)
    config = AdmissionConfig(shed_fraction_standard=0.8)
    assert admit(req, batched, config, 0.0).admitted
    assert admit(req, fluid, config, 0.0).reason is RejectReason.SHED
    # 40 rows ahead: one full batch goes first (32 ms), then this one (30 ms): shed.
    deep = admit(request(budget_s=0.06, rows_ahead=40), batched, config, 0.0)
    assert deep.reason is RejectReason.SHED
    assert deep.predicted_finish_s == pytest.approx(0.062)


def test_a_tenant_draining_at_part_of_the_rate_has_only_its_part_of_each_batch() -> None:
    # 40 rows ahead, 32-row batches of 32 ms on one idle replica. At the full rate one batch
    # goes first (finish 62 ms); at a quarter of it (others' arrivals fill the rest of each
    # batch) the 40 rows take 5 batches of which this tenant has 8 rows each: 5 x 32 + 30 ms.
    base = AdmissionSnapshot({}, 1000.0, 1, batch_service_s=0.03, replica_free_in_s=(0.0,),
                             batch_rows=32, full_batch_s=0.032)
    req = request(budget_s=1.0, rows_ahead=40)
    full = admit(req, base, CONFIG, 0.0)
    quarter = admit(req, replace(base, drain_rows_per_s=250.0), CONFIG, 0.0)
    faster = admit(req, replace(base, drain_rows_per_s=5000.0), CONFIG, 0.0)  # capped at 1
    assert full.predicted_finish_s == pytest.approx(0.062)
    assert quarter.predicted_finish_s == pytest.approx(5 * 0.032 + 0.03)
    assert faster.predicted_finish_s == full.predicted_finish_s
    starved = admit(req, replace(base, drain_rows_per_s=0.0), CONFIG, 0.0)
    assert starved.reason is RejectReason.SHED  # nothing of its rows drains: never on time


def snapshot(
    rows_ahead: int = 0,
    rate: float | None = 1000.0,
    replicas: int = 1,
    inflight_rows: int = 0,
    batch_service_s: float | None = 0.01,
) -> AdmissionSnapshot:
    return AdmissionSnapshot(
        rows_ahead_by_class=dict.fromkeys(Priority.by_rank(), rows_ahead),
        service_rate_rows_per_s=rate,
        ready_replicas=replicas,
        inflight_rows=inflight_rows,
        batch_service_s=batch_service_s,
    )


def request(
    priority: Priority = STD, budget_s: float = 0.1, now: float = 0.0, **kw: object
) -> RequestInfo:
    return RequestInfo(priority=priority, deadline_s=now + budget_s, **kw)  # type: ignore[arg-type]


CONFIG = AdmissionConfig()


def test_idle_deployment_admits_and_takes_a_token() -> None:
    bucket = TokenBucket.full(10.0, 2.0, 0.0)
    decision = admit(request(bucket=bucket), snapshot(), CONFIG, 0.0)
    assert decision.admitted and decision.status is None and decision.reason is None
    assert decision.bucket is not None and decision.bucket.tokens == pytest.approx(1.0)
    assert decision.predicted_finish_s == pytest.approx(0.01)


def test_sheds_when_the_queue_ahead_cannot_be_served_before_the_deadline() -> None:
    # 1000 rows ahead at 1000 rows/s: ~1 s to finish, deadline in 100 ms.
    bucket = TokenBucket.full(10.0, 2.0, 0.0)
    decision = admit(request(bucket=bucket), snapshot(rows_ahead=1000), CONFIG, 0.0)
    assert not decision.admitted
    assert decision.status == 429 and decision.reason is RejectReason.SHED
    assert decision.reason.value == "shed"  # what the gateway logs and meters
    # Over by 1.01 - 0.1 s: that is how long the backlog ahead needs to shrink enough.
    assert decision.retry_after_s == pytest.approx(0.91)
    assert decision.bucket == bucket  # a shed request consumes no token
    assert decision.predicted_finish_s == pytest.approx(1.01)


# Predicted time to finish: 10 ms batch + rows_ahead / 1000 rows/s; budget 100 ms.
@pytest.mark.parametrize(
    ("rows_ahead", "expected"),
    [
        (0, {CRIT: True, STD: True, SHED: True}),  # 10 ms
        (30, {CRIT: True, STD: True, SHED: True}),  # 40 ms < 50 ms
        (60, {CRIT: True, STD: True, SHED: False}),  # 70 ms: past half the budget
        (89, {CRIT: True, STD: True, SHED: False}),  # 99 ms
        (120, {CRIT: True, STD: False, SHED: False}),  # 130 ms: misses the deadline
        (10**7, {CRIT: True, STD: False, SHED: False}),  # critical is never shed by prediction
    ],
)
def test_lower_classes_are_shed_first(rows_ahead: int, expected: dict[Priority, bool]) -> None:
    for priority, admitted in expected.items():
        decision = admit(request(priority), snapshot(rows_ahead=rows_ahead), CONFIG, 0.0)
        assert decision.admitted is admitted, priority
        if not admitted:
            assert decision.reason is RejectReason.SHED


@pytest.mark.parametrize(
    "snap",
    [
        snapshot(rows_ahead=10**6, rate=None),
        snapshot(rows_ahead=10**6, rate=0.0),
        snapshot(rows_ahead=10**6, replicas=0),
    ],
)
def test_cold_start_or_no_ready_replica_admits(snap: AdmissionSnapshot) -> None:
    assert snap.cold
    for priority in Priority.by_rank():
        assert admit(request(priority), snap, CONFIG, 0.0).admitted


def test_a_request_already_past_its_deadline_gets_504_whatever_its_class() -> None:
    for priority in Priority.by_rank():
        decision = admit(request(priority, budget_s=0.0), snapshot(), CONFIG, 0.0)
        assert not decision.admitted and decision.status == 504
        assert decision.reason is RejectReason.DEADLINE and decision.retry_after_s is None


def test_rate_limited_requests_get_429_with_time_to_next_token() -> None:
    empty = TokenBucket(rate_per_s=2.0, burst=1.0, tokens=0.0, updated_s=0.0)
    decision = admit(request(CRIT, now=0.1, bucket=empty), snapshot(), CONFIG, 0.1)
    assert not decision.admitted and decision.status == 429
    assert decision.reason is RejectReason.RATE_LIMITED
    assert decision.retry_after_s == pytest.approx(0.4)  # 0.2 there, 0.8 more at 2/s
    assert decision.bucket == empty
    allowed = admit(request(CRIT, now=0.5, bucket=empty), snapshot(), CONFIG, 0.5)
    assert allowed.admitted


def test_retry_after_is_clamped() -> None:
    slow = TokenBucket(rate_per_s=0.001, burst=1.0, tokens=0.0, updated_s=0.0)
    config = AdmissionConfig(max_retry_after_s=30.0, min_retry_after_s=0.5)
    assert admit(request(bucket=slow), snapshot(), config, 0.0).retry_after_s == 30.0
    decision = admit(request(SHED), snapshot(rows_ahead=41), config, 0.0)  # 1 ms over half
    assert not decision.admitted and decision.retry_after_s == 0.5


def test_concurrency_cap_rejects_without_taking_a_token() -> None:
    bucket = TokenBucket.full(10.0, 5.0, 0.0)
    at_cap = request(bucket=bucket, tenant_inflight=4, max_concurrency=4)
    decision = admit(at_cap, snapshot(batch_service_s=0.2), CONFIG, 0.0)
    assert not decision.admitted and decision.status == 429
    assert decision.reason is RejectReason.CONCURRENCY
    assert decision.retry_after_s == pytest.approx(0.2)
    assert decision.bucket == bucket
    below = request(bucket=bucket, tenant_inflight=3, max_concurrency=4)
    assert admit(below, snapshot(), CONFIG, 0.0).admitted


def test_tenant_aware_rows_ahead_replaces_the_class_figure() -> None:
    crowded = snapshot(rows_ahead=10_000)
    assert not admit(request(), crowded, CONFIG, 0.0).admitted
    assert admit(request(rows_ahead=20), crowded, CONFIG, 0.0).admitted


def test_inflight_rows_replicas_and_batch_wait_enter_the_prediction() -> None:
    assert not admit(request(), snapshot(inflight_rows=95), CONFIG, 0.0).admitted
    assert admit(request(), snapshot(inflight_rows=95, replicas=2), CONFIG, 0.0).admitted
    waiting = AdmissionConfig(batch_wait_s=0.095)
    assert not admit(request(), snapshot(), waiting, 0.0).admitted


def test_config_validation() -> None:
    with pytest.raises(ValueError, match="shed_fraction_standard"):
        AdmissionConfig(shed_fraction_standard=0.0)
    with pytest.raises(ValueError, match="retry_after"):
        AdmissionConfig(min_retry_after_s=2.0, max_retry_after_s=1.0)
    with pytest.raises(ValueError, match="batch_wait_s"):
        AdmissionConfig(batch_wait_s=-1.0)
    assert AdmissionConfig(shed_fraction_standard=None).shed_fraction(STD) is None


_snapshots = st.builds(
    snapshot,
    rows_ahead=st.integers(0, 5000),
    rate=st.floats(1.0, 5000.0),
    replicas=st.integers(1, 8),
    inflight_rows=st.integers(0, 500),
    batch_service_s=st.floats(0.0, 0.2),
)


@FAST
@given(snap=_snapshots, budget_s=st.floats(0.001, 2.0))
def test_if_a_class_is_shed_every_lower_class_is_shed_too(
    snap: AdmissionSnapshot, budget_s: float
) -> None:
    admitted = [admit(request(p, budget_s), snap, CONFIG, 0.0).admitted for p in Priority.by_rank()]
    assert admitted[0]  # critical
    assert admitted == sorted(admitted, reverse=True)  # True... then False...


@FAST
@given(snap=_snapshots, budget_s=st.floats(0.001, 2.0), priority=st.sampled_from([STD, SHED]))
def test_retry_after_a_shed_is_when_the_drained_backlog_would_be_admitted(
    snap: AdmissionSnapshot, budget_s: float, priority: Priority
) -> None:
    decision = admit(request(priority, budget_s), snap, CONFIG, 0.0)
    if decision.admitted or decision.retry_after_s in (None, CONFIG.max_retry_after_s):
        return
    retry = decision.retry_after_s
    assert retry is not None
    rate = snap.service_rate_rows_per_s
    assert rate is not None
    backlog = snap.inflight_rows + snap.rows_ahead_by_class[priority]
    left = backlog - rate * snap.ready_replicas * retry * (1 + 1e-6)
    if left < 0 or retry == CONFIG.min_retry_after_s:
        return  # the overshoot is not backlog (batch time alone misses), or clamped
    later = snapshot(
        rows_ahead=math.floor(left),
        rate=rate,
        replicas=snap.ready_replicas,
        batch_service_s=snap.batch_service_s,
    )
    assert admit(request(priority, budget_s, now=retry), later, CONFIG, retry).admitted


def test_helpers_fill_admission_inputs_from_a_tenant_spec() -> None:
    assert initial_bucket(TenantSpec(id="free"), 0.0) is None
    spec = TenantSpec(id="t", priority="sheddable", rate_limit_rps=5.0, burst=2, max_concurrency=3)
    bucket = initial_bucket(spec, 7.0)
    assert bucket == TokenBucket(rate_per_s=5.0, burst=2.0, tokens=2.0, updated_s=7.0)
    info = RequestInfo.for_tenant(spec, deadline_s=8.0, tenant_inflight=3, bucket=bucket)
    assert info == RequestInfo(SHED, 8.0, 3, 3, bucket, None)
    assert admit(info, snapshot(), CONFIG, 7.0).reason is RejectReason.CONCURRENCY
