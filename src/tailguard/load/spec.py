"""What a load run is asked to do: :class:`LoadSpec`, progress snapshots, arrival times.

Open-loop arrivals are ``poisson`` or ``constant`` at ``rate_rps``, or any TRACE of
:mod:`tailguard.autoscale.traces` (the simulator's generators, so a load run and a simulated
run see the same process)::

    gamma:rate=200,cv=3                      bursty renewal process
    mmpp:low=50,high=500,switch=0.5          Markov-modulated bursts
    diurnal:mean=200,amp=0.8,period=60       sinusoidal rate
    step:rates=100/400/100,every=10          steps
    spike:base=100,peak=800,at=5,width=2     a spike
    csv:trace.csv                            replay: timestamps, per-minute counts, Azure
    gamma:cv=3                               with ``rate_rps`` given, it fills in ``rate``
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tailguard.autoscale import traces
from tailguard.load.tenants import TenantMix

PROTOCOLS = ("v2", "openai")
ARRIVALS = ("poisson", "constant")
# Trace kinds whose `rate` parameter `rate_rps` may fill in.
_RATE_KINDS = ("constant", "poisson", "gamma")
_TRACE_KINDS = ("mmpp", "diurnal", "spike", "step", "gamma", "csv")
# Open-loop schedules live in memory (about 40 bytes a request): cap them.
MAX_SCHEDULED = 20_000_000


@dataclass(frozen=True)
class LoadSpec:
    """What to run. Give exactly one of ``concurrency`` (closed loop) or ``rate_rps`` (open).

    ``bodies`` are request bodies sent round-robin (e.g. from ``--payloads``); ``inputs`` are
    ``--input`` options; with neither, a known model's default body or one generated from the
    server's model metadata is used (see :mod:`tailguard.load.payloads`).

    ``arrival`` is ``poisson`` or ``constant`` (at ``rate_rps``) or a TRACE string, which
    makes the run open-loop by itself (see the module docstring). ``tenants`` shares the
    requests among tenants, each sending its own key (``api_key`` then only serves the
    metadata and ``/metrics`` calls). ``slo_ms`` adds goodput and SLO attainment to the
    report. ``scrape_metrics`` reads the server's replicas and queue depth from ``/metrics``
    every ``metrics_interval_s`` during the run. ``honour_retry_after`` (closed loop): a
    connection refused with a ``Retry-After`` (429, 503) waits that long before its next
    request, as real clients do (``retry-after-ms`` first, as the OpenAI client reads it);
    without it, a refused client re-sends at once.
    """

    url: str = "http://127.0.0.1:8000"
    model: str = "echo"
    protocol: str = "v2"
    concurrency: int | None = None
    rate_rps: float | None = None
    arrival: str = "poisson"
    duration_s: float = 10.0
    warmup_s: float = 0.0
    timeout_s: float = 30.0
    bodies: tuple[bytes, ...] = ()
    inputs: tuple[str, ...] = ()
    api_key: str | None = None
    max_connections: int = 256
    seed: int = 0
    tenants: TenantMix | None = None
    slo_ms: float | None = None
    scrape_metrics: bool = False
    metrics_interval_s: float = 1.0
    honour_retry_after: bool = False

    def __post_init__(self) -> None:
        is_open = self.rate_rps is not None or self.is_trace
        if (self.concurrency is None) != is_open:
            raise ValueError("give exactly one of concurrency (closed loop) or rate_rps / a "
                             "trace arrival (open loop)")
        if self.concurrency is not None and self.concurrency < 1:
            raise ValueError(f"concurrency must be >= 1, got {self.concurrency}")
        if self.rate_rps is not None and not (0 < self.rate_rps < math.inf):
            raise ValueError(f"rate_rps must be a positive number, got {self.rate_rps}")
        if self.protocol not in PROTOCOLS:
            raise ValueError(f"protocol must be one of {PROTOCOLS}, got {self.protocol!r}")
        if self.is_trace:
            text = self.trace_text()  # raises ValueError saying what is wrong with the trace
            parts = traces.parse_trace(text)
            for part in parts:
                if part.kind == "csv" and not Path(part.path or "").is_file():
                    raise ValueError(f"trace file {part.path!r} not found")
            if not any(part.kind == "csv" for part in parts):
                traces.generate(text, 1e-3, self.seed)  # a missing or bad parameter fails now
        elif self.arrival not in ARRIVALS:
            raise ValueError(f"arrival must be one of {ARRIVALS} or a trace, got "
                             f"{self.arrival!r}")
        if not self.duration_s > 0:
            raise ValueError(f"duration_s must be > 0, got {self.duration_s}")
        if self.warmup_s < 0 or not self.timeout_s > 0:
            raise ValueError("warmup_s must be >= 0 and timeout_s > 0")
        if self.rate_rps is not None and self.rate_rps * (self.warmup_s + self.duration_s) > (
            MAX_SCHEDULED
        ):
            raise ValueError(
                f"rate_rps x (warmup_s + duration_s) schedules more than {MAX_SCHEDULED:,} "
                "requests; split the run into shorter ones"
            )
        if self.honour_retry_after and self.concurrency is None:
            raise ValueError("honour_retry_after is for the closed loop (concurrency): an "
                             "open loop's arrivals do not wait for answers")
        if self.max_connections < 1:
            raise ValueError(f"max_connections must be >= 1, got {self.max_connections}")
        if self.slo_ms is not None and not (0 < self.slo_ms < math.inf):
            raise ValueError(f"slo_ms must be a positive number, got {self.slo_ms}")
        if not self.metrics_interval_s > 0:
            raise ValueError(f"metrics_interval_s must be > 0, got {self.metrics_interval_s}")

    @property
    def mode(self) -> str:
        return "closed" if self.concurrency is not None else "open"

    @property
    def is_trace(self) -> bool:
        """Whether ``arrival`` is a TRACE string rather than ``poisson``/``constant``."""
        return self.arrival not in ARRIVALS and (
            ":" in self.arrival or self.arrival.split(":")[0].strip().lower() in _TRACE_KINDS
        )

    def trace_text(self) -> str:
        """The TRACE string of the run, with ``rate_rps`` filled in where a rate is missing."""
        specs = traces.parse_trace(self.arrival)
        if self.rate_rps is None:
            return self.arrival
        parts, filled = [], False
        for part, spec in zip(self.arrival.split("+"), specs, strict=True):
            if spec.kind in _RATE_KINDS and "rate" not in dict(spec.params):
                sep = "," if spec.params else ""
                part = f"{part.strip()}{sep if ':' in part else ':'}rate={self.rate_rps:g}"
                filled = True
            parts.append(part.strip())
        if not filled:
            raise ValueError(f"trace {self.arrival!r} sets its own rates: leave rate_rps out")
        return "+".join(parts)

    def offsets(self) -> np.ndarray:
        """Intended send times of the open loop: seconds from the start, warm-up included."""
        assert self.mode == "open"
        total = self.warmup_s + self.duration_s
        if not self.is_trace:
            assert self.rate_rps is not None
            return arrival_offsets(self.rate_rps, total, self.arrival, self.seed)
        offsets = np.asarray(traces.generate(self.trace_text(), total, self.seed), np.float64)
        if offsets.size > MAX_SCHEDULED:
            raise ValueError(f"trace {self.arrival!r} schedules {offsets.size:,} requests, more "
                             f"than {MAX_SCHEDULED:,}; split the run into shorter ones")
        return offsets[(offsets >= 0) & (offsets < total)]

    def headers(self) -> tuple[tuple[str, str], ...]:
        """The key of requests without a tenant, and of the run's own calls (model metadata,
        ``/metrics``): ``api_key``, else the first tenant's."""
        if self.api_key is None:
            return self.tenants.tenants[0].headers() if self.tenants is not None else ()
        return (("Authorization", f"Bearer {self.api_key}"),)


@dataclass(frozen=True)
class LoadProgress:
    """A snapshot passed to the progress callback about every quarter second."""

    elapsed_s: float
    total_s: float
    sent: int
    completed: int
    ok: int
    in_flight: int


ProgressCallback = Callable[[LoadProgress], None]


def arrival_offsets(rate_rps: float, duration_s: float, arrival: str, seed: int) -> np.ndarray:
    """Intended send times (seconds from the start, sorted, all < ``duration_s``).

    ``poisson``: exponential gaps of mean ``1/rate_rps`` from a generator seeded by ``seed``;
    ``constant``: evenly spaced.
    """
    if arrival == "constant":
        return np.arange(math.ceil(rate_rps * duration_s)) / rate_rps
    if arrival != "poisson":
        raise ValueError(f"unknown arrival process {arrival!r}")
    rng = np.random.default_rng(seed)
    expected = rate_rps * duration_s
    chunks: list[np.ndarray] = []
    last = 0.0
    while last < duration_s:
        gaps = rng.exponential(1.0 / rate_rps, size=int(expected + 6 * math.sqrt(expected) + 16))
        times = last + np.cumsum(gaps)
        chunks.append(times)
        last = float(times[-1])
    offsets = np.concatenate(chunks)
    return offsets[offsets < duration_s]
