"""What a load run measured: raw recordings in, percentiles, rates and verdicts out.

The engines record every request into preallocated numpy arrays (:class:`Recording`); this
module turns them into a :class:`LoadResult` with pure, vectorised arithmetic, so the same
math is unit-tested on known arrays.

Definitions (the ones that matter for honest numbers):

- the *measured* requests are those whose intended send time falls in the measurement window
  ``[window_start_s, window_end_s)`` (after the warm-up);
- latency is ``done - intended``: in the open loop the intended time comes from the arrival
  schedule, so a generator or connection pool that lags cannot hide queueing (no coordinated
  omission); in the closed loop intended equals sent;
- latency percentiles are over successful (2xx) responses; errors are counted by kind apart,
  so that fast errors (a 429 shed) never make the tail look better;
- ``rps`` counts responses (any HTTP status) *completed* inside the window, divided by its
  length, so a server slower than the offered rate shows a lower rate, not the offered one;
- the open loop's *send-time error* is ``sent - intended`` over all measured requests; its
  *schedule lag* is the same over those that found a free connection, so it shows the
  generator's own timing (CPU, timer) apart from waits for a connection. Either above 1 ms
  at P99, or requests finding every connection busy, sets ``fell_behind`` with a warning
  saying which;
- percentiles are nearest-rank (the smallest sample with at least q % of samples at or below
  it; :mod:`tailguard.observe.percentiles`): every reported value is a latency that some
  request really had.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from tailguard.load.stats import (
    CODE_CLOSED,
    CODE_CONNECT,
    CODE_NOT_SENT,
    CODE_PROTOCOL,
    CODE_TIMEOUT,
    ERROR_NAMES,
    GroupStats,
    StatusLatency,
    error_name,
    group_stats,
    ms,
    tenant_stats,
)
from tailguard.observe.percentiles import percentiles

if TYPE_CHECKING:
    from tailguard.load.metrics import ServerSeries

__all__ = [
    "CODE_CLOSED",
    "CODE_CONNECT",
    "CODE_NOT_SENT",
    "CODE_PROTOCOL",
    "CODE_TIMEOUT",
    "ERROR_NAMES",
    "MAX_SEND_ERROR_P99_MS",
    "LoadResult",
    "Recording",
    "error_name",
    "format_text",
    "summarize",
]

# Above this send-time error P99 the open-loop generator is judged to have fallen behind.
MAX_SEND_ERROR_P99_MS = 1.0


@dataclass(frozen=True, eq=False)
class Recording:
    """The raw record of one run: one slot per request, times from ``time.perf_counter``.

    ``sent_s`` and ``done_s`` are NaN for a request never sent or never finished; ``code`` is
    the HTTP status or one of the negative ``CODE_*`` values; ``tenant`` (int16) indexes
    ``tenant_names`` when the run had a tenant mix; ``server`` holds what ``/metrics`` said
    during the run when it was scraped; ``started_s`` is when the run began (warm-up
    included).
    """

    intended_s: np.ndarray
    sent_s: np.ndarray
    done_s: np.ndarray
    code: np.ndarray
    window_start_s: float
    window_end_s: float
    mode: str
    offered_rps: float | None = None
    concurrency: int | None = None
    connections_opened: int = 0
    waited_for_connection: int = 0
    max_connections: int | None = None
    queued: np.ndarray | None = None  # bool per request: waited for a connection (open loop)
    tenant: np.ndarray | None = None
    tenant_names: tuple[str, ...] = ()
    server: ServerSeries | None = None
    started_s: float | None = None
    # HTTP error status -> what the server said (see tailguard.load.samples)
    error_samples: dict[int, str] = field(default_factory=dict)


@dataclass(frozen=True)
class LoadResult:
    """The summary of one run; :meth:`to_dict` is the ``--json`` output."""

    mode: str
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
    duration_s: float
    send_error_p50_ms: float | None = None
    send_error_p99_ms: float | None = None
    send_error_max_ms: float | None = None
    schedule_lag_p99_ms: float | None = None
    offered_rps: float | None = None
    concurrency: int | None = None
    connections_opened: int = 0
    waited_for_connection: int = 0
    max_connections: int | None = None
    fell_behind: bool = False
    warnings: tuple[str, ...] = field(default_factory=tuple)
    slo_ms: float | None = None
    goodput_rps: float | None = None
    slo_attainment_pct: float | None = None
    status_latency_ms: StatusLatency = field(default_factory=dict)
    tenants: dict[str, GroupStats] = field(default_factory=dict)
    server_metrics: str | None = None
    error_samples: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["warnings"] = list(self.warnings)
        return data

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=False)


@dataclass
class _Verdict:
    send_p50: float | None = None
    send_p99: float | None = None
    send_max: float | None = None
    lag_p99: float | None = None
    warnings: list[str] = field(default_factory=list)


def _open_loop_verdict(rec: Recording, measured: np.ndarray) -> _Verdict:
    """Did the generator keep its schedule? Each way it did not gets its own warning."""
    sent = measured & np.isfinite(rec.sent_s)
    error = rec.sent_s[sent] - rec.intended_s[sent]
    s50, s99 = percentiles(error, (50, 99))
    # Schedule lag: requests that found a free connection, so late only by the generator's
    # own timing (CPU, timer); the rest also waited for a connection.
    direct = sent & ~rec.queued if rec.queued is not None else sent
    (lag99,) = percentiles(rec.sent_s[direct] - rec.intended_s[direct], (99,))
    v = _Verdict(s50, s99, float(error.max()) if error.size else None, lag99)
    limit_s = MAX_SEND_ERROR_P99_MS / 1000.0
    if lag99 is not None and lag99 > limit_s:
        v.warnings.append(
            f"generator fell behind its schedule: send-time lag P99 {lag99 * 1000.0:.2f} ms > "
            f"{MAX_SEND_ERROR_P99_MS:g} ms even with a free connection (the generator lacked "
            "CPU: give it a core of its own, or offer less); latencies include the lag"
        )
    elif s99 is not None and s99 > limit_s:
        v.warnings.append(
            f"send-time error P99 {s99 * 1000.0:.2f} ms > {MAX_SEND_ERROR_P99_MS:g} ms: requests "
            "waited for a connection to open or free up; latencies include the wait"
        )
    if rec.waited_for_connection:
        cap = f"all {rec.max_connections}" if rec.max_connections else "all"
        v.warnings.append(
            f"ran out of connections: {rec.waited_for_connection} requests found {cap} "
            "connections busy (the target is not keeping up with the offered rate, or raise "
            "--connections); their latency counts the wait"
        )
    not_sent = int(np.count_nonzero(rec.code[measured] == CODE_NOT_SENT))
    if not_sent:
        v.warnings.append(f"{not_sent} scheduled requests were never sent before the deadline")
    return v


def summarize(rec: Recording, slo_ms: float | None = None) -> LoadResult:
    """Percentiles, rates, errors by kind and the fell-behind verdict of one recording; with
    ``slo_ms``, goodput and SLO attainment; per tenant when the run had a tenant mix."""
    duration = rec.window_end_s - rec.window_start_s
    if duration <= 0:
        raise ValueError("the measurement window must have a positive length")
    measured = (rec.intended_s >= rec.window_start_s) & (rec.intended_s < rec.window_end_s)
    g = group_stats(rec.intended_s, rec.done_s, rec.code, rec.window_start_s, rec.window_end_s,
                    slo_ms)
    tenants: dict[str, GroupStats] = {}
    if rec.tenant is not None and rec.tenant_names:
        tenants = tenant_stats(rec.tenant, rec.tenant_names, rec.intended_s, rec.done_s,
                               rec.code, rec.window_start_s, rec.window_end_s, slo_ms)
    verdict = _open_loop_verdict(rec, measured) if rec.mode == "open" else _Verdict()
    return LoadResult(
        mode=rec.mode,
        requests=g.requests,
        ok=g.ok,
        errors=g.errors,
        rps=g.rps,
        ok_rps=g.ok_rps,
        p50_ms=g.p50_ms,
        p90_ms=g.p90_ms,
        p99_ms=g.p99_ms,
        p999_ms=g.p999_ms,
        mean_ms=g.mean_ms,
        max_ms=g.max_ms,
        duration_s=round(duration, 6),
        send_error_p50_ms=ms(verdict.send_p50),
        send_error_p99_ms=ms(verdict.send_p99),
        send_error_max_ms=ms(verdict.send_max),
        schedule_lag_p99_ms=ms(verdict.lag_p99),
        offered_rps=rec.offered_rps,
        concurrency=rec.concurrency,
        connections_opened=rec.connections_opened,
        waited_for_connection=rec.waited_for_connection,
        max_connections=rec.max_connections,
        fell_behind=bool(verdict.warnings),
        warnings=tuple(verdict.warnings),
        slo_ms=slo_ms,
        goodput_rps=g.goodput_rps,
        slo_attainment_pct=g.slo_attainment_pct,
        status_latency_ms=g.status_latency_ms,
        tenants=tenants,
        server_metrics=None if rec.server is None else rec.server.describe(),
        error_samples={error_name(code): text for code, text in sorted(rec.error_samples.items())},
    )


def _fmt(x: float | int | None) -> str:
    return "-" if x is None else f"{x:.2f}"


def format_text(result: LoadResult) -> str:
    """The human summary printed by ``tailguard load`` (warnings first, so they are seen)."""
    lines = [f"WARNING: {w}" for w in result.warnings]
    if result.mode == "open":
        head = f"open loop, offered {result.offered_rps:g} req/s"
    else:
        head = f"closed loop, concurrency {result.concurrency}"
    lines.append(f"{head}, {result.duration_s:g} s measured, "
                 f"{result.connections_opened} connections opened")
    lines.append(
        f"requests {result.requests}  ok {result.ok}  throughput {result.rps:.1f} req/s "
        f"(ok {result.ok_rps:.1f} req/s)"
    )
    lines.append(
        f"latency ms  p50 {_fmt(result.p50_ms)}  p90 {_fmt(result.p90_ms)}  "
        f"p99 {_fmt(result.p99_ms)}  p99.9 {_fmt(result.p999_ms)}  max {_fmt(result.max_ms)}"
    )
    if result.mode == "open":
        lines.append(
            f"send-time error ms  p50 {_fmt(result.send_error_p50_ms)}  "
            f"p99 {_fmt(result.send_error_p99_ms)}  max {_fmt(result.send_error_max_ms)}  "
            f"(schedule lag p99 {_fmt(result.schedule_lag_p99_ms)})"
        )
    if result.slo_ms is not None:
        lines.append(f"SLO {result.slo_ms:g} ms  goodput {_fmt(result.goodput_rps)} req/s  "
                     f"attainment {_fmt(result.slo_attainment_pct)} %")
    lines.append(_errors_line(result.errors))
    for status, s in sorted(result.status_latency_ms.items()):
        lines.append(f"  http {status}: {s['count']} answers, latency ms p50 "
                     f"{_fmt(s['p50'])}  p99 {_fmt(s['p99'])}")
        sample = result.error_samples.get(f"http_{status}")
        if sample is not None:
            lines.append(f"    the server said: {sample}")
    if result.tenants:
        lines.append(_tenant_table(result))
    if result.server_metrics is not None:
        lines.append(f"server /metrics: {result.server_metrics}")
    return "\n".join(lines)


def _errors_line(errors: dict[str, int]) -> str:
    if not errors:
        return "errors  none"
    return "errors  " + "  ".join(f"{k} {n}" for k, n in sorted(errors.items()))


def _tenant_table(result: LoadResult) -> str:
    slo = result.slo_ms is not None
    head = f"{'tenant':<16} {'requests':>9} {'ok':>9} {'ok/s':>9} {'p50':>8} {'p99':>8} " \
           f"{'p99.9':>8}" + (f" {'goodput/s':>10} {'attain%':>8}" if slo else "") + "  errors"
    rows = [head]
    for name, t in result.tenants.items():
        row = (f"{name[:16]:<16} {t.requests:>9} {t.ok:>9} {t.ok_rps:>9.1f} "
               f"{_fmt(t.p50_ms):>8} {_fmt(t.p99_ms):>8} {_fmt(t.p999_ms):>8}")
        if slo:
            row += f" {_fmt(t.goodput_rps):>10} {_fmt(t.slo_attainment_pct):>8}"
        rows.append(row + "  " + _errors_line(t.errors).removeprefix("errors  "))
    return "\n".join(rows)
