"""Bounds wrap every policy once: clamps, steps, cooldowns, scale to and from zero; state."""

from __future__ import annotations

import json

import pytest

from tailguard.autoscale import POLICY_NAMES, BoundsConfig, MetricsSnapshot, make_autoscaler
from tailguard.autoscale.policies.bounds import BoundsState, apply_bounds


def _snap(ready: int, rate: float = 10.0, starting: int = 0, queue: int = 0) -> MetricsSnapshot:
    return MetricsSnapshot(
        window_s=10.0,
        arrival_rate_rps=rate,
        ready_replicas=ready,
        starting_replicas=starting,
        queue_depth=queue,
        ongoing_requests=queue,
        busy_ratio=0.5,
        latency_p99_s=0.05,
    )


@pytest.mark.parametrize(
    ("desired", "bounds", "expected"),
    [
        (50, BoundsConfig(min_replicas=1, max_replicas=10), 10),
        (0, BoundsConfig(min_replicas=2, max_replicas=10), 2),
        (5, BoundsConfig(min_replicas=2, max_replicas=10), 5),
        (20, BoundsConfig(max_replicas=100, max_scale_up_step=3), 7),
        (1, BoundsConfig(max_replicas=100, max_scale_down_step=2), 2),
    ],
)
def test_clamps_and_steps(desired: int, bounds: BoundsConfig, expected: int) -> None:
    replicas, _ = apply_bounds(desired, _snap(4), BoundsState(), bounds, now=0.0)
    assert replicas == expected


def test_cooldowns_hold_the_count_after_a_change() -> None:
    cfg = BoundsConfig(scale_up_cooldown_s=30.0, scale_down_cooldown_s=60.0)
    replicas, state = apply_bounds(6, _snap(4), BoundsState(), cfg, now=0.0)
    assert (replicas, state.last_change_s) == (6, 0.0)
    assert apply_bounds(9, _snap(6), state, cfg, now=29.0)[0] == 6
    assert apply_bounds(9, _snap(6), state, cfg, now=30.0)[0] == 9
    assert apply_bounds(2, _snap(6), state, cfg, now=59.0)[0] == 6
    assert apply_bounds(2, _snap(6), state, cfg, now=60.0)[0] == 2


def test_scale_to_zero_only_when_allowed_and_idle_past_the_grace_period() -> None:
    never = BoundsConfig(min_replicas=1)
    assert apply_bounds(0, _snap(1, rate=0.0), BoundsState(), never, 0.0)[0] == 1
    cfg = BoundsConfig(min_replicas=0, scale_to_zero_grace_s=30.0)
    _, state = apply_bounds(1, _snap(1, rate=5.0), BoundsState(), cfg, now=0.0)
    assert state.last_demand_s == 0.0
    assert apply_bounds(0, _snap(1, rate=0.0), state, cfg, now=29.0)[0] == 1
    assert apply_bounds(0, _snap(1, rate=0.0), state, cfg, now=30.0)[0] == 0
    # At zero, any demand (a queued request) scales to one at once, whatever the policy said.
    assert apply_bounds(0, _snap(0, rate=0.0, queue=1), state, cfg, now=40.0)[0] == 1


def test_scale_from_zero_ignores_the_scale_up_cooldown() -> None:
    cfg = BoundsConfig(min_replicas=0, scale_up_cooldown_s=600.0)
    state = BoundsState(last_change_s=0.0)
    assert apply_bounds(3, _snap(0, rate=5.0), state, cfg, now=1.0)[0] == 3


def test_every_policy_is_wrapped() -> None:
    bounds = BoundsConfig(min_replicas=3, max_replicas=4)
    for name in POLICY_NAMES:
        scaler = make_autoscaler(name, bounds)
        state = scaler.initial_state()
        low, state = scaler.decide(_snap(3, rate=0.0), state, now=0.0)
        high, _ = scaler.decide(_snap(3, rate=1e5, queue=10_000), state, now=1000.0)
        assert low >= 3 and high <= 4, name


@pytest.mark.parametrize("name", POLICY_NAMES)
def test_state_dict_round_trip(name: str) -> None:
    scaler = make_autoscaler(name, BoundsConfig(max_replicas=50))
    state = scaler.initial_state()
    for t, rate in enumerate([100.0, 900.0, 900.0, 50.0, 50.0]):
        _, state = scaler.decide(_snap(4, rate=rate, queue=int(rate)), state, now=15.0 * t)
    raw = json.loads(json.dumps(state.state_dict()))
    restored = scaler.load_state_dict(raw)
    assert restored == state
    # The restored state decides exactly like the original.
    snap = _snap(4, rate=700.0, queue=300)
    assert scaler.decide(snap, restored, 90.0) == scaler.decide(snap, state, 90.0)


def test_state_from_another_policy_or_version_is_refused() -> None:
    hpa, slo = make_autoscaler("hpa"), make_autoscaler("slo")
    raw = hpa.initial_state().state_dict()
    with pytest.raises(ValueError, match="fresh state"):
        slo.load_state_dict(raw)
    with pytest.raises(ValueError, match="version"):
        hpa.load_state_dict({**raw, "version": 99})


def test_unknown_policy_and_options_are_reported() -> None:
    with pytest.raises(ValueError, match="unknown policy"):
        make_autoscaler("magic")
    with pytest.raises(ValueError, match="target_utilisation"):
        make_autoscaler("hpa", target_utilisation=0.5)
    assert make_autoscaler("hpa", target_utilization=0.5).config.target_utilization == 0.5


def test_bounds_config_is_checked() -> None:
    with pytest.raises(ValueError, match="max_replicas"):
        BoundsConfig(min_replicas=5, max_replicas=2)
