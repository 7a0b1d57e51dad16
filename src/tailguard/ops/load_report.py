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
  it): every reported value is a latency that some request really had.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

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
# Above this send-time error P99 the open-loop generator is judged to have fallen behind.
MAX_SEND_ERROR_P99_MS = 1.0


def error_name(code: int) -> str:
    """``http_404`` for an HTTP status, ``timeout``/``connect``/``closed``/… otherwise."""
    return f"http_{code}" if code > 0 else ERROR_NAMES.get(code, f"code_{code}")


def percentiles(values: np.ndarray, qs: Sequence[float]) -> list[float | None]:
    """Nearest-rank percentiles (``qs`` in percent) of ``values``; None for an empty array."""
    n = values.size
    if n == 0:
        return [None for _ in qs]
    # Rank ceil(q/100 * n), computed so that 99.9 % of 1000 is rank 999, not 1000 by rounding.
    ranks = [min(n, max(1, math.ceil(round(q * n / 100.0, 9)))) for q in qs]
    ordered = np.partition(values, sorted({r - 1 for r in ranks}))
    return [float(ordered[r - 1]) for r in ranks]


@dataclass(frozen=True, eq=False)
class Recording:
    """The raw record of one run: one slot per request, times from ``time.perf_counter``.

    ``sent_s`` and ``done_s`` are NaN for a request never sent or never finished; ``code`` is
    the HTTP status or one of the negative ``CODE_*`` values.
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

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["warnings"] = list(self.warnings)
        return data

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=False)


def _ms(x: float | None) -> float | None:
    return None if x is None else round(x * 1000.0, 4)


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


def summarize(rec: Recording) -> LoadResult:
    """Percentiles, rates, errors by kind and the fell-behind verdict of one recording."""
    duration = rec.window_end_s - rec.window_start_s
    if duration <= 0:
        raise ValueError("the measurement window must have a positive length")
    measured = (rec.intended_s >= rec.window_start_s) & (rec.intended_s < rec.window_end_s)
    code = rec.code[measured]
    ok_mask = (code >= 200) & (code < 300)
    latency = rec.done_s[measured][ok_mask] - rec.intended_s[measured][ok_mask]

    completed = rec.code > 0
    in_window = completed & (rec.done_s >= rec.window_start_s) & (rec.done_s < rec.window_end_s)
    ok_in_window = in_window & (rec.code >= 200) & (rec.code < 300)

    kinds, counts = np.unique(code[~ok_mask], return_counts=True)
    errors = {error_name(int(k)): int(n) for k, n in zip(kinds, counts, strict=True)}

    p50, p90, p99, p999 = percentiles(latency, (50, 90, 99, 99.9))
    mean = float(latency.mean()) if latency.size else None
    peak = float(latency.max()) if latency.size else None

    verdict = _open_loop_verdict(rec, measured) if rec.mode == "open" else _Verdict()
    return LoadResult(
        mode=rec.mode,
        requests=int(np.count_nonzero(measured)),
        ok=int(np.count_nonzero(ok_mask)),
        errors=errors,
        rps=round(int(np.count_nonzero(in_window)) / duration, 3),
        ok_rps=round(int(np.count_nonzero(ok_in_window)) / duration, 3),
        p50_ms=_ms(p50),
        p90_ms=_ms(p90),
        p99_ms=_ms(p99),
        p999_ms=_ms(p999),
        mean_ms=_ms(mean),
        max_ms=_ms(peak),
        duration_s=round(duration, 6),
        send_error_p50_ms=_ms(verdict.send_p50),
        send_error_p99_ms=_ms(verdict.send_p99),
        send_error_max_ms=_ms(verdict.send_max),
        schedule_lag_p99_ms=_ms(verdict.lag_p99),
        offered_rps=rec.offered_rps,
        concurrency=rec.concurrency,
        connections_opened=rec.connections_opened,
        waited_for_connection=rec.waited_for_connection,
        max_connections=rec.max_connections,
        fell_behind=bool(verdict.warnings),
        warnings=tuple(verdict.warnings),
    )


def _fmt(x: float | None) -> str:
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
    if result.errors:
        kinds = "  ".join(f"{k} {n}" for k, n in sorted(result.errors.items()))
        lines.append(f"errors  {kinds}")
    else:
        lines.append("errors  none")
    return "\n".join(lines)
