"""Admission's one decision path: ``decide(request, view, hold, settings, now)``, pure.

No deployment, no gate, no private attribute: a hand-built :class:`LoadView` per case."""

from __future__ import annotations

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from tailguard.serve.deployment.demand import FairShare
from tailguard.serve.deployment.estimates import ServiceFit
from tailguard.serve.deployment.view import LoadView
from tailguard.serve.gate.decide import (
    PROBE_AFTER_S,
    AdmissionRequest,
    RejectReason,
    decide,
    surely_admitted,
)
from tailguard.serve.gate.policy import AdmissionSettings
from tailguard.serve.gate.quotas import Hold, TokenBucket
from tailguard.serve.gate.tenants import Priority

CRIT, STD, SHED = Priority.CRITICAL, Priority.STANDARD, Priority.SHEDDABLE
FAST = settings(max_examples=150, deadline=None)
SETTINGS = AdmissionSettings()
OVER = FairShare(within=False, rows_per_s=1000.0, demand_rows_per_s=2000.0,
                 capacity_rows_per_s=1000.0)


def view(rows_ahead: int = 0, *, fixed_s: float = 0.0, per_row_s: float = 0.001,
         cap: int = 10, free_in: tuple[float, ...] = (0.0,), share: FairShare | None = None,
         **kw: object) -> LoadView:
    """One idle replica by default; batches of ``cap`` rows of ``fixed_s + per_row_s*k``."""
    return LoadView(rows_ahead=rows_ahead, replica_free_in_s=free_in, inflight_rows=0,
                    service=ServiceFit(fixed_s, per_row_s), batch_rows=cap, share=share,
                    **kw)  # type: ignore[arg-type]


def request(priority: Priority = STD, budget_s: float = 0.1, now: float = 0.0,
            **kw: object) -> AdmissionRequest:
    return AdmissionRequest(priority, now + budget_s, **kw)  # type: ignore[arg-type]


def test_idle_deployment_admits_takes_a_token_and_predicts_its_own_batch() -> None:
    bucket = TokenBucket.full(10.0, 2.0, 0.0)
    d = decide(request(bucket=bucket), view(), None, SETTINGS, 0.0)
    assert d.admitted and d.status is None and d.counts_demand and d.hold is None
    assert d.bucket is not None and d.bucket.tokens == pytest.approx(1.0)
    assert d.predicted_finish_s == pytest.approx(0.001)


def test_sheds_when_the_backlog_cannot_be_served_before_the_deadline() -> None:
    bucket = TokenBucket.full(10.0, 2.0, 0.0)
    # 1000 rows ahead in 10-row batches of 10 ms: 100 batches, then its own (10 ms).
    d = decide(request(bucket=bucket), view(1000, share=OVER), None, SETTINGS, 0.0)
    assert not d.admitted and d.status == 429 and d.reason is RejectReason.SHED
    assert d.predicted_finish_s == pytest.approx(1.01)
    assert d.retry_after_s == pytest.approx(1.01 - 0.065)  # the overshoot past 65 ms
    assert d.bucket == bucket  # a shed request consumes no token
    assert d.counts_demand  # turned away for load, it is still asking
    assert d.hold == Hold(1.01 - 0.065, 1)  # over its share: the overload holds


# One idle replica, 10-row batches of 10 ms; budget 100 ms. A caller over its share.
@pytest.mark.parametrize(("rows_ahead", "expected"), [
    (0, {CRIT: True, STD: True, SHED: True}),  # 1 ms
    (30, {CRIT: True, STD: True, SHED: True}),  # 3 batches, then its own (full): 40 ms
    (50, {CRIT: True, STD: True, SHED: False}),  # 60 ms: past half the budget, < 65 ms
    (70, {CRIT: True, STD: False, SHED: False}),  # 80 ms: past 65% of it
    (10**7, {CRIT: True, STD: False, SHED: False}),  # critical is never shed by prediction
])
def test_lower_classes_are_shed_first(rows_ahead: int, expected: dict[Priority, bool]) -> None:
    for priority, admitted in expected.items():
        d = decide(request(priority), view(rows_ahead, share=OVER), None, SETTINGS, 0.0)
        assert d.admitted is admitted, priority
        assert admitted or d.reason is RejectReason.SHED


def test_a_caller_within_its_share_gets_its_whole_budget_and_no_hold() -> None:
    within = OVER._replace(within=True, demand_rows_per_s=10.0)
    assert not decide(request(), view(70, share=OVER), None, SETTINGS, 0.0).admitted
    assert decide(request(), view(70, share=within), None, SETTINGS, 0.0).admitted  # 80 ms
    d = decide(request(), view(120, share=within), None, SETTINGS, 0.0)  # 130 ms: misses
    assert d.reason is RejectReason.SHED and d.hold is None  # a burst, not the overload


def test_the_only_caller_is_over_its_share_when_it_asks_more_than_the_capacity() -> None:
    # No tenants configured: the implicit tenant is judged like any other (issue 12).
    d = decide(request(), view(200, share=OVER), None, SETTINGS, 0.0)
    assert d.reason is RejectReason.SHED and d.hold is not None


def test_a_held_caller_is_shed_at_once_until_the_overshoot_has_passed() -> None:
    hold = Hold(until_s=0.5, rows=1)
    empty = view()  # the queue emptied: a fresh prediction would admit
    d = decide(request(now=0.1), empty, hold, SETTINGS, 0.1)
    assert d.reason is RejectReason.SHED and d.hold == hold
    assert d.retry_after_s == pytest.approx(0.4) and d.predicted_finish_s is None
    assert decide(request(now=0.1, rows=0), empty, Hold(0.5, 2), SETTINGS, 0.1).admitted
    after = decide(request(now=0.5), empty, hold, SETTINGS, 0.5)
    assert after.admitted and after.hold is None  # judged afresh, the hold dropped


def test_a_stale_fit_gets_a_probe_on_an_idle_replica() -> None:
    # The fit predicts 117 ms for one row against a 50 ms objective (a slow first batch,
    # say): every request is shed, so no batch would ever correct it.
    slow = view(fixed_s=0.110, per_row_s=0.007, share=OVER)
    fresh = slow._replace(probed_ago_s=0.2)
    assert decide(request(budget_s=0.05), fresh, None, SETTINGS, 0.0).reason is RejectReason.SHED
    stale = slow._replace(probed_ago_s=PROBE_AFTER_S)
    d = decide(request(budget_s=0.05), stale, Hold(1.0, 1), SETTINGS, 0.0)
    assert d.admitted and d.probe and d.hold is None  # nothing queued: the backlog is gone
    overrun = stale._replace(idle_replicas=0)  # its batch ran past the prediction: not idle
    for busy in (stale._replace(replica_free_in_s=(0.01,)), stale._replace(rows_ahead=1),
                 overrun):
        assert decide(request(budget_s=0.05), busy, None, SETTINGS, 0.0).reason is \
            RejectReason.SHED  # a probe would delay someone: the prediction decides


def test_quotas_come_before_the_hold_and_do_not_count_as_demand() -> None:
    empty_bucket = TokenBucket(rate_per_s=2.0, burst=1.0, tokens=0.0, updated_s=0.0)
    d = decide(request(now=0.1, bucket=empty_bucket), view(), Hold(1.0, 1), SETTINGS, 0.1)
    assert d.reason is RejectReason.RATE_LIMITED and not d.counts_demand
    assert d.retry_after_s == pytest.approx(0.4)  # 0.2 there, 0.8 more at 2/s
    assert d.bucket == empty_bucket and d.hold == Hold(1.0, 1)  # the hold is kept


def test_concurrency_cap_rejects_without_taking_a_token() -> None:
    bucket = TokenBucket.full(10.0, 5.0, 0.0)
    d = decide(request(bucket=bucket, inflight=4, max_concurrency=4),
               view(fixed_s=0.19, per_row_s=0.001), None, SETTINGS, 0.0)
    assert d.reason is RejectReason.CONCURRENCY and d.status == 429 and not d.counts_demand
    assert d.retry_after_s == pytest.approx(0.2)  # one full batch
    assert d.bucket == bucket
    assert decide(request(bucket=bucket, inflight=3, max_concurrency=4), view(), None,
                  SETTINGS, 0.0).admitted


def test_a_request_past_its_deadline_gets_504_whatever_its_class() -> None:
    for priority in Priority.by_rank():
        d = decide(request(priority, budget_s=0.0), view(), None, SETTINGS, 0.0)
        assert d.status == 504 and d.reason is RejectReason.DEADLINE and not d.counts_demand


@pytest.mark.parametrize("cold", [
    LoadView(10**6, (0.0,), 0, None, 10),  # nothing measured
    LoadView(10**6, (), 0, ServiceFit(0.0, 0.001), 10, ready_replicas=0),  # no replica
])
def test_cold_or_no_ready_replica_admits(cold: LoadView) -> None:
    assert cold.cold
    for priority in Priority.by_rank():
        assert decide(request(priority), cold, None, SETTINGS, 0.0).admitted


def test_a_request_is_not_charged_for_rows_riding_in_its_own_batch() -> None:
    # 20 rows ahead in 32-row batches: all ride with this one, 20 + 1 rows of 1 ms each.
    d = decide(request(budget_s=0.06), view(20, cap=32), None, SETTINGS, 0.0)
    assert d.admitted and d.predicted_finish_s == pytest.approx(0.021)
    # 40 rows ahead: one full batch first (32 ms), then its own, counted full (32 ms: later
    # arrivals fill it).
    d = decide(request(budget_s=0.06), view(40, cap=32), None, SETTINGS, 0.0)
    assert d.predicted_finish_s == pytest.approx(0.064)


def test_a_caller_over_its_share_has_only_its_part_of_each_batch() -> None:
    # 40 rows ahead, 32-row batches (32 ms, 1000 rows/s). A quarter of the rate for this
    # caller: its 40 rows take 5 batches of which it has 8 rows each, then its own.
    quarter = OVER._replace(rows_per_s=250.0)
    full = decide(request(budget_s=1.0), view(40, cap=32), None, SETTINGS, 0.0)
    part = decide(request(budget_s=1.0), view(40, cap=32, share=quarter), None, SETTINGS, 0.0)
    assert full.predicted_finish_s == pytest.approx(2 * 0.032)
    assert part.predicted_finish_s == pytest.approx(5 * 0.032 + 0.032)
    starved = OVER._replace(rows_per_s=0.0)
    assert decide(request(budget_s=1.0), view(40, cap=32, share=starved), None, SETTINGS,
                  0.0).reason is RejectReason.SHED


def test_busy_replicas_and_the_batch_wait_enter_the_prediction() -> None:
    assert decide(request(), view(free_in=(0.05,)), None, SETTINGS, 0.0).admitted
    busy = decide(request(), view(free_in=(0.07,), share=OVER), None, SETTINGS, 0.0)
    assert busy.reason is RejectReason.SHED  # 70 ms + its own past 65 ms
    two = decide(request(), view(free_in=(0.07, 0.0), share=OVER), None, SETTINGS, 0.0)
    assert two.admitted  # the other replica is idle
    waited = decide(request(), view(batch_wait_s=0.07, share=OVER), None, SETTINGS, 0.0)
    assert waited.reason is RejectReason.SHED


def test_all_replicas_draining_falls_back_to_the_fluid_drain() -> None:
    draining = view(50, free_in=(), ready_replicas=1, share=OVER)
    d = decide(request(), draining, None, SETTINGS, 0.0)
    assert d.predicted_finish_s == pytest.approx(0.05 + 0.010)  # 50 rows at 1000/s, own 10


def test_retry_after_is_clamped() -> None:
    s = AdmissionSettings(max_retry_after_s=30.0, min_retry_after_s=0.5)
    slow = TokenBucket(rate_per_s=0.001, burst=1.0, tokens=0.0, updated_s=0.0)
    assert decide(request(bucket=slow), view(), None, s, 0.0).retry_after_s == 30.0
    d = decide(request(SHED), view(50, share=OVER), None, s, 0.0)  # 1 ms over half
    assert d.reason is RejectReason.SHED and d.retry_after_s == 0.5


def test_settings_validation() -> None:
    with pytest.raises(ValueError, match="shed_fraction_standard"):
        AdmissionSettings(shed_fraction_standard=0.0)
    with pytest.raises(ValueError, match="retry_after"):
        AdmissionSettings(min_retry_after_s=2.0, max_retry_after_s=1.0)
    assert SETTINGS.shed_fraction(STD) == 0.65
    assert SETTINGS.shed_fraction(STD, within_share=True) == 1.0
    assert SETTINGS.shed_fraction(CRIT) is None


_views = st.builds(
    view,
    rows_ahead=st.integers(0, 5000),
    fixed_s=st.floats(0.0, 0.05),
    per_row_s=st.floats(1e-5, 0.01),
    cap=st.integers(1, 64),
    free_in=st.lists(st.floats(0.0, 0.2), min_size=1, max_size=6).map(tuple),
    share=st.sampled_from([None, OVER, OVER._replace(rows_per_s=300.0)]),
)


@FAST
@given(v=_views, budget_s=st.floats(0.001, 2.0))
def test_if_a_class_is_shed_every_lower_class_is_shed_too(v: LoadView, budget_s: float) -> None:
    admitted = [decide(request(p, budget_s), v, None, SETTINGS, 0.0).admitted
                for p in Priority.by_rank()]
    assert admitted[0] and admitted == sorted(admitted, reverse=True)


@FAST
@given(v=_views, budget_s=st.floats(0.001, 2.0), priority=st.sampled_from([STD, SHED]),
       more=st.integers(1, 500))
def test_admitted_fits_its_fraction_and_a_longer_queue_never_admits_more(
        v: LoadView, budget_s: float, priority: Priority, more: int) -> None:
    d = decide(request(priority, budget_s), v, None, SETTINGS, 0.0)
    fraction = SETTINGS.shed_fraction(priority, within_share=v.share is None)
    assert fraction is not None
    if d.admitted:
        assert d.predicted_finish_s is not None
        assert d.predicted_finish_s <= fraction * budget_s + 1e-12
    else:
        longer = v._replace(rows_ahead=v.rows_ahead + more)
        assert not decide(request(priority, budget_s), longer, None, SETTINGS, 0.0).admitted


@FAST
@example(v=view(), queued_extra=0, rows=1, wait_s=0.0, budget_s=0.1, priority=STD)  # admits
@given(v=_views, queued_extra=st.integers(0, 200), rows=st.integers(1, 80),
       wait_s=st.floats(0.0, 0.01), budget_s=st.floats(0.001, 2.0),
       priority=st.sampled_from(list(Priority.by_rank())))
def test_the_shortcut_admits_only_what_decide_admits(
        v: LoadView, queued_extra: int, rows: int, wait_s: float, budget_s: float,
        priority: Priority) -> None:
    # The gate's shortcut (a bound from the queue's length and the last replica to free)
    # for a caller alone on its deployment: it drains at the full rate (within its share,
    # or over it with all the capacity).
    from tailguard.serve.gate.finish import finish_bound

    assert v.service is not None
    v = v._replace(share=None if v.share is None else OVER._replace(rows_per_s=1e9),
                   batch_wait_s=wait_s)
    req = request(priority, budget_s, rows=rows)
    bound = finish_bound(v.service, max(v.replica_free_in_s), v.rows_ahead + queued_extra,
                         rows, v.batch_rows, wait_s)
    if surely_admitted(req, bound, SETTINGS, 0.0):
        assert decide(req, v, None, SETTINGS, 0.0).admitted


def test_the_shortcut_needs_no_quota_and_a_bound_within_the_tightest_fraction() -> None:
    assert surely_admitted(request(), 0.06, SETTINGS, 0.0)  # 60 ms <= 65% of 100 ms
    assert not surely_admitted(request(), 0.07, SETTINGS, 0.0)  # within 100 ms: decide
    assert not surely_admitted(request(), None, SETTINGS, 0.0)  # no bound: decide
    bucket = TokenBucket.full(10.0, 2.0, 0.0)
    assert not surely_admitted(request(bucket=bucket), 0.0, SETTINGS, 0.0)  # take a token
    assert not surely_admitted(request(max_concurrency=4), 0.0, SETTINGS, 0.0)
    assert surely_admitted(request(CRIT), 10.0, SETTINGS, 0.0)  # never shed by prediction
