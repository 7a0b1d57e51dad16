"""Baseline: Ray Serve's request-based autoscaling, with an optional Knative panic mode.

Ray Serve (``python/ray/serve/autoscaling_policy.py``,
``replica_queue_length_autoscaling_policy``; defaults from ``AutoscalingConfig`` and
https://docs.ray.io/en/latest/serve/advanced-guides/advanced-autoscaling.html):

* ``total`` = ongoing requests (queued + running) averaged over ``look_back_period_s`` (30 s);
* ``error_ratio = (total / running_replicas) / target_ongoing_requests`` (target 2);
* smoothed by ``upscaling_factor`` or ``downscaling_factor`` (default 1):
  ``desired = ceil(running * (1 + (error_ratio - 1) * factor))``, minus one when the
  smoothing alone keeps it stuck at the current count while the raw ratio says shrink;
* a scale-up is applied once it has been wanted continuously for ``upscale_delay_s``
  (30 s), a scale-down after ``downscale_delay_s`` (600 s); scaling 1 -> 0 may use
  ``downscale_to_zero_delay_s``; from zero running replicas, any request scales to
  ``max(ceil(upscaling_factor), target)`` at once. Ray counts these delays in control-loop
  ticks; we keep them in seconds (the same thing at Ray's fixed 0.1 s loop).

Knative panic mode (``pkg/autoscaler/scaling/autoscaler.go``; defaults from
https://knative.dev/docs/serving/autoscaling/kpa-specific/), when ``panic=True``: the
concurrency averaged over the panic window (6 s, 10 % of the 60 s stable window) gives
``panic_desired = ceil(panic_avg / target)``; if ``panic_desired / ready >= 2.0`` (200 %) the
autoscaler panics: it scales up to ``panic_desired`` at once (no delay) and never scales
down while panicking; it leaves panic once the threshold has not been crossed for one stable
window (60 s).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Self

from tailguard.autoscale.policies._history import (
    STATE_VERSION,
    Samples,
    check_version,
    push,
    samples_from_list,
    samples_to_list,
    window_mean,
)
from tailguard.autoscale.snapshot import MetricsSnapshot

__all__ = ["ConcurrencyConfig", "ConcurrencyState", "decide", "ray_desired_replicas"]

_KIND = "concurrency"


@dataclass(frozen=True)
class ConcurrencyConfig:
    """Ray Serve ``autoscaling_config`` fields plus the Knative panic option (seconds)."""

    target_ongoing_requests: float = 2.0
    upscale_delay_s: float = 30.0
    downscale_delay_s: float = 600.0
    downscale_to_zero_delay_s: float | None = None
    upscaling_factor: float = 1.0
    downscaling_factor: float = 1.0
    look_back_period_s: float = 30.0
    panic: bool = False
    stable_window_s: float = 60.0
    panic_window_s: float = 6.0
    panic_threshold: float = 2.0

    def __post_init__(self) -> None:
        if self.target_ongoing_requests <= 0:
            raise ValueError("target_ongoing_requests must be > 0")
        if self.upscaling_factor <= 0 or self.downscaling_factor <= 0:
            raise ValueError("upscaling_factor and downscaling_factor must be > 0")
        for name in ("upscale_delay_s", "downscale_delay_s", "look_back_period_s"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0")
        if self.panic_window_s <= 0 or self.stable_window_s < self.panic_window_s:
            raise ValueError("need 0 < panic_window_s <= stable_window_s")
        if self.panic_threshold <= 1.0:
            raise ValueError("panic_threshold is a ratio (2.0 = 200 %) and must be > 1")


@dataclass(frozen=True)
class ConcurrencyState:
    """Ongoing-request samples, the pending scaling direction, and Knative panic state."""

    samples: Samples = ()
    direction: int = 0
    direction_since_s: float | None = None
    panic_since_s: float | None = None
    max_panic_replicas: int = 0

    def state_dict(self) -> dict[str, Any]:
        return {
            "kind": _KIND,
            "version": STATE_VERSION,
            "samples": samples_to_list(self.samples),
            "direction": self.direction,
            "direction_since_s": self.direction_since_s,
            "panic_since_s": self.panic_since_s,
            "max_panic_replicas": self.max_panic_replicas,
        }

    @classmethod
    def from_state_dict(cls, raw: dict[str, Any]) -> Self:
        check_version(raw, _KIND)
        return cls(
            samples=samples_from_list(raw["samples"]),
            direction=int(raw["direction"]),
            direction_since_s=raw["direction_since_s"],
            panic_since_s=raw["panic_since_s"],
            max_panic_replicas=int(raw["max_panic_replicas"]),
        )


def ray_desired_replicas(total_ongoing: float, running: int, config: ConcurrencyConfig) -> int:
    """Ray's ``_calculate_desired_num_replicas`` without its min/max clamp (bounds do that)."""
    error_ratio = (total_ongoing / running) / config.target_ongoing_requests
    factor = config.upscaling_factor if error_ratio >= 1 else config.downscaling_factor
    smoothed = 1 + (error_ratio - 1) * factor
    desired = math.ceil(running * smoothed)
    if math.ceil(running * error_ratio) < running and desired == running:
        desired -= 1
    return max(desired, 0)


def decide(
    snapshot: MetricsSnapshot, state: ConcurrencyState, config: ConcurrencyConfig, now: float
) -> tuple[int, ConcurrencyState]:
    """One Ray Serve autoscaling decision at ``now`` (plus Knative panic when enabled)."""
    keep = max(config.look_back_period_s, config.stable_window_s if config.panic else 0.0)
    samples = push(state.samples, now, snapshot.ongoing_requests, keep)
    current = snapshot.current_replicas
    running = snapshot.ready_replicas
    total = window_mean(samples, now, config.look_back_period_s)
    if running == 0:
        nxt = ConcurrencyState(samples, 0, None, state.panic_since_s, state.max_panic_replicas)
        if total > 0 or snapshot.has_demand:
            return max(math.ceil(config.upscaling_factor), current), nxt
        return current, nxt

    panic_since, max_panic = state.panic_since_s, state.max_panic_replicas
    if config.panic:
        panic_avg = window_mean(samples, now, config.panic_window_s)
        panic_desired = math.ceil(panic_avg / config.target_ongoing_requests)
        if panic_desired / running >= config.panic_threshold:
            panic_since = now
        elif panic_since is not None and now - panic_since > config.stable_window_s:
            panic_since, max_panic = None, 0
        if panic_since is not None:
            max_panic = max(max_panic, panic_desired, current)
            return max_panic, ConcurrencyState(samples, 0, None, panic_since, max_panic)

    desired = ray_desired_replicas(total, running, config)
    decision = current
    direction, since = 0, None
    if desired > current:
        direction = 1
        since = state.direction_since_s if state.direction == 1 else now
        assert since is not None
        if now - since >= config.upscale_delay_s:
            decision, direction, since = desired, 0, None
    elif desired < current:
        direction = -1
        since = state.direction_since_s if state.direction == -1 else now
        assert since is not None
        delay = config.downscale_delay_s
        if current == 1 and config.downscale_to_zero_delay_s is not None:
            delay = config.downscale_to_zero_delay_s
        if current != 1:
            desired = max(1, desired)
        if now - since >= delay:
            decision, direction, since = desired, 0, None
    return decision, ConcurrencyState(samples, direction, since, panic_since, max_panic)
