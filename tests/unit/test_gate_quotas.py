"""Quotas as values: token bucket, concurrency cap, shed hold-off."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tailguard.serve.gate.quotas import (
    Hold,
    TokenBucket,
    initial_bucket,
    take,
    within_concurrency,
)
from tailguard.serve.gate.tenants import TenantSpec

FAST = settings(max_examples=150, deadline=None)

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


def test_initial_bucket_from_a_tenant_spec() -> None:
    assert initial_bucket(TenantSpec(id="free"), 0.0) is None
    spec = TenantSpec(id="t", rate_limit_rps=5.0, burst=2)
    assert initial_bucket(spec, 7.0) == TokenBucket(rate_per_s=5.0, burst=2.0, tokens=2.0,
                                                    updated_s=7.0)


def test_a_hold_covers_requests_as_big_or_bigger_until_it_ends() -> None:
    hold = Hold(until_s=1.0, rows=4)
    assert hold.holds(4, 0.5) and hold.holds(9, 0.99)
    assert not hold.holds(3, 0.5)  # a smaller request may fit where the held one did not
    assert not hold.holds(4, 1.0)
