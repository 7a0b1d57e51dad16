"""Baseline: the Kubernetes Horizontal Pod Autoscaler (autoscaling/v2), faithfully.

Follows the documented algorithm
(https://kubernetes.io/docs/tasks/run-application/horizontal-pod-autoscale/) and its code
(``pkg/controller/podautoscaler/replica_calculator.go`` and ``horizontal.go``):

* every ``sync_period_s`` (``--horizontal-pod-autoscaler-sync-period``, 15 s):
  ``desiredReplicas = ceil(readyReplicas * currentMetricValue / desiredMetricValue)``;
* tolerance: no change when ``|ratio - 1| <= 0.1``
  (``--horizontal-pod-autoscaler-tolerance``);
* not-ready pods (our *starting* replicas): on a scale-up they count as using 0 % of the
  metric; if the ratio recomputed that way reverses direction or falls inside the tolerance,
  nothing changes;
* ``behavior`` defaults: scale-down stabilisation window 300 s (the highest recommendation
  in the window wins), scale-up window 0 s; scale-up rate limited by two policies per 15 s
  period, ``Percent: 100`` and ``Pods: 4``, ``selectPolicy: Max`` (so at most
  ``max(2 * start, start + 4)`` replicas, where ``start`` is the count at the beginning of
  the period); scale-down ``Percent: 100`` per 15 s;
* an HPA at zero replicas is inactive (scaling from zero is the bounds' job, as KEDA's
  activator is in Kubernetes).

The metric is the mean busy ratio of ready replicas (time in ``predict`` over wall time)
against ``target_utilization`` (the analogue of ``averageUtilization`` for CPU), the NVML
GPU utilisation of their devices against the same target (``gpu_utilization``; with no GPU
signal the HPA holds, as Kubernetes does when a metric is missing), or requests per second
per ready replica against ``target_rps_per_replica`` (a Pods metric with ``averageValue``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Self

from tailguard.autoscale.policies._history import (
    STATE_VERSION,
    Samples,
    check_version,
    push,
    samples_from_list,
    samples_to_list,
    window_max,
)
from tailguard.autoscale.snapshot import MetricsSnapshot

__all__ = ["HpaConfig", "HpaMetric", "HpaState", "decide"]

_KIND = "hpa"


class HpaMetric(StrEnum):
    BUSY = "busy"
    REQUESTS = "requests_per_replica"
    GPU = "gpu_utilization"


@dataclass(frozen=True)
class HpaConfig:
    """HPA settings, named after their Kubernetes counterparts; durations in seconds."""

    metric: HpaMetric = HpaMetric.BUSY
    target_utilization: float = 0.6
    target_rps_per_replica: float = 100.0
    tolerance: float = 0.1
    sync_period_s: float = 15.0
    scale_down_stabilization_s: float = 300.0
    scale_up_stabilization_s: float = 0.0
    scale_up_percent: float = 100.0
    scale_up_pods: int = 4
    scale_up_period_s: float = 15.0
    scale_down_percent: float = 100.0
    scale_down_period_s: float = 15.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "metric", HpaMetric(self.metric))
        if not 0 < self.target_utilization <= 1:
            raise ValueError("target_utilization must be in (0, 1]")
        if self.target_rps_per_replica <= 0:
            raise ValueError("target_rps_per_replica must be > 0")
        if self.tolerance < 0 or self.sync_period_s < 0:
            raise ValueError("tolerance and sync_period_s must be >= 0")
        if self.scale_up_percent < 0 or not 0 <= self.scale_down_percent <= 100:
            raise ValueError("scale_up_percent >= 0 and scale_down_percent in [0, 100]")


@dataclass(frozen=True)
class HpaState:
    """Last sync time, recent recommendations, and recent scale events ``(t, change)``."""

    last_sync_s: float | None = None
    recommendations: Samples = ()
    scale_events: Samples = ()

    def state_dict(self) -> dict[str, Any]:
        return {
            "kind": _KIND,
            "version": STATE_VERSION,
            "last_sync_s": self.last_sync_s,
            "recommendations": samples_to_list(self.recommendations),
            "scale_events": samples_to_list(self.scale_events),
        }

    @classmethod
    def from_state_dict(cls, raw: dict[str, Any]) -> Self:
        check_version(raw, _KIND)
        return cls(
            last_sync_s=raw["last_sync_s"],
            recommendations=samples_from_list(raw["recommendations"]),
            scale_events=samples_from_list(raw["scale_events"]),
        )


def _usage_ratio(snapshot: MetricsSnapshot, config: HpaConfig, pods: int) -> float:
    """Metric over target, averaged over ``pods`` (ready pods, or ready + unready at 0)."""
    ready = snapshot.ready_replicas
    if config.metric is HpaMetric.BUSY:
        total = snapshot.busy_ratio * ready
        return total / (pods * config.target_utilization)
    if config.metric is HpaMetric.GPU:
        total = (snapshot.gpu_utilization or 0.0) * ready
        return total / (pods * config.target_utilization)
    return snapshot.arrival_rate_rps / (pods * config.target_rps_per_replica)


def _replica_calculator(snapshot: MetricsSnapshot, config: HpaConfig) -> int:
    """``GetResourceReplicas``: the raw recommendation before behaviours."""
    current = snapshot.current_replicas
    ready = snapshot.ready_replicas
    unready = snapshot.starting_replicas
    if ready == 0:
        return current
    if config.metric is HpaMetric.GPU and snapshot.gpu_utilization is None:
        return current  # the metric is missing: hold, never guess
    ratio = _usage_ratio(snapshot, config, ready)
    if not (unready > 0 and ratio > 1.0):
        if abs(1.0 - ratio) <= config.tolerance:
            return current
        return math.ceil(ratio * ready)
    new_ratio = _usage_ratio(snapshot, config, ready + unready)
    if abs(1.0 - new_ratio) <= config.tolerance or new_ratio < 1.0:
        return current
    new = math.ceil(new_ratio * (ready + unready))
    return max(new, current)


def _change_in_period(events: Samples, now: float, period_s: float, sign: int) -> int:
    return int(sum(v for t, v in events if now - t < period_s and v * sign > 0) * sign)


def decide(
    snapshot: MetricsSnapshot, state: HpaState, config: HpaConfig, now: float
) -> tuple[int, HpaState]:
    """One HPA reconciliation at ``now`` (a no-op between sync periods)."""
    current = snapshot.current_replicas
    if state.last_sync_s is not None and now - state.last_sync_s < config.sync_period_s:
        return current, state
    if current == 0:
        return 0, HpaState(now, state.recommendations, state.scale_events)
    raw = _replica_calculator(snapshot, config)
    keep = max(config.scale_down_stabilization_s, config.scale_up_stabilization_s, 1.0)
    # stabilizeRecommendationWithBehaviors: the up window takes the min, the down window
    # the max, of the recommendations in it (this one included).
    up_rec = min(
        [raw]
        + [int(v) for t, v in state.recommendations if now - t < config.scale_up_stabilization_s]
    )
    down_rec = max(
        raw, int(window_max(state.recommendations, now, config.scale_down_stabilization_s))
    )
    stabilized = current
    if stabilized < up_rec:
        stabilized = up_rec
    if stabilized > down_rec:
        stabilized = down_rec
    recommendations = push(state.recommendations, now, raw, keep)
    desired = stabilized
    added = _change_in_period(state.scale_events, now, config.scale_up_period_s, +1)
    deleted = _change_in_period(state.scale_events, now, config.scale_down_period_s, -1)
    if stabilized > current:
        start = current - added + deleted
        limit = max(
            math.ceil(start * (1 + config.scale_up_percent / 100.0)),
            start + config.scale_up_pods,
        )
        desired = min(stabilized, max(limit, current))
    elif stabilized < current:
        start = current + deleted - added
        limit = int(start * (1 - config.scale_down_percent / 100.0))
        desired = max(stabilized, min(limit, current))
    events = state.scale_events
    if desired != current:
        events = push(
            events,
            now,
            desired - current,
            max(config.scale_up_period_s, config.scale_down_period_s),
        )
    return desired, HpaState(now, recommendations, events)
