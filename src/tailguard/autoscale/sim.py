"""Discrete-event simulator of one deployment under an autoscaling policy.

What it models, in seconds throughout:

* **arrivals**: a pre-generated, sorted numpy array (see :mod:`tailguard.autoscale.traces`),
  one row per request, served first come first served from one shared queue;
* **batching**: a free replica takes up to ``max_batch_size`` queued requests; when fewer are
  queued it waits until the batch fills or the oldest request has waited ``max_wait_ms``
  (Triton's dynamic batcher); a batch of ``k`` takes ``service_time_s(k)`` of the profile;
* **replicas**: start after ``cold_start_s`` (paid for while starting); removed idle ones stop
  at once, busy ones drain their batch first (paid for until they stop);
* **the controller**: every ``tick_s`` it builds a :class:`MetricsSnapshot` over the last
  ``metrics_window_s`` and calls the very same :class:`Autoscaler` the live server uses.

Requests are never Python objects: the queue is a cursor into the arrival array, batches are
rows of preallocated arrays, latencies are computed with numpy, and the event loop touches a
heap only once per batch. Run ``simulate(arrivals, make_autoscaler("slo"), SimConfig(...))``.
"""

from __future__ import annotations

import heapq
import math
import time
from bisect import bisect_right
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tailguard.autoscale.policies.bounds import Autoscaler
from tailguard.autoscale.snapshot import MetricsSnapshot, ServiceProfile
from tailguard.observe.percentiles import percentiles

__all__ = ["SimConfig", "SimResult", "Timeline", "simulate"]


@dataclass(frozen=True)
class SimConfig:
    """One simulated deployment. ``warmup_s`` is left out of every reported figure."""

    duration_s: float
    profile: ServiceProfile = field(default_factory=ServiceProfile)
    max_wait_ms: float = 5.0
    cold_start_s: float = 10.0
    tick_s: float = 1.0
    metrics_window_s: float = 10.0
    recent_window_s: float = 2.0
    slo_p99_ms: float = 200.0
    initial_replicas: int = 1
    warmup_s: float = 0.0
    drain_limit_s: float = 600.0
    deployment: str = "sim"

    def __post_init__(self) -> None:
        if self.duration_s <= 0:
            raise ValueError("duration_s must be > 0")
        if self.tick_s <= 0 or self.metrics_window_s <= 0 or self.recent_window_s <= 0:
            raise ValueError("tick_s, metrics_window_s and recent_window_s must be > 0")
        if self.max_wait_ms < 0 or self.cold_start_s < 0 or self.drain_limit_s < 0:
            raise ValueError("max_wait_ms, cold_start_s and drain_limit_s must be >= 0")
        if self.slo_p99_ms <= 0:
            raise ValueError("slo_p99_ms must be > 0")
        if self.initial_replicas < 0:
            raise ValueError("initial_replicas must be >= 0")
        if not 0 <= self.warmup_s < self.duration_s:
            raise ValueError("warmup_s must be in [0, duration_s)")


@dataclass(frozen=True)
class Timeline:
    """Per controller tick: time, observed arrival rate, target and ready replicas, P99."""

    t_s: np.ndarray
    arrival_rps: np.ndarray
    target: np.ndarray
    ready: np.ndarray
    p99_s: np.ndarray
    queue_depth: np.ndarray


@dataclass(frozen=True)
class SimResult:
    """Outcome of one run. Latency figures cover requests arriving after warm-up."""

    policy: str
    n_requests: int
    slo_s: float
    slo_attainment: float
    p50_s: float
    p99_s: float
    p999_s: float
    replica_seconds: float
    mean_replicas: float
    max_replicas: int
    scaling_events: int
    unserved: int
    wall_s: float
    timeline: Timeline
    latencies_s: np.ndarray

    def to_dict(self) -> dict[str, Any]:
        return {
            "policy": self.policy,
            "n_requests": self.n_requests,
            "slo_ms": self.slo_s * 1e3,
            "slo_attainment": self.slo_attainment,
            "p50_ms": self.p50_s * 1e3,
            "p99_ms": self.p99_s * 1e3,
            "p999_ms": self.p999_s * 1e3,
            "replica_seconds": self.replica_seconds,
            "mean_replicas": self.mean_replicas,
            "max_replicas": self.max_replicas,
            "scaling_events": self.scaling_events,
            "unserved": self.unserved,
            "wall_s": self.wall_s,
        }


class _Batches:
    """Preallocated batch records: first request index, size, dispatch and finish times."""

    def __init__(self, capacity: int) -> None:
        self.start = np.zeros(capacity, dtype=np.int64)
        self.count = np.zeros(capacity, dtype=np.int64)
        self.dispatch = np.zeros(capacity, dtype=np.float64)
        self.finish = np.zeros(capacity, dtype=np.float64)
        self.n = 0

    def latencies(
        self, arrivals: np.ndarray, lo: int, hi: int, t_lo: float, t_hi: float
    ) -> np.ndarray:
        """Latencies of the requests of batches ``lo..hi`` that finished in ``(t_lo, t_hi]``."""
        if hi <= lo:
            return np.empty(0)
        fin = self.finish[lo:hi]
        counts = self.count[lo:hi]
        r0 = int(self.start[lo])
        r1 = int(self.start[hi - 1] + counts[-1])
        per_req = np.repeat(fin, counts)
        lat = per_req - arrivals[r0:r1]
        mask = (per_req > t_lo) & (per_req <= t_hi)
        out: np.ndarray = lat[mask]
        return out


def _snapshot(
    now: float,
    cfg: SimConfig,
    arrivals: np.ndarray,
    batches: _Batches,
    busy_ratio: float,
    head: int,
    in_service: int,
    ready: int,
    starting: int,
    draining: int,
    busy_replicas: float | None = None,
) -> MetricsSnapshot:
    w = cfg.metrics_window_s
    t_lo = max(0.0, now - w)
    eff_w = max(now - t_lo, 1e-9)
    a_lo, a_hi = np.searchsorted(arrivals, (t_lo, now), side="right")
    n_arr = int(a_hi - a_lo)
    r_lo = max(0.0, now - cfg.recent_window_s)
    recent = int(a_hi - np.searchsorted(arrivals, r_lo, side="right")) / max(now - r_lo, 1e-9)
    cv = 1.0
    if n_arr >= 3:
        gaps = np.diff(arrivals[a_lo:a_hi])
        mean = float(gaps.mean())
        cv = float(gaps.std()) / mean if mean > 0 else 1.0
    svc_max = cfg.profile.service_time_s(cfg.profile.max_batch_size)
    b_lo = int(np.searchsorted(batches.dispatch[: batches.n], t_lo - svc_max, side="right"))
    lat = batches.latencies(arrivals, b_lo, batches.n, t_lo, now)
    p50, p99 = percentiles(lat, (50, 99))
    queue = int(a_hi) - head
    return MetricsSnapshot(
        window_s=eff_w,
        arrival_rate_rps=n_arr / eff_w,
        ready_replicas=ready,
        service_profile=cfg.profile,
        deployment=cfg.deployment,
        recent_arrival_rate_rps=recent,
        arrival_cv=cv,
        latency_p50_s=p50,
        latency_p99_s=p99,
        completed=int(lat.size),
        busy_ratio=busy_ratio,
        queue_depth=max(queue, 0),
        ongoing_requests=max(queue, 0) + in_service,
        starting_replicas=starting,
        draining_replicas=draining,
        batch_wait_s=cfg.max_wait_ms / 1e3,
        cold_start_s=cfg.cold_start_s,
        busy_replicas=busy_replicas,
    )


def simulate(arrivals: np.ndarray, autoscaler: Autoscaler[Any, Any], cfg: SimConfig) -> SimResult:
    """Run the deployment over ``arrivals`` (seconds, sorted) under ``autoscaler``."""
    wall0 = time.perf_counter()
    arr = np.ascontiguousarray(arrivals, dtype=np.float64)
    if arr.size > 1 and bool(np.any(np.diff(arr) < 0)):
        raise ValueError("arrivals must be sorted")
    arr = arr[arr < cfg.duration_s]
    n = int(arr.size)
    arr_list: list[float] = arr.tolist()
    kmax = cfg.profile.max_batch_size
    svc = [0.0] + [cfg.profile.service_time_s(k) for k in range(1, kmax + 1)]
    max_wait = cfg.max_wait_ms / 1e3
    dur, warm = cfg.duration_s, cfg.warmup_s
    hard_end = dur + cfg.drain_limit_s
    inf = math.inf

    batches = _Batches(max(n, 1))
    b_start, b_count, b_disp, b_fin = batches.start, batches.count, batches.dispatch, batches.finish
    nb = 0
    head = 0
    n_idle = cfg.initial_replicas
    busy: list[tuple[float, int]] = []  # (finish time, batch size) per busy replica
    starting: deque[float] = deque()  # ready times, oldest first
    pending_drain = 0
    in_service = 0
    t_last = 0.0
    cum_rep = cum_busy = cum_serving = 0.0
    usage: deque[tuple[float, float, float]] = deque([(0.0, 0.0, 0.0)])
    state = autoscaler.initial_state()
    next_tick = cfg.tick_s
    scaling_events = 0
    max_rep = n_idle
    tl: list[tuple[float, float, int, int, float, int]] = []

    while True:
        if n_idle and head < n:
            td = arr_list[head]
            if max_wait > 0:
                j = head + kmax - 1
                td = min(td + max_wait, arr_list[j] if j < n else inf)
            td = max(td, t_last)
        else:
            td = inf
        tf = busy[0][0] if busy else inf
        ts = starting[0] if starting else inf
        if head >= n and not busy and next_tick > dur:
            break
        t = min(td, tf, ts, next_tick)
        if t > hard_end:
            break
        if t > t_last:
            dt = t - t_last
            n_busy = len(busy)
            cum_busy += n_busy * dt
            cum_serving += (n_idle + n_busy) * dt
            lo, hi = max(t_last, warm), min(t, dur)
            if hi > lo:
                cum_rep += (n_idle + n_busy + len(starting)) * (hi - lo)
            t_last = t
        if t == tf:
            _, k = heapq.heappop(busy)
            in_service -= k
            if pending_drain:
                pending_drain -= 1
            else:
                n_idle += 1
        elif t == ts:
            starting.popleft()
            n_idle += 1
        elif t == td:
            hi_idx = head + kmax if head + kmax < n else n
            k = bisect_right(arr_list, t, head, hi_idx) - head
            finish = t + svc[k]
            heapq.heappush(busy, (finish, k))
            n_idle -= 1
            in_service += k
            b_start[nb] = head
            b_count[nb] = k
            b_disp[nb] = t
            b_fin[nb] = finish
            nb += 1
            head += k
        else:
            batches.n = nb
            usage.append((t, cum_busy, cum_serving))
            while len(usage) > 1 and usage[1][0] <= t - cfg.metrics_window_s:
                usage.popleft()
            _, busy0, serving0 = usage[0]
            serving = cum_serving - serving0
            ratio = min((cum_busy - busy0) / serving, 1.0) if serving > 0 else 0.0
            busy_replicas = (cum_busy - busy0) / max(t - usage[0][0], 1e-9)
            ready = n_idle + len(busy) - pending_drain
            snap = _snapshot(
                t, cfg, arr, batches, ratio, head, in_service, ready, len(starting), pending_drain,
                busy_replicas,
            )
            current = ready + len(starting)
            target, state = autoscaler.decide(snap, state, t)
            if target != current:
                scaling_events += 1
            if target > current:
                add = target - current
                keep = min(pending_drain, add)  # a draining replica can simply stay
                pending_drain -= keep
                starting.extend([t + cfg.cold_start_s] * (add - keep))
            elif target < current:
                remove = current - target
                while remove and starting:
                    starting.pop()  # cancel the newest start first
                    remove -= 1
                stop_idle = min(remove, n_idle)
                n_idle -= stop_idle
                pending_drain += remove - stop_idle
            max_rep = max(max_rep, n_idle + len(busy) + len(starting))
            tl.append(
                (
                    t,
                    snap.arrival_rate_rps,
                    target,
                    ready,
                    snap.latency_p99_s or math.nan,
                    snap.queue_depth,
                )
            )
            next_tick += cfg.tick_s
    if t_last < dur:
        lo = max(t_last, warm)
        cum_rep += (n_idle + len(busy) + len(starting)) * (dur - lo)

    finish_req = np.full(n, inf)
    finish_req[:head] = np.repeat(b_fin[:nb], b_count[:nb])
    latencies = finish_req - arr
    counted = latencies[arr >= warm]
    slo_s = cfg.slo_p99_ms / 1e3
    attainment = float(np.count_nonzero(counted <= slo_s)) / counted.size if counted.size else 1.0
    # No measured request: 0.0 for each percentile, not None (the result's fields are floats).
    p50, p99, p999 = (0.0 if x is None else x for x in percentiles(counted, (50, 99, 99.9)))
    span = dur - warm
    cols = list(zip(*tl, strict=True)) if tl else [()] * 6
    timeline = Timeline(
        t_s=np.asarray(cols[0], dtype=np.float64),
        arrival_rps=np.asarray(cols[1], dtype=np.float64),
        target=np.asarray(cols[2], dtype=np.int64),
        ready=np.asarray(cols[3], dtype=np.int64),
        p99_s=np.asarray(cols[4], dtype=np.float64),
        queue_depth=np.asarray(cols[5], dtype=np.int64),
    )
    return SimResult(
        policy=autoscaler.name,
        n_requests=int(counted.size),
        slo_s=slo_s,
        slo_attainment=attainment,
        p50_s=p50,
        p99_s=p99,
        p999_s=p999,
        replica_seconds=cum_rep,
        mean_replicas=cum_rep / span,
        max_replicas=max_rep,
        scaling_events=scaling_events,
        unserved=n - head,
        wall_s=time.perf_counter() - wall0,
        timeline=timeline,
        latencies_s=latencies,
    )
