"""What a load run is asked to do: :class:`LoadSpec`, progress snapshots, arrival times."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

PROTOCOLS = ("v2", "openai")
ARRIVALS = ("poisson", "constant")
# Open-loop schedules live in memory (about 40 bytes a request): cap them.
MAX_SCHEDULED = 20_000_000


@dataclass(frozen=True)
class LoadSpec:
    """What to run. Give exactly one of ``concurrency`` (closed loop) or ``rate_rps`` (open).

    ``bodies`` are request bodies sent round-robin (e.g. from ``--payloads``); ``inputs`` are
    ``--input`` options; with neither, a known model's default body or one generated from the
    server's model metadata is used (see :mod:`tailguard.ops.payloads`).
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

    def __post_init__(self) -> None:
        if (self.concurrency is None) == (self.rate_rps is None):
            raise ValueError("give exactly one of concurrency (closed loop) or rate_rps (open)")
        if self.concurrency is not None and self.concurrency < 1:
            raise ValueError(f"concurrency must be >= 1, got {self.concurrency}")
        if self.rate_rps is not None and not (0 < self.rate_rps < math.inf):
            raise ValueError(f"rate_rps must be a positive number, got {self.rate_rps}")
        if self.protocol not in PROTOCOLS:
            raise ValueError(f"protocol must be one of {PROTOCOLS}, got {self.protocol!r}")
        if self.arrival not in ARRIVALS:
            raise ValueError(f"arrival must be one of {ARRIVALS}, got {self.arrival!r}")
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
        if self.max_connections < 1:
            raise ValueError(f"max_connections must be >= 1, got {self.max_connections}")

    @property
    def mode(self) -> str:
        return "closed" if self.concurrency is not None else "open"

    def headers(self) -> tuple[tuple[str, str], ...]:
        if self.api_key is None:
            return ()
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
