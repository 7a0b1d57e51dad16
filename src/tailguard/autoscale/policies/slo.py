"""Ours: the fewest replicas whose *predicted* P99 meets the objective, with headroom.

Each decision:

1. plan for ``max(window rate, recent rate) * (1 + rate_headroom)`` (rows/s) plus the rate
   that drains the current queue within ``backlog_drain_s``;
2. find the fewest replicas whose predicted latency quantile (batching M/G/c model of
   :mod:`tailguard.autoscale.queueing`, fed the measured service-time profile and the
   observed inter-arrival CV) is within ``slo_p99_s``;
3. correct the model by what was observed: when the measured P99 exceeds the objective while
   the fleet is settled (no replica starting), the ratio ``observed / predicted`` for the
   current fleet, bounded to ``[1, max_correction]``, tightens the latency target it must
   predict (and the count is capped at ``max_correction`` times the uncorrected one);
4. a second lower bound keeps each replica busy at most ``utilization_ceiling`` of the time
   (GPU-style headroom) even when the latency objective is loose;
5. scale up at once; scale down only to the highest recommendation of the last
   ``scale_down_stabilization_s`` seconds.
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
    window_max,
)
from tailguard.autoscale.queueing import (
    min_replicas_for_latency,
    min_replicas_for_utilization,
    predict_latency_quantile,
)
from tailguard.autoscale.snapshot import MetricsSnapshot

__all__ = ["SloConfig", "SloState", "decide", "recommend"]

_KIND = "slo"


@dataclass(frozen=True)
class SloConfig:
    """Objective and safety margins of the ``slo`` policy; durations in seconds."""

    slo_p99_s: float = 0.2
    quantile: float = 0.99
    rate_headroom: float = 0.2
    utilization_ceiling: float = 0.8
    max_correction: float = 3.0
    backlog_drain_s: float = 5.0
    scale_down_stabilization_s: float = 120.0
    max_replicas_search: int = 10_000

    def __post_init__(self) -> None:
        if self.slo_p99_s <= 0:
            raise ValueError("slo_p99_s must be > 0")
        if not 0 < self.quantile < 1:
            raise ValueError("quantile must be in (0, 1)")
        if self.rate_headroom < 0:
            raise ValueError("rate_headroom must be >= 0")
        if not 0 < self.utilization_ceiling <= 1:
            raise ValueError("utilization_ceiling must be in (0, 1]")
        if self.max_correction < 1:
            raise ValueError("max_correction must be >= 1")
        if self.backlog_drain_s <= 0 or self.scale_down_stabilization_s < 0:
            raise ValueError("backlog_drain_s > 0 and scale_down_stabilization_s >= 0")


@dataclass(frozen=True)
class SloState:
    """Recent recommendations ``(t, replicas)`` for the scale-down stabilisation window."""

    recommendations: Samples = ()

    def state_dict(self) -> dict[str, Any]:
        return {
            "kind": _KIND,
            "version": STATE_VERSION,
            "recommendations": samples_to_list(self.recommendations),
        }

    @classmethod
    def from_state_dict(cls, raw: dict[str, Any]) -> Self:
        check_version(raw, _KIND)
        return cls(recommendations=samples_from_list(raw["recommendations"]))


def _correction(snapshot: MetricsSnapshot, config: SloConfig) -> float:
    observed = snapshot.latency_p99_s
    if observed is None or observed <= config.slo_p99_s:
        return 1.0
    # While replicas are still starting the excess latency is expected, not a model error.
    if snapshot.starting_replicas > 0 or snapshot.ready_replicas == 0:
        return 1.0
    predicted = predict_latency_quantile(
        snapshot.rows_per_s,
        snapshot.ready_replicas,
        snapshot.service_profile,
        config.quantile,
        snapshot.arrival_cv,
        snapshot.batch_wait_s,
    ).latency_s
    if not math.isfinite(predicted) or predicted <= 0:
        return 1.0  # the model already calls this fleet overloaded
    return min(max(observed / predicted, 1.0), config.max_correction)


def recommend(snapshot: MetricsSnapshot, config: SloConfig) -> int:
    """The instantaneous recommendation, before stabilisation."""
    profile = snapshot.service_profile
    # A surge shows in the recent rate seconds before it moves the window's average.
    observed = max(snapshot.rows_per_s, snapshot.recent_rows_per_s)
    rate = observed * (1.0 + config.rate_headroom)
    rate += snapshot.queue_depth / config.backlog_drain_s
    if rate <= 0:
        return 1 if snapshot.has_demand else 0

    def for_target(target_s: float) -> int:
        return min_replicas_for_latency(
            rate,
            profile,
            target_s,
            config.quantile,
            snapshot.arrival_cv,
            snapshot.batch_wait_s,
            config.max_replicas_search,
        )

    base = for_target(config.slo_p99_s)
    correction = _correction(snapshot, config)
    by_latency = base
    if correction > 1.0:
        by_latency = min(for_target(config.slo_p99_s / correction), math.ceil(base * correction))
    by_utilization = min_replicas_for_utilization(rate, profile, config.utilization_ceiling)
    return max(by_latency, by_utilization, 1)


def decide(
    snapshot: MetricsSnapshot, state: SloState, config: SloConfig, now: float
) -> tuple[int, SloState]:
    """Scale up at once to the recommendation; scale down to the window's maximum."""
    rec = recommend(snapshot, config)
    keep = max(config.scale_down_stabilization_s, 1e-9)
    history = push(state.recommendations, now, rec, keep)
    desired = max(rec, int(window_max(history, now, config.scale_down_stabilization_s)))
    return desired, SloState(history)
