"""The typed metrics snapshot that every autoscaling policy reads.

A snapshot describes one deployment at one instant ``now`` as a live server (or the simulator)
sees it. Two kinds of fields:

* **window aggregates** over the last ``window_s`` seconds: arrival rate (requests and rows per
  second, plus the request rate over a short recent window), the inter-arrival coefficient
  of variation, P50/P99 latency of the requests that
  completed in the window, and the mean per-replica busy ratio;
* **gauges** at ``now``: queue depth, ongoing requests (queued + in service), and the
  ready / starting / draining replica counts.

It also carries the deployment's measured :class:`ServiceProfile` (service time per batch
size) and its batching limits, so a model-based policy can predict latency for any replica
count. Example::

    profile = ServiceProfile(fixed_s=0.020, per_row_s=0.002, max_batch_size=16)
    snap = MetricsSnapshot(window_s=10.0, arrival_rate_rps=200.0, ready_replicas=2,
                           service_profile=profile)
    snap.current_replicas  # 2: ready + starting, the count the controller last asked for
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

__all__ = ["MetricsSnapshot", "ServiceProfile"]


@dataclass(frozen=True)
class ServiceProfile:
    """Service time of one batch as a function of its size, in seconds.

    Either the affine model ``fixed_s + per_row_s * batch`` or a measured ``table`` of
    ``(batch_size, seconds)`` points, interpolated linearly (and extrapolated from the last
    two points). Build a table profile with :meth:`from_table`; :meth:`fit` turns a table
    into the affine model by least squares.
    """

    fixed_s: float = 0.020
    per_row_s: float = 0.002
    max_batch_size: int = 16
    table: tuple[tuple[int, float], ...] = ()

    def __post_init__(self) -> None:
        if self.max_batch_size < 1:
            raise ValueError(f"max_batch_size must be >= 1, got {self.max_batch_size}")
        if self.fixed_s < 0 or self.per_row_s < 0:
            raise ValueError("fixed_s and per_row_s must be >= 0")
        if not self.table and self.fixed_s + self.per_row_s <= 0:
            raise ValueError("a batch of one must take some time: set fixed_s or per_row_s > 0")
        sizes = [b for b, _ in self.table]
        if sizes != sorted(set(sizes)):
            raise ValueError("table batch sizes must be strictly increasing")
        if any(b < 1 or s <= 0 for b, s in self.table):
            raise ValueError("table entries must have batch >= 1 and seconds > 0")

    @classmethod
    def from_table(
        cls, table: Mapping[int, float], max_batch_size: int | None = None
    ) -> ServiceProfile:
        """A profile from measured ``{batch_size: seconds}``; max batch defaults to the largest."""
        if not table:
            raise ValueError("a service-time table needs at least one point")
        points = tuple(sorted((int(b), float(s)) for b, s in table.items()))
        return cls(
            fixed_s=0.0,
            per_row_s=0.0,
            max_batch_size=max_batch_size or points[-1][0],
            table=points,
        )

    @classmethod
    def fit(cls, table: Mapping[int, float], max_batch_size: int | None = None) -> ServiceProfile:
        """Least-squares affine fit ``a + b*batch`` of a measured table (a, b clipped at 0)."""
        if not table:
            raise ValueError("a service-time table needs at least one point")
        xs = [float(b) for b in table]
        ys = [float(s) for s in table.values()]
        n = len(xs)
        mx, my = sum(xs) / n, sum(ys) / n
        sxx = sum((x - mx) ** 2 for x in xs)
        b = 0.0 if sxx == 0 else sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sxx
        b = max(b, 0.0)
        a = max(my - b * mx, 0.0)
        if a + b <= 0:
            a = my
        return cls(fixed_s=a, per_row_s=b, max_batch_size=max_batch_size or int(max(xs)))

    def service_time_s(self, batch_size: int) -> float:
        """Seconds to serve one batch of ``batch_size`` rows."""
        if not self.table:
            return self.fixed_s + self.per_row_s * batch_size
        pts = self.table
        b0, s0 = pts[0]
        if batch_size <= b0:
            return s0
        if len(pts) == 1:
            return s0 * batch_size / b0
        for i in range(1, len(pts)):
            if batch_size <= pts[i][0] or i == len(pts) - 1:
                (b0, s0), (b1, s1) = pts[i - 1], pts[i]
                # Never let extrapolation of a noisy table go below the fastest measured batch.
                floor = min(s for _, s in pts)
                return max(s0 + (s1 - s0) * (batch_size - b0) / (b1 - b0), floor)
        raise AssertionError("unreachable")  # pragma: no cover

    def capacity_rps(self, batch_size: int | None = None) -> float:
        """Rows per second one always-busy replica serves at ``batch_size`` (default: max)."""
        k = self.max_batch_size if batch_size is None else batch_size
        return k / self.service_time_s(k)

    def to_dict(self) -> dict[str, object]:
        return {
            "fixed_s": self.fixed_s,
            "per_row_s": self.per_row_s,
            "max_batch_size": self.max_batch_size,
            "table": [list(p) for p in self.table],
        }


@dataclass(frozen=True)
class MetricsSnapshot:
    """What a policy knows about one deployment at ``now``. All times in seconds.

    Latencies are ``None`` when no request completed in the window. ``busy_ratio`` is the
    mean over serving replicas of the fraction of the window each spent running a batch
    (time in ``predict`` over wall time); ``busy_replicas`` the work itself, busy
    replica-seconds over the window's length (``busy_ratio`` times the mean serving count,
    whatever the count did in the window). ``gpu_utilization`` and ``gpu_memory_fraction``
    (0-1, NVML, the devices the replicas run on) are ``None`` where there is no GPU signal.
    ``cold_start_s`` is the last measured time from asking for a replica to its serving
    (``None`` until one has started).
    """

    window_s: float
    arrival_rate_rps: float
    ready_replicas: int
    service_profile: ServiceProfile = field(default_factory=ServiceProfile)
    deployment: str = "default"
    arrival_rows_per_s: float | None = None
    recent_arrival_rate_rps: float | None = None
    arrival_cv: float = 1.0
    latency_p50_s: float | None = None
    latency_p99_s: float | None = None
    completed: int = 0
    busy_ratio: float = 0.0
    queue_depth: int = 0
    ongoing_requests: int = 0
    starting_replicas: int = 0
    draining_replicas: int = 0
    batch_wait_s: float = 0.0
    busy_replicas: float | None = None
    gpu_utilization: float | None = None
    gpu_memory_fraction: float | None = None
    cold_start_s: float | None = None

    def __post_init__(self) -> None:
        if self.window_s <= 0:
            raise ValueError(f"window_s must be > 0, got {self.window_s}")
        if self.recent_arrival_rate_rps is not None and self.recent_arrival_rate_rps < 0:
            raise ValueError("recent_arrival_rate_rps must be >= 0")
        for name in ("arrival_rate_rps", "busy_ratio", "arrival_cv", "batch_wait_s"):
            value = getattr(self, name)
            if value < 0 or math.isnan(value):
                raise ValueError(f"{name} must be >= 0, got {value}")
        for name in ("busy_replicas", "gpu_utilization", "gpu_memory_fraction",
                     "cold_start_s"):
            value = getattr(self, name)
            if value is not None and not value >= 0:
                raise ValueError(f"{name} must be >= 0 or None, got {value}")
        for name in (
            "ready_replicas",
            "starting_replicas",
            "draining_replicas",
            "queue_depth",
            "ongoing_requests",
            "completed",
        ):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")

    @property
    def current_replicas(self) -> int:
        """Replicas the controller is paying for and counting on: ready + starting."""
        return self.ready_replicas + self.starting_replicas

    @property
    def rows_per_s(self) -> float:
        """Arrival rate in rows (one row per request when rows are not reported)."""
        if self.arrival_rows_per_s is None:
            return self.arrival_rate_rps
        return self.arrival_rows_per_s

    @property
    def recent_rows_per_s(self) -> float:
        """Rows per second over the short recent window (the window rate when not reported).

        ``recent_arrival_rate_rps`` is the request rate over the last second or two: it sees
        a surge before the full window's average does.
        """
        if self.recent_arrival_rate_rps is None or self.arrival_rate_rps <= 0:
            return (
                self.rows_per_s
                if self.recent_arrival_rate_rps is None
                else (self.recent_arrival_rate_rps)
            )
        return self.recent_arrival_rate_rps * self.rows_per_s / self.arrival_rate_rps

    @property
    def has_demand(self) -> bool:
        """Whether anything arrived or is waiting: the signal that forbids sitting at zero."""
        return self.arrival_rate_rps > 0 or self.queue_depth > 0 or self.ongoing_requests > 0
