"""Ours: the fewest replicas whose *predicted* P99 meets the objective at the *forecast* rate.

Each decision:

1. **forecast the rate** a replica started now will face when it is ready: the window's
   arrival rate (rows/s) extrapolated along its recent trend (least squares over
   ``trend_window_s`` of past window rates, kept in the state) by half a window (the window's
   lag) plus ``cold_start_s``; only a rising trend is extrapolated, a falling one never
   removes capacity early. A surge shows in the short recent rate before it moves the
   window's average, so the plan is at least that;
2. **add margins that come from the data, not a fixed fraction**: ``rate_confidence_z``
   standard errors of the rate estimate (``sqrt(rate * cv^2 / window)``), and a burst
   headroom of ``burst_headroom`` per unit of inter-arrival CV above 1 (over-dispersed
   arrivals are clustered: their rate jumps without warning, Poisson traffic's does not),
   plus the optional fixed ``rate_headroom``, plus the rate that drains the current queue
   within ``backlog_drain_s``;
3. **size by the queueing model**: the fewest replicas whose predicted latency quantile
   (batching M/G/c model of :mod:`tailguard.autoscale.queueing`, fed the measured
   service-time profile and the observed inter-arrival CV) is within
   ``slo_p99_s * (1 - latency_margin)``; the model credits the larger batches that load
   induces, so a loaded replica counts for its batched capacity;
4. **correct the model by what was observed**: when the measured P99 exceeds the objective
   while the fleet is settled (no replica starting), the ratio ``observed / predicted`` for
   the current fleet, bounded to ``[1, max_correction]``, tightens the latency target (and
   the count is capped at ``max_correction`` times the uncorrected one);
5. a second lower bound keeps each replica busy at most ``utilization_ceiling`` of the time
   at its largest batch (GPU-style headroom) even when the latency objective is loose;
6. **hold headroom for a step nothing foretold**: a rate step shows in the recent rate at
   once, but the replicas it triggers serve only ``cold_start_s`` later, and until then the
   fleet already serving takes the whole step (the README's 8x spike on one replica queued
   for seconds, whatever the policy then did). So the count is the model's plus
   ``spare_replicas``, and never below ``floor_replicas`` while there is demand: one
   replica's worth of spare capacity for a ramp, and at low load (where a step is the
   largest multiple of the rate) a fleet that absorbs several times the rate; scale to zero
   is unaffected. ``benchmarks/autoscale_sim.py`` measures what this costs;
7. **scale up at once; scale down** to the highest recommendation of a stabilisation
   window: ``smooth_scale_down_stabilization_s`` once the rate has followed its trend within
   ``smooth_dispersion_max`` times Poisson noise for a whole ``scale_down_stabilization_s``
   (a slow, predictable ramp), otherwise ``scale_down_stabilization_s`` (bursty traffic, a
   step the trend line cannot explain, or too little history to tell);
7. **never scale down into saturation**: a smaller count is raised back to the fewest
   replicas that carry the work the serving ones are doing now (busy fraction, and GPU
   utilisation when there is a GPU signal, times the serving count) at no more than
   ``scale_down_busy_max`` of their time (:func:`busy_floor`). The queueing model sizes from
   the *rate*; this guard checks the *measured* load, which a wrong service profile, a
   slower input mix or a noisy neighbour moves without moving the rate. It only keeps
   replicas, never adds them: scaling up stays the latency objective's job.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Self

from tailguard.autoscale.policies._history import (
    Samples,
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

__all__ = ["RateForecast", "SloConfig", "SloState", "busy_floor", "decide", "forecast_rate",
           "recommend"]

_KIND = "slo"
# Version 2 added the window-rate history (trend, dispersion) and when it was last unpredictable.
SLO_STATE_VERSION = 2
# A trend needs this many samples before it is trusted.
_MIN_TREND_SAMPLES = 5


@dataclass(frozen=True)
class SloConfig:
    """Objective and safety margins of the ``slo`` policy; durations in seconds.

    ``cold_start_s`` is how long a new replica takes to become ready: the rising trend is
    extrapolated that far ahead. ``burst_headroom`` is the extra rate planned per unit of
    inter-arrival CV above 1 (CV 3 with 0.5 plans for twice the rate).
    """

    slo_p99_s: float = 0.2
    quantile: float = 0.99
    rate_headroom: float = 0.0
    utilization_ceiling: float = 0.9
    max_correction: float = 3.0
    backlog_drain_s: float = 5.0
    scale_down_stabilization_s: float = 60.0
    max_replicas_search: int = 10_000
    latency_margin: float = 0.1
    rate_confidence_z: float = 2.0
    burst_headroom: float = 0.5
    cold_start_s: float = 10.0
    trend_window_s: float = 60.0
    smooth_scale_down_stabilization_s: float = 20.0
    smooth_dispersion_max: float = 4.0
    spare_replicas: int = 1
    floor_replicas: int = 3
    scale_down_busy_max: float = 0.8

    def __post_init__(self) -> None:
        if self.slo_p99_s <= 0:
            raise ValueError("slo_p99_s must be > 0")
        if not 0 < self.quantile < 1:
            raise ValueError("quantile must be in (0, 1)")
        if self.rate_headroom < 0 or self.burst_headroom < 0 or self.rate_confidence_z < 0:
            raise ValueError("rate_headroom, burst_headroom and rate_confidence_z must be >= 0")
        if not 0 < self.utilization_ceiling <= 1:
            raise ValueError("utilization_ceiling must be in (0, 1]")
        if not 0 <= self.latency_margin < 1:
            raise ValueError("latency_margin must be in [0, 1)")
        if self.max_correction < 1:
            raise ValueError("max_correction must be >= 1")
        if self.backlog_drain_s <= 0 or self.scale_down_stabilization_s < 0:
            raise ValueError("backlog_drain_s > 0 and scale_down_stabilization_s >= 0")
        if self.smooth_scale_down_stabilization_s < 0 or self.cold_start_s < 0:
            raise ValueError("smooth_scale_down_stabilization_s and cold_start_s must be >= 0")
        if self.trend_window_s <= 0 or self.smooth_dispersion_max <= 0:
            raise ValueError("trend_window_s and smooth_dispersion_max must be > 0")
        if self.spare_replicas < 0 or self.floor_replicas < 1:
            raise ValueError("spare_replicas must be >= 0 and floor_replicas >= 1")
        if not 0 < self.scale_down_busy_max <= 1:
            raise ValueError("scale_down_busy_max must be in (0, 1]")


@dataclass(frozen=True)
class SloState:
    """Recent recommendations and window rates, both ``(t, value)``, oldest first, and when
    the rate was last unpredictable (``None``: not yet seen)."""

    recommendations: Samples = ()
    rates: Samples = ()
    unpredictable_s: float | None = None

    def state_dict(self) -> dict[str, Any]:
        return {
            "kind": _KIND,
            "version": SLO_STATE_VERSION,
            "recommendations": samples_to_list(self.recommendations),
            "rates": samples_to_list(self.rates),
            "unpredictable_s": self.unpredictable_s,
        }

    @classmethod
    def from_state_dict(cls, raw: dict[str, Any]) -> Self:
        if raw.get("kind") != _KIND:
            raise ValueError(
                f"state is for policy {raw.get('kind')!r}, not {_KIND!r}: start from a fresh state"
            )
        if raw.get("version") != SLO_STATE_VERSION:
            raise ValueError(
                f"{_KIND} state version {raw.get('version')!r} is not {SLO_STATE_VERSION}: "
                "start from a fresh state"
            )
        return cls(
            recommendations=samples_from_list(raw["recommendations"]),
            rates=samples_from_list(raw["rates"]),
            unpredictable_s=raw["unpredictable_s"],
        )


@dataclass(frozen=True)
class RateForecast:
    """The rate (rows/s) to plan for, and the trend behind it.

    ``dispersion`` is the variance of past window rates around their trend line over the
    variance Poisson arrivals would give (about 1 for a smooth Poisson ramp; ``inf`` when
    there is too little history to tell); ``smooth`` says it is within the config's limit.
    """

    planned_rows_per_s: float
    expected_rows_per_s: float
    slope_rows_per_s2: float
    dispersion: float
    smooth: bool


def _fit(rates: Samples, now: float, window_s: float) -> tuple[float, float, int]:
    """Least-squares slope and residual variance of the samples in ``(now - window_s, now]``."""
    pts = [(t, v) for t, v in rates if now - window_s < t <= now]
    n = len(pts)
    if n < _MIN_TREND_SAMPLES:
        return 0.0, math.inf, n
    mt = sum(t for t, _ in pts) / n
    mv = sum(v for _, v in pts) / n
    stt = sum((t - mt) ** 2 for t, _ in pts)
    if stt <= 0:
        return 0.0, math.inf, n
    slope = sum((t - mt) * (v - mv) for t, v in pts) / stt
    resid = sum((v - mv - slope * (t - mt)) ** 2 for t, v in pts) / (n - 2)
    return slope, resid, n


def forecast_rate(
    snapshot: MetricsSnapshot, rates: Samples, config: SloConfig, now: float
) -> RateForecast:
    """The rate to plan for at ``now`` given the past window rates ``rates`` (this one last)."""
    rate = snapshot.rows_per_s
    slope, resid_var, _ = _fit(rates, now, config.trend_window_s)
    rows_per_request = rate / snapshot.arrival_rate_rps if snapshot.arrival_rate_rps > 0 else 1.0
    poisson_var = max(rate, 1e-9) * rows_per_request / snapshot.window_s
    dispersion = resid_var / poisson_var if math.isfinite(resid_var) else math.inf
    # The window's rate is its centre's: half a window old. A replica asked for now serves
    # cold_start_s from now. Only a rising trend moves the plan (falling never pre-removes).
    ahead = snapshot.window_s / 2.0 + config.cold_start_s
    expected = rate + max(slope, 0.0) * ahead
    cv = max(snapshot.arrival_cv, 1.0)
    # Clustered (over-dispersed) arrivals: hold spare capacity for the clusters' rate.
    bursty = expected * (1.0 + config.rate_headroom + config.burst_headroom * (cv - 1.0))
    surge = snapshot.recent_rows_per_s * (1.0 + config.rate_headroom)
    stderr = math.sqrt(max(expected, 0.0) * rows_per_request * cv * cv / snapshot.window_s)
    planned = max(bursty, surge) + config.rate_confidence_z * stderr
    planned += snapshot.queue_depth / config.backlog_drain_s
    return RateForecast(
        planned_rows_per_s=planned,
        expected_rows_per_s=expected,
        slope_rows_per_s2=slope,
        dispersion=dispersion,
        smooth=dispersion <= config.smooth_dispersion_max,
    )


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


def _replicas_for(rate: float, snapshot: MetricsSnapshot, config: SloConfig) -> int:
    profile = snapshot.service_profile
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

    target = config.slo_p99_s * (1.0 - config.latency_margin)
    base = for_target(target)
    correction = _correction(snapshot, config)
    by_latency = base
    if correction > 1.0:
        by_latency = min(for_target(target / correction), math.ceil(base * correction))
    by_utilization = min_replicas_for_utilization(rate, profile, config.utilization_ceiling)
    # Headroom for a step nothing foretold: the replicas it triggers take cold_start_s, and
    # until then the fleet serving must absorb it (see the module docstring, step 6).
    return max(max(by_latency, by_utilization, 1) + config.spare_replicas,
               config.floor_replicas)


def recommend(
    snapshot: MetricsSnapshot,
    config: SloConfig,
    state: SloState | None = None,
    now: float | None = None,
) -> int:
    """The instantaneous recommendation, before stabilisation.

    Without ``state`` (no rate history) there is no trend: the plan is the observed rate
    with its margins.
    """
    rates: Samples = ()
    t = 0.0 if now is None else now
    if state is not None and now is not None:
        rates = push(state.rates, now, snapshot.rows_per_s, config.trend_window_s)
    return _replicas_for(
        forecast_rate(snapshot, rates, config, t).planned_rows_per_s, snapshot, config
    )


def decide(
    snapshot: MetricsSnapshot, state: SloState, config: SloConfig, now: float
) -> tuple[int, SloState]:
    """Scale up at once to the recommendation; scale down to the window's maximum."""
    rates = push(state.rates, now, snapshot.rows_per_s, config.trend_window_s)
    fc = forecast_rate(snapshot, rates, config, now)
    rec = _replicas_for(fc.planned_rows_per_s, snapshot, config)
    unpredictable = state.unpredictable_s if fc.smooth else now
    # The short window only once the rate has been predictable for a whole long window:
    # a step or a burst is remembered for as long as the long window would have held it.
    calm = unpredictable is None or now - unpredictable >= config.scale_down_stabilization_s
    window = config.scale_down_stabilization_s
    if calm:  # never longer than the long window: 0 there still means no stabilisation
        window = min(window, config.smooth_scale_down_stabilization_s)
    keep = max(config.scale_down_stabilization_s, 1e-9)
    history = push(state.recommendations, now, rec, keep)
    desired = max(rec, int(window_max(history, now, window)))
    if desired < snapshot.current_replicas:
        desired = min(max(desired, busy_floor(snapshot, config)), snapshot.current_replicas)
    return desired, SloState(history, rates, unpredictable)


def busy_floor(snapshot: MetricsSnapshot, config: SloConfig) -> int:
    """Fewest replicas that would do the serving replicas' measured work at no more than
    ``scale_down_busy_max`` of their time (the busiest of busy fraction and GPU use)."""
    serving = snapshot.ready_replicas + snapshot.draining_replicas
    work = (snapshot.busy_ratio * serving if snapshot.busy_replicas is None
            else snapshot.busy_replicas)
    if snapshot.gpu_utilization is not None:  # measured on the replicas ready now
        work = max(work, snapshot.gpu_utilization * snapshot.ready_replicas)
    return math.ceil(work / config.scale_down_busy_max - 1e-9)
