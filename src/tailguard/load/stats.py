"""The arithmetic of a load report on per-request arrays: percentiles, SLO figures, groups.

Pure, vectorised functions, shared by the overall summary and the per-tenant one (and unit
tested on arrays with known answers):

- latency percentiles: nearest rank, by :mod:`tailguard.observe.percentiles` (every reported
  value is a latency some request had);
- :func:`status_latency`: per non-2xx HTTP status, how many and how fast they came back
  (a 429 shed in 1 ms is a different failure from a 503 after 2 s);
- :func:`group_stats`: requests, errors by kind, throughput, latency percentiles of the 2xx,
  and with an SLO the *goodput* (2xx answered within the SLO, per second of the window) and
  the *SLO attainment* (the share of all measured requests answered 2xx within the SLO; a
  failed request misses the SLO whatever its latency).

Latency is ``done - intended``; the measured requests are those intended inside
``[window_start_s, window_end_s)``; throughput counts completions (any HTTP status) inside
the window.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from tailguard.observe.percentiles import percentiles

# Negative codes in Recording.code; positive codes are HTTP statuses; 0 = never finished.
CODE_TIMEOUT = -1
CODE_CONNECT = -2
CODE_CLOSED = -3
CODE_PROTOCOL = -4
CODE_NOT_SENT = -5
ERROR_NAMES: dict[int, str] = {
    0: "unfinished",
    CODE_TIMEOUT: "timeout",
    CODE_CONNECT: "connect",
    CODE_CLOSED: "closed",
    CODE_PROTOCOL: "protocol",
    CODE_NOT_SENT: "not_sent",
}

StatusLatency = dict[str, dict[str, float | int | None]]


def error_name(code: int) -> str:
    """``http_404`` for an HTTP status, ``timeout``/``connect``/``closed``/… otherwise."""
    return f"http_{code}" if code > 0 else ERROR_NAMES.get(code, f"code_{code}")


def ms(x: float | None) -> float | None:
    """Seconds to milliseconds, rounded to 0.1 µs; None stays None."""
    return None if x is None else round(x * 1000.0, 4)


def status_latency(code: np.ndarray, latency_s: np.ndarray) -> StatusLatency:
    """``{"429": {"count": n, "p50": ms, "p99": ms}}`` for each non-2xx HTTP status."""
    out: StatusLatency = {}
    failed = (code > 0) & ((code < 200) | (code >= 300))
    for status in np.unique(code[failed]).tolist():
        lat = latency_s[code == status]
        p50, p99 = percentiles(lat, (50, 99))
        out[str(status)] = {"count": int(lat.size), "p50": ms(p50), "p99": ms(p99)}
    return out


def slo_figures(
    ok_latency_s: np.ndarray, measured: int, duration_s: float, slo_ms: float | None
) -> tuple[float | None, float | None]:
    """``(goodput_rps, attainment_pct)`` from the latencies of the measured 2xx answers."""
    if slo_ms is None:
        return None, None
    good = int(np.count_nonzero(ok_latency_s <= slo_ms / 1000.0))
    attainment = round(100.0 * good / measured, 4) if measured else None
    return round(good / duration_s, 3), attainment


@dataclass(frozen=True)
class GroupStats:
    """The figures of one group of requests (a tenant); :class:`LoadResult` has the same."""

    requests: int
    ok: int
    errors: dict[str, int]
    rps: float
    ok_rps: float
    p50_ms: float | None
    p90_ms: float | None
    p99_ms: float | None
    p999_ms: float | None
    mean_ms: float | None
    max_ms: float | None
    goodput_rps: float | None = None
    slo_attainment_pct: float | None = None
    status_latency_ms: StatusLatency = field(default_factory=dict)


def group_stats(
    intended_s: np.ndarray,
    done_s: np.ndarray,
    code: np.ndarray,
    window_start_s: float,
    window_end_s: float,
    slo_ms: float | None = None,
) -> GroupStats:
    """The figures of the requests in these arrays (see the module docstring)."""
    duration = window_end_s - window_start_s
    if duration <= 0:
        raise ValueError("the measurement window must have a positive length")
    measured = (intended_s >= window_start_s) & (intended_s < window_end_s)
    m_code = code[measured]
    m_latency = done_s[measured] - intended_s[measured]
    ok_mask = (m_code >= 200) & (m_code < 300)
    latency = m_latency[ok_mask]

    completed = code > 0
    in_window = completed & (done_s >= window_start_s) & (done_s < window_end_s)
    ok_in_window = in_window & (code >= 200) & (code < 300)

    kinds, counts = np.unique(m_code[~ok_mask], return_counts=True)
    errors = {error_name(int(k)): int(n) for k, n in zip(kinds, counts, strict=True)}
    p50, p90, p99, p999 = percentiles(latency, (50, 90, 99, 99.9))
    requests = int(np.count_nonzero(measured))
    goodput, attainment = slo_figures(latency, requests, duration, slo_ms)
    return GroupStats(
        requests=requests,
        ok=int(np.count_nonzero(ok_mask)),
        errors=errors,
        rps=round(int(np.count_nonzero(in_window)) / duration, 3),
        ok_rps=round(int(np.count_nonzero(ok_in_window)) / duration, 3),
        p50_ms=ms(p50),
        p90_ms=ms(p90),
        p99_ms=ms(p99),
        p999_ms=ms(p999),
        mean_ms=ms(float(latency.mean()) if latency.size else None),
        max_ms=ms(float(latency.max()) if latency.size else None),
        goodput_rps=goodput,
        slo_attainment_pct=attainment,
        status_latency_ms=status_latency(m_code, m_latency),
    )


def tenant_stats(
    tenant: np.ndarray,
    names: Sequence[str],
    intended_s: np.ndarray,
    done_s: np.ndarray,
    code: np.ndarray,
    window_start_s: float,
    window_end_s: float,
    slo_ms: float | None = None,
) -> dict[str, GroupStats]:
    """:func:`group_stats` of each tenant (``tenant[i]`` indexes ``names``), in name order."""
    out: dict[str, GroupStats] = {}
    order = np.argsort(tenant, kind="stable")  # one sort, not one scan per tenant
    bounds = np.searchsorted(tenant[order], np.arange(len(names) + 1))
    for t, name in enumerate(names):
        mine = order[bounds[t]:bounds[t + 1]]
        out[name] = group_stats(intended_s[mine], done_s[mine], code[mine], window_start_s,
                                window_end_s, slo_ms)
    return out
