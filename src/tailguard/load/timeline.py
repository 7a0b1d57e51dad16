"""A run over time: the per-request :class:`Recording` bucketed per second (or any bucket).

Each bucket ``[t, t + bucket_s)`` (seconds from the start of the run, warm-up included) has:

- ``offered_rps``: requests whose *intended* send time falls in it (what the arrival process
  asked for), and ``sent_rps``: those actually sent in it;
- ``answered_rps``: responses (any HTTP status) that *came back* in it, ``ok_rps`` the 2xx
  among them, and with an SLO ``good_rps`` the 2xx that came back within the SLO;
- ``errors_rps``: failures per kind (``http_429``, ``timeout``, …) by the time they ended
  (requests never sent count at their intended time);
- ``p50_ms``/``p90_ms``/``p99_ms``: nearest-rank latency percentiles
  (:func:`~tailguard.observe.percentiles.grouped_percentiles`) of the 2xx requests
  *intended* in it (NaN where none), so a latency spike lines up with the load that caused
  it;
- per tenant, ``tenant_ok_rps``; and the server's replicas and queue depth when ``/metrics``
  was scraped (their own sample times, same origin).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tailguard.load.report import Recording
from tailguard.load.stats import error_name
from tailguard.observe.percentiles import grouped_percentiles


@dataclass(frozen=True, eq=False)
class Timeline:
    """Per-bucket series of one run (see the module docstring); times in seconds from
    the start of the run."""

    bucket_s: float
    t_s: np.ndarray
    offered_rps: np.ndarray
    sent_rps: np.ndarray
    answered_rps: np.ndarray
    ok_rps: np.ndarray
    p50_ms: np.ndarray
    p90_ms: np.ndarray
    p99_ms: np.ndarray
    window_start_s: float
    window_end_s: float
    errors_rps: dict[str, np.ndarray] = field(default_factory=dict)
    good_rps: np.ndarray | None = None
    slo_ms: float | None = None
    tenant_ok_rps: dict[str, np.ndarray] = field(default_factory=dict)
    server_t_s: np.ndarray | None = None
    replicas: dict[str, np.ndarray] = field(default_factory=dict)
    queue_depth: dict[str, np.ndarray] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Plain lists (NaN as None), for JSON."""

        def plain(a: np.ndarray | None) -> list[float | None] | None:
            if a is None:
                return None
            return [None if not math.isfinite(x) else round(x, 6) for x in a.tolist()]

        return {
            "bucket_s": self.bucket_s, "t_s": plain(self.t_s),
            "window_start_s": self.window_start_s, "window_end_s": self.window_end_s,
            "offered_rps": plain(self.offered_rps), "sent_rps": plain(self.sent_rps),
            "answered_rps": plain(self.answered_rps), "ok_rps": plain(self.ok_rps),
            "good_rps": plain(self.good_rps), "slo_ms": self.slo_ms,
            "p50_ms": plain(self.p50_ms), "p90_ms": plain(self.p90_ms),
            "p99_ms": plain(self.p99_ms),
            "errors_rps": {k: plain(v) for k, v in self.errors_rps.items()},
            "tenant_ok_rps": {k: plain(v) for k, v in self.tenant_ok_rps.items()},
            "server_t_s": plain(self.server_t_s),
            "replicas": {k: plain(v) for k, v in self.replicas.items()},
            "queue_depth": {k: plain(v) for k, v in self.queue_depth.items()},
        }


def _bucket(times: np.ndarray, origin: float, bucket_s: float, n: int) -> np.ndarray:
    """Bucket index of each finite time inside ``[origin, origin + n * bucket_s)``; -1 else."""
    idx = np.full(times.size, -1, dtype=np.int64)
    finite = np.isfinite(times)
    raw = np.floor((times[finite] - origin) / bucket_s)
    raw[(raw < 0) | (raw >= n)] = -1
    idx[finite] = raw.astype(np.int64)
    return idx


def _rate(idx: np.ndarray, n: int, bucket_s: float) -> np.ndarray:
    counts = np.bincount(idx[idx >= 0], minlength=n)[:n]
    return np.asarray(counts / bucket_s, dtype=np.float64)


def timeline(rec: Recording, bucket_s: float = 1.0, slo_ms: float | None = None) -> Timeline:
    """The per-bucket series of ``rec`` (see the module docstring)."""
    if not bucket_s > 0:
        raise ValueError(f"bucket_s must be > 0, got {bucket_s}")
    origin = rec.started_s if rec.started_s is not None else (
        float(np.nanmin(rec.intended_s)) if rec.intended_s.size else rec.window_start_s)
    last = max(rec.window_end_s, float(np.nanmax(rec.done_s)) if np.isfinite(rec.done_s).any()
               else rec.window_end_s)
    n = max(1, math.ceil((last - origin) / bucket_s - 1e-9))
    code = rec.code
    ok = (code >= 200) & (code < 300)
    intended_idx = _bucket(rec.intended_s, origin, bucket_s, n)
    done_idx = _bucket(rec.done_s, origin, bucket_s, n)
    answered = code > 0
    latency = rec.done_s - rec.intended_s
    p50, p90, p99 = grouped_percentiles(np.where(ok, intended_idx, -1), latency * 1000.0, n,
                                        (50, 90, 99))
    good = None
    if slo_ms is not None:
        good = _rate(np.where(ok & (latency <= slo_ms / 1000.0), done_idx, -1), n, bucket_s)
    ended_idx = np.where(np.isfinite(rec.done_s), done_idx, intended_idx)
    errors: dict[str, np.ndarray] = {}
    for c in np.unique(code[~ok]).tolist():
        errors[error_name(int(c))] = _rate(np.where(code == c, ended_idx, -1), n, bucket_s)
    tenants: dict[str, np.ndarray] = {}
    if rec.tenant is not None:
        for t, name in enumerate(rec.tenant_names):
            tenants[name] = _rate(np.where(ok & (rec.tenant == t), done_idx, -1), n, bucket_s)
    server_t = None
    replicas: dict[str, np.ndarray] = {}
    depth: dict[str, np.ndarray] = {}
    if rec.server is not None and rec.server.scrapes:
        server_t = rec.server.t_s - origin
        replicas, depth = dict(rec.server.replicas), dict(rec.server.queue_depth)
    return Timeline(
        bucket_s=bucket_s,
        t_s=np.arange(n) * bucket_s,
        offered_rps=_rate(intended_idx, n, bucket_s),
        sent_rps=_rate(_bucket(rec.sent_s, origin, bucket_s, n), n, bucket_s),
        answered_rps=_rate(np.where(answered, done_idx, -1), n, bucket_s),
        ok_rps=_rate(np.where(ok, done_idx, -1), n, bucket_s),
        p50_ms=p50, p90_ms=p90, p99_ms=p99,
        window_start_s=rec.window_start_s - origin,
        window_end_s=rec.window_end_s - origin,
        errors_rps=errors, good_rps=good, slo_ms=slo_ms, tenant_ok_rps=tenants,
        server_t_s=server_t, replicas=replicas, queue_depth=depth,
    )
