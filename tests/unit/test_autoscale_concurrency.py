"""The Ray Serve baseline (delays, smoothing, scale from zero) and the Knative panic mode."""

from __future__ import annotations

import pytest

from tailguard.autoscale.policies.concurrency import (
    ConcurrencyConfig,
    ConcurrencyState,
    decide,
    ray_desired_replicas,
)
from tailguard.autoscale.snapshot import MetricsSnapshot


def _snap(ready: int, ongoing: int, starting: int = 0) -> MetricsSnapshot:
    return MetricsSnapshot(
        window_s=1.0,
        arrival_rate_rps=float(ongoing),
        ready_replicas=ready,
        starting_replicas=starting,
        ongoing_requests=ongoing,
    )


@pytest.mark.parametrize(
    ("total", "running", "config", "expected"),
    [
        (20.0, 5, ConcurrencyConfig(), 10),  # 4 per replica / target 2 -> double
        (10.0, 5, ConcurrencyConfig(), 5),  # on target
        (2.0, 5, ConcurrencyConfig(), 1),
        (20.0, 5, ConcurrencyConfig(upscaling_factor=0.5), 8),  # 1 + (2-1)*0.5 -> ceil(7.5)
        # smoothing alone would keep 5 although the raw ratio says 4: Ray takes one off
        (7.0, 5, ConcurrencyConfig(downscaling_factor=0.1), 4),
        (0.0, 3, ConcurrencyConfig(), 0),
    ],
)
def test_ray_desired_replicas(
    total: float, running: int, config: ConcurrencyConfig, expected: int
) -> None:
    assert ray_desired_replicas(total, running, config) == expected


def _run(
    cfg: ConcurrencyConfig, ready: int, ongoing: int, t0: int, t1: int, state: ConcurrencyState
) -> tuple[list[int], ConcurrencyState]:
    out = []
    for t in range(t0, t1):
        replicas, state = decide(_snap(ready, ongoing), state, cfg, float(t))
        out.append(replicas)
    return out, state


def test_upscale_waits_upscale_delay() -> None:
    cfg = ConcurrencyConfig(upscale_delay_s=30.0, look_back_period_s=5.0)
    decisions, _ = _run(cfg, 2, 16, 0, 31, ConcurrencyState())
    assert decisions[:30] == [2] * 30
    assert decisions[30] == 8


def test_a_pause_in_demand_restarts_the_upscale_delay() -> None:
    cfg = ConcurrencyConfig(upscale_delay_s=30.0, look_back_period_s=1.0)
    first, state = _run(cfg, 2, 16, 0, 20, ConcurrencyState())
    calm, state = _run(cfg, 2, 4, 20, 21, state)
    again, state = _run(cfg, 2, 16, 21, 52, state)
    assert set(first + calm) == {2}
    assert again[:30] == [2] * 30 and again[30] == 8


def test_downscale_waits_downscale_delay() -> None:
    cfg = ConcurrencyConfig(look_back_period_s=5.0)  # 600 s
    decisions, _ = _run(cfg, 8, 2, 0, 601, ConcurrencyState())
    assert set(decisions[:600]) == {8}
    assert decisions[600] == 1


def test_scale_from_zero_is_immediate() -> None:
    replicas, _ = decide(_snap(0, 3), ConcurrencyState(), ConcurrencyConfig(), 0.0)
    assert replicas == 1
    idle, _ = decide(_snap(0, 0), ConcurrencyState(), ConcurrencyConfig(), 0.0)
    assert idle == 0


def test_one_to_zero_uses_downscale_to_zero_delay() -> None:
    cfg = ConcurrencyConfig(downscale_to_zero_delay_s=10.0, look_back_period_s=1.0)
    decisions, _ = _run(cfg, 1, 0, 0, 11, ConcurrencyState())
    assert decisions[:10] == [1] * 10 and decisions[10] == 0


def test_panic_scales_up_at_once_and_never_down_while_panicking() -> None:
    cfg = ConcurrencyConfig(panic=True, look_back_period_s=60.0)
    state = ConcurrencyState()
    calm, state = _run(cfg, 2, 4, 0, 30, state)
    assert set(calm) == {2}
    # 6 s panic window: average ongoing jumps; ceil(avg / 2) / 2 replicas >= 200 % -> panic.
    burst, state = _run(cfg, 2, 80, 30, 33, state)
    assert state.panic_since_s == 32.0
    assert max(burst) >= 8 and burst == sorted(burst)
    peak = burst[-1]
    after, state = _run(cfg, peak, 0, 33, 90, state)
    assert min(after) == peak  # no scale-down in panic
    _, state = _run(cfg, peak, 0, 90, 100, state)
    assert state.panic_since_s is None  # 60 s (stable window) without crossing the threshold


def test_without_panic_the_same_burst_waits_the_upscale_delay() -> None:
    cfg = ConcurrencyConfig(panic=False, look_back_period_s=60.0)
    burst, _ = _run(cfg, 2, 80, 0, 10, ConcurrencyState())
    assert set(burst) == {2}


def test_config_is_checked() -> None:
    with pytest.raises(ValueError, match="panic_threshold"):
        ConcurrencyConfig(panic_threshold=1.0)
    with pytest.raises(ValueError, match="target_ongoing_requests"):
        ConcurrencyConfig(target_ongoing_requests=0)
