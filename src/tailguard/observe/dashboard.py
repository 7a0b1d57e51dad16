"""What the live page (``GET /dashboard``) draws: rates and quantiles over a short window.

The page polls ``GET /v1/dashboard/data`` about once a second. Each poll reads the serving
registry into a :class:`Snapshot` (counters and histogram buckets, cumulative) — at most one
every ``min_interval_s`` however many pages are open — and keeps a few in a ring. Rates are the
counter deltas between the newest snapshot and one about ``window_s`` older; quantiles are
``histogram_quantile`` over the bucket deltas of the same window, so the page shows what the
Grafana panels' ``rate(...[window])`` would. Nothing here runs on the request path: the
snapshot is taken by the poll, and reading a registry is what a Prometheus scrape does anyway.

Usage::

    ring = SnapshotRing(window_s=5.0)
    new = ring.observe(take_snapshot(registry, now))   # once per poll
    data = panels(ring.oldest, new, gauges, objectives, tenant=None, deployments=None)

The scoping is that of ``/metrics``: ``tenant``/``deployments`` of ``None`` is the admin's view
(everything); a tenant gets only its own tenant rows and only the deployments it may use.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from importlib import resources

from prometheus_client import CollectorRegistry

from tailguard.observe.metrics import outcome

# A histogram's cumulative buckets: (upper edge, count), ascending, ending at +Inf.
Buckets = tuple[tuple[float, float], ...]
QUANTILES = {"p50_s": 0.5, "p99_s": 0.99, "p999_s": 0.999}


@dataclass(frozen=True)
class Snapshot:
    """Cumulative counts read from the registry at time ``t`` (seconds, monotonic)."""

    t: float
    # (deployment, outcome) -> requests; outcome as in the latency histogram's label
    requests: Mapping[tuple[str, ...], float] = field(default_factory=dict)
    # (tenant, deployment, outcome) -> requests
    tenants: Mapping[tuple[str, ...], float] = field(default_factory=dict)
    # (histogram, deployment) -> buckets; the latency histogram counts only ``ok`` requests
    histograms: Mapping[tuple[str, str], Buckets] = field(default_factory=dict)
    # (histogram, deployment) -> (sum, count)
    sums: Mapping[tuple[str, str], tuple[float, float]] = field(default_factory=dict)


@dataclass(frozen=True)
class Gauges:
    """A deployment's instantaneous state, read from the deployment itself."""

    deployment: str
    queued_rows: int
    ready: int
    desired: int


_LATENCY = "tailguard_request_duration_seconds"
_SERVICE = "tailguard_replica_service_seconds"
_BATCH = "tailguard_batch_size_rows"
_HISTOGRAMS = (_LATENCY, _SERVICE, _BATCH)


def take_snapshot(registry: CollectorRegistry, t: float) -> Snapshot:
    """Read the serving counters and histograms (summed over protocol) from ``registry``."""
    requests: dict[tuple[str, ...], float] = {}
    tenants: dict[tuple[str, ...], float] = {}
    buckets: dict[tuple[str, str], dict[float, float]] = {}
    sums: dict[tuple[str, str], list[float]] = {}
    for family in registry.collect():
        if family.name == "tailguard_requests":
            for s in family.samples:
                if s.name.endswith("_total"):
                    key = (s.labels["deployment"], outcome(int(s.labels["status"])))
                    requests[key] = requests.get(key, 0.0) + s.value
        elif family.name == "tailguard_tenant_requests":
            # Requests refused at admission never reach this counter, only the rejections
            # one; every 429 is such a refusal, counted there once (with its reason).
            for s in family.samples:
                if s.name.endswith("_total") and s.labels["status"] != "429":
                    tkey = (s.labels["tenant"], s.labels["deployment"],
                            outcome(int(s.labels["status"])))
                    tenants[tkey] = tenants.get(tkey, 0.0) + s.value
        elif family.name == "tailguard_tenant_rejections":
            for s in family.samples:
                if s.name.endswith("_total"):  # "deadline" is answered 504, the rest 429
                    tkey = (s.labels["tenant"], s.labels["deployment"],
                            "error" if s.labels["reason"] == "deadline" else "shed")
                    tenants[tkey] = tenants.get(tkey, 0.0) + s.value
        elif family.name in _HISTOGRAMS:
            for s in family.samples:
                # Latency quantiles are of successes: a fast 429 is not a fast answer.
                if family.name == _LATENCY and s.labels.get("outcome") != "ok":
                    continue
                hkey = (family.name, s.labels["deployment"])
                if s.name.endswith("_bucket"):
                    edges = buckets.setdefault(hkey, {})
                    le = float(s.labels["le"])
                    edges[le] = edges.get(le, 0.0) + s.value
                elif s.name.endswith("_sum") or s.name.endswith("_count"):
                    pair = sums.setdefault(hkey, [0.0, 0.0])
                    pair[0 if s.name.endswith("_sum") else 1] += s.value
    return Snapshot(
        t, requests, tenants,
        {k: tuple(sorted(v.items())) for k, v in buckets.items()},
        {k: (v[0], v[1]) for k, v in sums.items()})


class SnapshotRing:
    """The last few snapshots: enough to span ``window_s`` and no more."""

    def __init__(self, window_s: float = 5.0, min_interval_s: float = 0.5,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if window_s <= 0 or min_interval_s < 0:
            raise ValueError("window_s must be > 0 and min_interval_s >= 0")
        self.window_s = window_s
        self.min_interval_s = min_interval_s
        self.clock = clock  # the snapshots' time base (tests step it)
        self._ring: deque[Snapshot] = deque()

    def due(self, now: float) -> bool:
        """Whether a poll at ``now`` should take a new snapshot (else it reuses the newest)."""
        return not self._ring or now - self._ring[-1].t >= self.min_interval_s

    def observe(self, snapshot: Snapshot) -> Snapshot:
        self._ring.append(snapshot)
        # Keep one snapshot at or beyond the window, so the rate spans the whole window.
        while len(self._ring) > 2 and snapshot.t - self._ring[1].t >= self.window_s:
            self._ring.popleft()
        return snapshot

    @property
    def newest(self) -> Snapshot | None:
        return self._ring[-1] if self._ring else None

    @property
    def oldest(self) -> Snapshot | None:
        return self._ring[0] if len(self._ring) > 1 else None


def histogram_quantile(q: float, old: Buckets, new: Buckets) -> float | None:
    """PromQL's ``histogram_quantile`` over the bucket increase from ``old`` to ``new``:
    linear within the bucket holding rank ``q * total``; the last finite edge if that bucket
    is +Inf; ``None`` when nothing was observed in between."""
    before = dict(old)
    deltas = [(le, count - before.get(le, 0.0)) for le, count in new]
    if not deltas or deltas[-1][1] <= 0:
        return None
    rank = q * deltas[-1][1]
    lower, below = 0.0, 0.0
    for le, cumulative in deltas:
        if cumulative >= rank:
            if math.isinf(le):
                return lower
            if cumulative == below:
                return le
            return lower + (le - lower) * (rank - below) / (cumulative - below)
        lower, below = le, cumulative
    return lower


def _rate(new: float, old: float, dt: float) -> float:
    return max(0.0, new - old) / dt


def _rates(new: Mapping[tuple[str, ...], float], old: Mapping[tuple[str, ...], float],
           prefix: tuple[str, ...], dt: float | None) -> dict[str, float | None]:
    """``requests_per_s``, ``errors_per_s`` (5xx) and ``shed_per_s`` (429) of one series."""
    if dt is None:
        return {"requests_per_s": None, "errors_per_s": None, "shed_per_s": None}
    by = {o: _rate(new.get((*prefix, o), 0.0), old.get((*prefix, o), 0.0), dt)
          for o in ("ok", "shed", "client_error", "error")}
    return {"requests_per_s": sum(by.values()), "errors_per_s": by["error"],
            "shed_per_s": by["shed"]}


def panels(old: Snapshot | None, new: Snapshot, gauges: Iterable[Gauges],
           objectives_s: Mapping[str, float | None], tenant: str | None = None,
           deployments: set[str] | None = None) -> dict[str, object]:
    """The JSON the page draws, for one scope. Rates and quantiles are ``None`` until two
    snapshots span a window (the first poll) or, for quantiles, when nothing completed."""
    dt = new.t - old.t if old is not None and new.t > old.t else None
    base = old if old is not None else Snapshot(new.t)
    rows: list[dict[str, object]] = []
    for g in gauges:
        if deployments is not None and g.deployment not in deployments:
            continue
        row: dict[str, object] = {"name": g.deployment, **_rates(
            new.requests, base.requests, (g.deployment,), dt)}
        lat = new.histograms.get((_LATENCY, g.deployment), ())
        lat_old = base.histograms.get((_LATENCY, g.deployment), ())
        for name, q in QUANTILES.items():
            row[name] = histogram_quantile(q, lat_old, lat) if dt else None
        svc = new.histograms.get((_SERVICE, g.deployment), ())
        svc_old = base.histograms.get((_SERVICE, g.deployment), ())
        row["service_p50_s"] = histogram_quantile(0.5, svc_old, svc) if dt else None
        row["service_p99_s"] = histogram_quantile(0.99, svc_old, svc) if dt else None
        rows_sum, batches = new.sums.get((_BATCH, g.deployment), (0.0, 0.0))
        rows_old, batches_old = base.sums.get((_BATCH, g.deployment), (0.0, 0.0))
        row["batch_rows_mean"] = ((rows_sum - rows_old) / (batches - batches_old)
                                  if dt and batches > batches_old else None)
        row.update(queue_rows=g.queued_rows, replicas_ready=g.ready,
                   replicas_desired=g.desired, p99_objective_s=objectives_s.get(g.deployment))
        rows.append(row)
    visible = {str(r["name"]) for r in rows}
    pairs = sorted({(t, d) for t, d, _ in new.tenants
                    if (tenant is None or t == tenant) and d in visible})
    return {
        "window_s": dt,
        "scope": "all" if tenant is None else tenant,
        "deployments": rows,
        "tenants": [{"tenant": t, "deployment": d,
                     **_rates(new.tenants, base.tenants, (t, d), dt)} for t, d in pairs],
    }


# The page's files (vendored uPlot included): an allowlist, so no path reaches the filesystem.
_ASSETS = {"dashboard.html": "text/html; charset=utf-8",
           "dashboard.js": "text/javascript; charset=utf-8",
           "dashboard.css": "text/css; charset=utf-8",
           "uPlot.iife.min.js": "text/javascript; charset=utf-8",
           "uPlot.min.css": "text/css; charset=utf-8"}


def asset(name: str) -> tuple[bytes, str] | None:
    """A file of the page and its media type, or ``None`` if there is no such file."""
    media = _ASSETS.get(name)
    if media is None:
        return None
    return resources.files("tailguard.observe").joinpath("static", name).read_bytes(), media
