"""Live metrics of one deployment, recorded on the request path, read by the controller.

The deployment calls :meth:`LiveRecorder.arrival`, :meth:`~LiveRecorder.completed` and
:meth:`~LiveRecorder.batch` for every request and batch: each is two or three stores into a
preallocated ring buffer (O(1), no allocation), so they cost well under a microsecond at
>10k req/s. The controller, off the request path, calls :meth:`LiveRecorder.snapshot` once a
tick and turns the last window into a :class:`MetricsSnapshot` with numpy::

    rec = LiveRecorder()
    rec.arrival(10.0, rows=1)
    rec.batch(10.05, rows=1, service_s=0.04)
    rec.completed(10.05, latency_s=0.05, ok=True)
    snap = rec.snapshot(11.0, counts={"ready": 1}, queue_depth=0, window_s=10.0,
                        max_batch_size=8)
    snap.latency_p99_s  # 0.05

Every time is the event-loop clock in seconds. A ring keeps the newest ``capacity`` events of
each kind; when a window holds more than that (e.g. >6,500 req/s over 10 s with the default
64 Ki), rates are computed over the span the ring still covers and percentiles over the
newest events, which is a uniform-in-time sample of the window's most recent part.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping

import numpy as np

from tailguard.autoscale.snapshot import MetricsSnapshot
from tailguard.observe.percentiles import percentiles
from tailguard.serve.deployment.estimates import ServiceModel

__all__ = ["LiveRecorder"]

DEFAULT_CAPACITY = 1 << 16
_MIN_WINDOW_S = 1.0  # a fresh recorder divides by at least this (never by a few ms)


class _Ring:
    """Fixed-size columns of float64; ``n`` counts every push ever made."""

    __slots__ = ("cols", "mask", "n")

    def __init__(self, capacity: int, columns: int) -> None:
        self.cols = [np.zeros(capacity, dtype=np.float64) for _ in range(columns)]
        self.mask = capacity - 1
        self.n = 0

    def ordered(self) -> list[np.ndarray]:
        """The retained events, oldest first (copies: safe to keep after more pushes)."""
        size = self.mask + 1
        if self.n <= size:
            return [c[: self.n].copy() for c in self.cols]
        i = self.n & self.mask
        return [np.concatenate((c[i:], c[:i])) for c in self.cols]

    @property
    def overflowed(self) -> bool:
        return self.n > self.mask + 1


class LiveRecorder:
    """Event sink of one deployment and the builder of its :class:`MetricsSnapshot`."""

    def __init__(self, capacity: int = DEFAULT_CAPACITY, *,
                 service: ServiceModel | None = None) -> None:
        if capacity < 2 or capacity & (capacity - 1):
            raise ValueError(f"capacity must be a power of two >= 2, got {capacity}")
        self._arrivals = _Ring(capacity, 2)  # t, rows
        self._done = _Ring(capacity, 3)  # t, latency_s, ok
        self._batches = _Ring(capacity, 3)  # t (finish), rows, service_s
        # Local aliases: the request path touches only these.
        self._a_t, self._a_rows = self._arrivals.cols
        self._d_t, self._d_lat, self._d_ok = self._done.cols
        self._b_t, self._b_rows, self._b_svc = self._batches.cols
        self._mask = capacity - 1
        self._origin: float | None = None  # first event or snapshot: the start of history
        self._serving: deque[tuple[float, int]] = deque()  # (t, serving replicas from t on)
        # The deployment's one service-time model (it observes every batch itself), or the
        # recorder's own, fed by :meth:`batch`: the autoscaler sizes the fleet with the same
        # fit that admission and the batcher use.
        self._own_service = service is None
        self._service = ServiceModel() if service is None else service

    # ------------------------------------------------------------ request path
    def arrival(self, now: float, rows: int) -> None:
        """A request of ``rows`` rows was admitted at ``now`` (loop clock, seconds)."""
        ring = self._arrivals
        i = ring.n & self._mask
        self._a_t[i] = now
        self._a_rows[i] = rows
        ring.n += 1

    def completed(self, now: float, latency_s: float, ok: bool) -> None:
        """A request finished at ``now`` after ``latency_s`` in the deployment."""
        ring = self._done
        i = ring.n & self._mask
        self._d_t[i] = now
        self._d_lat[i] = latency_s
        self._d_ok[i] = ok
        ring.n += 1

    def batch(self, now: float, rows: int, service_s: float) -> None:
        """A replica finished a batch of ``rows`` rows that took ``service_s``."""
        ring = self._batches
        i = ring.n & self._mask
        self._b_t[i] = now
        self._b_rows[i] = rows
        self._b_svc[i] = service_s
        ring.n += 1
        if self._own_service:
            self._service.observe(rows, service_s)

    # ------------------------------------------------------------ controller side
    @property
    def ongoing(self) -> int:
        """Requests admitted and not yet completed (queued or in a batch)."""
        return max(self._arrivals.n - self._done.n, 0)

    @property
    def totals(self) -> dict[str, int]:
        """Events recorded since the start: arrivals, completions, batches."""
        return {"arrivals": self._arrivals.n, "completed": self._done.n,
                "batches": self._batches.n}

    def snapshot(
        self,
        now: float,
        *,
        counts: Mapping[str, int],
        queue_depth: int,
        window_s: float,
        max_batch_size: int,
        recent_window_s: float = 2.0,
        batch_wait_s: float = 0.0,
        ongoing: int | None = None,
        deployment: str = "default",
    ) -> MetricsSnapshot:
        """The last ``window_s`` seconds before ``now`` as a :class:`MetricsSnapshot`.

        ``counts`` are the deployment's replica counts now (``ready``, ``starting``,
        ``draining``); the recorder remembers them from call to call to weigh the busy
        ratio by how many replicas were serving over the window. ``ongoing`` defaults to the
        requests admitted and not completed.
        """
        if window_s <= 0 or recent_window_s <= 0:
            raise ValueError("window_s and recent_window_s must be > 0")
        ready = int(counts.get("ready", 0))
        starting = int(counts.get("starting", 0))
        draining = int(counts.get("draining", 0))
        window, lo = self._effective_window(now, window_s)
        a_t, a_rows = self._arrivals.ordered()
        a_lo, a_hi = np.searchsorted(a_t, (lo, now), side="right")
        span = self._span(now, window, a_t, self._arrivals.overflowed)
        n_arr = int(a_hi - a_lo)
        rate = n_arr / span
        rows_rate = float(a_rows[a_lo:a_hi].sum()) / span
        recent_span = min(recent_window_s, span)
        r_lo = int(np.searchsorted(a_t, max(now - recent_span, lo), side="right"))
        recent = (int(a_hi) - r_lo) / recent_span
        cv = 1.0
        if n_arr >= 3:
            gaps = np.diff(a_t[a_lo:a_hi])
            mean = float(gaps.mean())
            if mean > 0:
                cv = float(gaps.std()) / mean
        d_t, d_lat, _ = self._done.ordered()
        d_lo, d_hi = np.searchsorted(d_t, (lo, now), side="right")
        lat = d_lat[d_lo:d_hi]
        p50, p99 = percentiles(lat, (50, 99))
        b_t, _, b_svc = self._batches.ordered()
        busy, busy_s = self._busy_ratio(now, window, lo, b_t, b_svc, ready + draining)
        return MetricsSnapshot(
            window_s=float(window),
            arrival_rate_rps=float(rate),
            ready_replicas=ready,
            service_profile=self._service.profile(max_batch_size),
            deployment=deployment,
            arrival_rows_per_s=float(rows_rate),
            recent_arrival_rate_rps=float(recent),
            arrival_cv=float(cv),
            latency_p50_s=p50,
            latency_p99_s=p99,
            completed=int(lat.size),
            busy_ratio=busy,
            busy_replicas=busy_s / window,
            queue_depth=max(int(queue_depth), 0),
            ongoing_requests=self.ongoing if ongoing is None else max(int(ongoing), 0),
            starting_replicas=starting,
            draining_replicas=draining,
            batch_wait_s=float(batch_wait_s),
        )

    def busy_fraction(self, now: float, window_s: float, serving: int) -> float:
        """Time in ``predict`` over ``serving`` replicas' wall time in the last ``window_s``:
        a read-only view for ``/metrics`` (the snapshot's ``busy_ratio`` also weighs by
        the counts it saw over the window; this assumes ``serving`` throughout)."""
        if serving <= 0 or window_s <= 0:
            return 0.0
        b_t, _, b_svc = self._batches.ordered()
        lo = now - window_s
        first = int(np.searchsorted(b_t, lo, side="right"))
        starts = np.maximum(b_t[first:] - b_svc[first:], lo)
        busy = float(np.clip(np.minimum(b_t[first:], now) - starts, 0.0, None).sum())
        return min(busy / (serving * window_s), 1.0)

    # ------------------------------------------------------------ internals
    def _effective_window(self, now: float, window_s: float) -> tuple[float, float]:
        """The window's length and its open lower end ``lo`` (events in ``(lo, now]``).

        ``window_s``, shortened to the history there is (but never below a second); a
        shortened window starts just before the first event, so that event counts.
        """
        firsts = [float(r.cols[0][0]) for r in (self._arrivals, self._done, self._batches)
                  if r.n]
        first = min([now, *firsts])  # ring slot 0 holds the first event until it wraps
        if self._origin is None or first < self._origin:
            self._origin = first
        window = min(window_s, max(now - self._origin, min(window_s, _MIN_WINDOW_S)))
        lo = now - window
        if now - self._origin < window_s:  # the window holds all history: include its start
            lo = min(lo, math.nextafter(self._origin, -math.inf))
        return window, lo

    @staticmethod
    def _span(now: float, window: float, times: np.ndarray, overflowed: bool) -> float:
        """Seconds of the window the retained events cover (less after the ring wrapped)."""
        if overflowed and times.size and times[0] > now - window:
            return max(now - float(times[0]), 1e-9)
        return window

    def _busy_ratio(
        self, now: float, window: float, lo: float, ends: np.ndarray, service: np.ndarray,
        serving: int,
    ) -> tuple[float, float]:
        """Busy replica-seconds in the window over serving replica-seconds in it, and the
        busy replica-seconds themselves."""
        first = int(np.searchsorted(ends, lo, side="right"))
        starts = np.maximum(ends[first:] - service[first:], lo)
        busy = float(np.clip(np.minimum(ends[first:], now) - starts, 0.0, None).sum())
        capacity = self._serving_seconds(now, window, serving)
        self._serving.append((now, serving))
        while len(self._serving) > 1 and self._serving[1][0] <= now - window:
            self._serving.popleft()
        if capacity <= 0:
            return 0.0, busy
        return float(min(busy / capacity, 1.0)), busy

    def _serving_seconds(self, now: float, window: float, serving_now: int) -> float:
        """Replica-seconds of the window, from the counts seen at earlier snapshots."""
        lo = now - window
        samples = list(self._serving)
        if not samples:
            return serving_now * window
        total = samples[0][1] * max(samples[0][0] - lo, 0.0)  # before the first sample
        for (t0, n0), (t1, _) in zip(samples, [*samples[1:], (now, serving_now)], strict=True):
            total += n0 * max(min(t1, now) - max(t0, lo), 0.0)
        return total
