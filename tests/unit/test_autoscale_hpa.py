"""The Kubernetes HPA baseline: tolerance, stabilisation, rate limits, unready pods."""

from __future__ import annotations

import pytest

from tailguard.autoscale.policies.hpa import HpaConfig, HpaMetric, HpaState, decide
from tailguard.autoscale.snapshot import MetricsSnapshot

EVERY_TICK = HpaConfig(sync_period_s=0.0)


def _snap(ready: int, busy: float, starting: int = 0, rate: float = 0.0) -> MetricsSnapshot:
    return MetricsSnapshot(
        window_s=15.0,
        arrival_rate_rps=rate,
        ready_replicas=ready,
        starting_replicas=starting,
        busy_ratio=busy,
    )


@pytest.mark.parametrize(
    ("busy", "expected"),
    [
        (0.60, 10),  # on target
        (0.65, 10),  # ratio 1.083: inside the 10 % tolerance
        (0.655, 10),  # ratio 1.092: still inside
        (0.54, 10),  # ratio 0.9: inside
        (0.70, 12),  # ratio 1.167 -> ceil(11.67)
        (0.30, 5),  # ratio 0.5 -> 5 (no earlier recommendation to stabilise on)
        (0.0, 0),  # idle -> 0 (bounds keep min_replicas)
    ],
)
def test_desired_is_ceil_of_ratio_outside_tolerance(busy: float, expected: int) -> None:
    replicas, _ = decide(_snap(10, busy), HpaState(), EVERY_TICK, now=0.0)
    assert replicas == expected


def test_requests_per_replica_metric() -> None:
    cfg = HpaConfig(metric=HpaMetric.REQUESTS, target_rps_per_replica=100.0, sync_period_s=0)
    replicas, _ = decide(_snap(5, 0.0, rate=1000.0), HpaState(), cfg, now=0.0)
    assert replicas == 10


def test_scale_down_waits_for_the_300s_stabilisation_window() -> None:
    state = HpaState()
    replicas, state = decide(_snap(10, 0.9), state, EVERY_TICK, now=0.0)
    assert replicas == 15
    for t in range(15, 300, 15):
        replicas, state = decide(_snap(15, 0.2), state, EVERY_TICK, now=float(t))
        assert replicas == 15, t  # the t=0 recommendation of 15 is still in the window
    replicas, state = decide(_snap(15, 0.2), state, EVERY_TICK, now=300.0)
    assert replicas == 5


def test_scale_up_is_immediate_but_rate_limited() -> None:
    state = HpaState()
    # ratio 10 on 2 replicas wants 20; policies Percent 100 and Pods 4 per 15 s, Max -> 6.
    replicas, state = decide(_snap(2, 1.0), state, HpaConfig(target_utilization=0.1), now=0.0)
    assert replicas == 6
    # 5 s later, same period: 4 were already added since the period began at 2 -> still 6.
    fast = HpaConfig(target_utilization=0.1, sync_period_s=0.0)
    replicas, state = decide(_snap(6, 1.0), state, fast, now=5.0)
    assert replicas == 6
    # A new period starts from 6: max(2 * 6, 6 + 4) = 12.
    replicas, state = decide(_snap(6, 1.0), state, fast, now=15.0)
    assert replicas == 12


def test_nothing_happens_between_sync_periods() -> None:
    cfg = HpaConfig()  # 15 s sync period
    replicas, state = decide(_snap(4, 0.9), HpaState(), cfg, now=0.0)
    assert replicas == 6
    replicas, state = decide(_snap(6, 1.0), state, cfg, now=10.0)
    assert replicas == 6
    replicas, _ = decide(_snap(6, 1.0), state, cfg, now=15.0)
    assert replicas == 10


def test_unready_pods_count_as_idle_on_scale_up() -> None:
    # Ready pods at 0.7 (ratio 1.17) but 4 more are starting: 0.7 * 4 / 8 = 0.35 reverses.
    replicas, _ = decide(_snap(4, 0.7, starting=4), HpaState(), EVERY_TICK, now=0.0)
    assert replicas == 8
    # Still over target with them counted at zero: scale on the recomputed ratio.
    replicas, _ = decide(_snap(4, 1.0, starting=1), HpaState(), EVERY_TICK, now=0.0)
    assert replicas == 7  # 1.0 * 4 / (0.6 * 5) = 1.33 -> ceil(6.67)


def test_inactive_at_zero_replicas() -> None:
    replicas, _ = decide(_snap(0, 0.0, rate=50.0), HpaState(), EVERY_TICK, now=0.0)
    assert replicas == 0


def test_config_is_checked() -> None:
    with pytest.raises(ValueError, match="target_utilization"):
        HpaConfig(target_utilization=0.0)
    assert HpaConfig(metric="requests_per_replica").metric is HpaMetric.REQUESTS  # type: ignore[arg-type]
