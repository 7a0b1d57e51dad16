"""The server's own view during a load run: replicas ready and queue depth from ``/metrics``.

While a run is under way, :class:`MetricsScraper` GETs ``/metrics`` about once a second (with
the run's API key: the gateway shows a tenant its own deployments) and keeps, per
deployment, ``tailguard_replicas_ready`` and ``tailguard_queue_depth``. The report plots them
next to the offered rate and the latency, so a latency step can be read against a scale-up.

A target without ``/metrics`` (404, 401, refused) is skipped after the first answer, with
the reason kept in :attr:`ServerSeries.error`; the run itself goes on unchanged. Scraping
shares the generator's event loop, so it is kept cheap: one small GET a second, and only the
two wanted families go through the (pure-Python) Prometheus parser.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from dataclasses import dataclass

import numpy as np
from prometheus_client.parser import text_string_to_metric_families

from tailguard.load.client import Target, fetch

REPLICAS = "tailguard_replicas_ready"
QUEUE_DEPTH = "tailguard_queue_depth"
_WANTED = (REPLICAS, QUEUE_DEPTH)
# Consecutive failed scrapes (refused, timeout) before giving up on a target.
_MAX_FAILURES = 3


def parse_metrics(text: str) -> dict[str, dict[str, float]]:
    """``{family: {deployment: value}}`` of the wanted families in a Prometheus text page.

    Raises ``ValueError`` when the wanted lines do not parse.
    """
    lines = [
        line for line in text.splitlines()
        if line.startswith(_WANTED) or (line.startswith("#") and any(w in line for w in _WANTED))
    ]
    out: dict[str, dict[str, float]] = {name: {} for name in _WANTED}
    for family in text_string_to_metric_families("\n".join(lines) + "\n"):
        for sample in family.samples:
            if sample.name in out:
                out[sample.name][sample.labels.get("deployment", "")] = float(sample.value)
    return out


@dataclass(frozen=True, eq=False)
class ServerSeries:
    """What ``/metrics`` said during a run: one row per scrape, one column per deployment.

    ``t_s`` are ``time.perf_counter`` times of the answers (the clock of the Recording);
    values are NaN where a deployment was absent from a scrape. ``error`` says why scraping
    stopped early (None when it ran to the end).
    """

    t_s: np.ndarray
    replicas: dict[str, np.ndarray]
    queue_depth: dict[str, np.ndarray]
    failures: int = 0
    error: str | None = None

    @property
    def scrapes(self) -> int:
        return int(self.t_s.size)

    def describe(self) -> str:
        """A one-line account for the text report."""
        if self.error is not None and not self.scrapes:
            return f"not available ({self.error}); replicas and queue depth not plotted"
        parts = [f"{self.scrapes} scrapes"]
        for name, values in self.replicas.items():
            finite = values[np.isfinite(values)]
            if finite.size:
                parts.append(f"{name or '-'}: replicas {int(finite.min())}..{int(finite.max())}")
        if self.failures:
            parts.append(f"{self.failures} failed")
        if self.error is not None:
            parts.append(f"stopped: {self.error}")
        return ", ".join(parts)


class MetricsScraper:
    """Scrapes ``/metrics`` every ``interval_s`` from :meth:`start` until :meth:`stop`."""

    def __init__(self, target: Target, headers: tuple[tuple[str, str], ...],
                 interval_s: float = 1.0, timeout_s: float = 2.0) -> None:
        self._target = target
        self._headers = headers
        self._interval = interval_s
        self._timeout = min(timeout_s, interval_s * 2)
        self._times: list[float] = []
        self._rows: list[dict[str, dict[str, float]]] = []
        self._failures = 0
        self._error: str | None = None
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> ServerSeries:
        """Stop scraping (a scrape under way is cancelled) and return the series."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        return self.series()

    def series(self) -> ServerSeries:
        names = sorted({d for row in self._rows for d in row[REPLICAS]} |
                       {d for row in self._rows for d in row[QUEUE_DEPTH]})

        def column(family: str, name: str) -> np.ndarray:
            return np.array([row[family].get(name, math.nan) for row in self._rows], np.float64)

        return ServerSeries(
            t_s=np.array(self._times, dtype=np.float64),
            replicas={n: column(REPLICAS, n) for n in names},
            queue_depth={n: column(QUEUE_DEPTH, n) for n in names},
            failures=self._failures,
            error=self._error,
        )

    async def _run(self) -> None:
        next_at = time.perf_counter()
        run_of_failures = 0
        while True:
            try:
                status, body = await fetch(self._target, "/metrics", self._timeout,
                                           self._headers)
            except OSError as exc:  # refused, reset, or TimeoutError (an OSError too)
                self._failures += 1
                run_of_failures += 1
                if run_of_failures >= _MAX_FAILURES:
                    self._error = f"{_MAX_FAILURES} scrapes failed: {exc or type(exc).__name__}"
                    return
            else:
                if status != 200:  # no /metrics here, or not for this key: skip it
                    self._error = f"GET /metrics answered {status}"
                    return
                try:
                    row = parse_metrics(body.decode("utf-8", "replace"))
                except ValueError as exc:
                    self._error = f"/metrics does not parse: {exc}"
                    return
                run_of_failures = 0
                self._times.append(time.perf_counter())
                self._rows.append(row)
            next_at += self._interval
            await asyncio.sleep(max(0.0, next_at - time.perf_counter()))
