"""Arrival traces: numpy arrays of sorted arrival times (seconds) in ``[0, duration_s)``.

Each generator is a plain function of its parameters, a duration and a
``numpy.random.Generator``, so the simulator and the load generator share them. A TRACE
string names one, or a superposition with ``+``::

    constant:rate=100                         evenly spaced
    poisson:rate=200                          Poisson process
    gamma:rate=200,cv=3                       renewal process, Gamma inter-arrivals of CV 3
    mmpp:low=50,high=500,switch=0.01          2-state Markov-modulated Poisson (switch = 1/s)
    diurnal:mean=200,amp=0.8,period=3600      Poisson with rate mean*(1 + amp*sin(2 pi t/period))
    spike:base=100,peak=800,at=600,width=60   Poisson; peak rate during [at, at + width)
    step:rates=100/400/100,every=300          Poisson; rate changes every `every` seconds
    csv:path.csv[,format=auto|timestamps|counts|azure][,spread=poisson|uniform][,scale=1]
    gamma:rate=200,cv=3+spike:base=0,peak=600,at=900,width=60

CSV formats: ``timestamps`` (one column of arrival times in seconds), ``counts`` (one column
of invocations per minute), ``azure`` (Azure Functions 2019 trace: one row per function, a
column per minute named ``1``..``1440``; rows are summed). Per-minute counts are spread over
each minute uniformly (exactly that many) or as a Poisson process of that mean.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = [
    "TraceSpec",
    "constant",
    "from_csv",
    "gamma",
    "generate",
    "mmpp",
    "parse_trace",
    "piecewise_poisson",
    "poisson",
    "sinusoid",
    "spike",
    "step",
]

Array = np.ndarray


def _check(duration_s: float, **rates: float) -> None:
    if duration_s <= 0:
        raise ValueError(f"duration_s must be > 0, got {duration_s}")
    for name, value in rates.items():
        if value < 0 or not math.isfinite(value):
            raise ValueError(f"{name} must be a finite number >= 0, got {value}")


def constant(rate: float, duration_s: float, rng: np.random.Generator | None = None) -> Array:
    """Evenly spaced arrivals, the first at ``0.5 / rate``."""
    _check(duration_s, rate=rate)
    if rate == 0:
        return np.empty(0)
    return (np.arange(math.floor(rate * duration_s)) + 0.5) / rate


def poisson(rate: float, duration_s: float, rng: np.random.Generator) -> Array:
    """A homogeneous Poisson process: Poisson count, uniform sorted times."""
    _check(duration_s, rate=rate)
    n = rng.poisson(rate * duration_s)
    return np.sort(rng.uniform(0.0, duration_s, n))


def gamma(rate: float, cv: float, duration_s: float, rng: np.random.Generator) -> Array:
    """A renewal process with Gamma inter-arrivals of mean ``1/rate`` and CV ``cv``."""
    _check(duration_s, rate=rate, cv=cv)
    if rate == 0:
        return np.empty(0)
    if cv == 0:
        return constant(rate, duration_s)
    shape = 1.0 / (cv * cv)
    scale = 1.0 / (rate * shape)
    chunks: list[Array] = []
    t0 = rng.uniform(0.0, 1.0 / rate)  # a random phase, so the trace does not start in sync
    expected = rate * duration_s
    while t0 < duration_s:
        n = max(1024, int(expected * 1.1 + 6 * math.sqrt(expected * (1 + cv * cv))))
        times = t0 + np.cumsum(rng.gamma(shape, scale, n))
        chunks.append(times)
        t0 = float(times[-1])
    out = np.concatenate(chunks) if chunks else np.empty(0)
    return out[out < duration_s]


def piecewise_poisson(
    breaks_s: Array | list[float],
    rates: Array | list[float],
    duration_s: float,
    rng: np.random.Generator,
) -> Array:
    """Poisson with rate ``rates[i]`` on ``[breaks_s[i], breaks_s[i+1])`` (last one to the end)."""
    starts = [float(b) for b in breaks_s]
    rs = [float(r) for r in rates]
    if len(starts) != len(rs) or not starts or starts[0] != 0.0:
        raise ValueError("need one rate per break, and the first break at 0")
    _check(duration_s, **{f"rate{i}": r for i, r in enumerate(rs)})
    ends = [*starts[1:], duration_s]
    parts = []
    for a, b, r in zip(starts, ends, rs, strict=True):
        b = min(b, duration_s)
        if b > a and r > 0:
            n = rng.poisson(r * (b - a))
            parts.append(np.sort(rng.uniform(a, b, n)))
    return np.concatenate(parts) if parts else np.empty(0)


def sinusoid(
    mean: float, amp: float, period_s: float, duration_s: float, rng: np.random.Generator
) -> Array:
    """Poisson with rate ``mean * (1 + amp * sin(2 pi t / period_s))``, by thinning."""
    _check(duration_s, mean=mean)
    if not 0 <= amp <= 1 or period_s <= 0:
        raise ValueError("need 0 <= amp <= 1 and period > 0")
    peak = mean * (1 + amp)
    candidates = poisson(peak, duration_s, rng)
    rate = mean * (1 + amp * np.sin(2 * np.pi * candidates / period_s))
    keep = rng.uniform(0.0, peak, candidates.size) < rate
    return candidates[keep]


def spike(
    base: float,
    peak: float,
    at_s: float,
    width_s: float,
    duration_s: float,
    rng: np.random.Generator,
) -> Array:
    """Poisson at ``base``, and at ``peak`` during ``[at_s, at_s + width_s)``."""
    if at_s <= 0:
        return piecewise_poisson([0.0, width_s], [peak, base], duration_s, rng)
    return piecewise_poisson([0.0, at_s, at_s + width_s], [base, peak, base], duration_s, rng)


def step(rates: list[float], every_s: float, duration_s: float, rng: np.random.Generator) -> Array:
    """Poisson whose rate moves through ``rates``, one every ``every_s`` (the last holds)."""
    if every_s <= 0:
        raise ValueError("every must be > 0")
    return piecewise_poisson([i * every_s for i in range(len(rates))], rates, duration_s, rng)


def mmpp(
    low: float, high: float, switch_per_s: float, duration_s: float, rng: np.random.Generator
) -> Array:
    """Two-state Markov-modulated Poisson: exponential sojourns of mean ``1/switch_per_s``."""
    _check(duration_s, low=low, high=high, switch=switch_per_s)
    if switch_per_s == 0:
        return poisson(low, duration_s, rng)
    breaks = [0.0]
    rates = [low if rng.uniform() < 0.5 else high]
    t = 0.0
    while True:
        t += rng.exponential(1.0 / switch_per_s)
        if t >= duration_s:
            break
        breaks.append(t)
        rates.append(high if rates[-1] == low else low)
    return piecewise_poisson(breaks, rates, duration_s, rng)


def _spread(counts: Array, bucket_s: float, how: str, rng: np.random.Generator) -> Array:
    starts = np.arange(counts.size) * bucket_s
    if how == "poisson":
        n = rng.poisson(np.asarray(counts, dtype=np.float64))
    elif how == "uniform":
        n = np.asarray(np.rint(counts), dtype=np.int64)
    else:
        raise ValueError(f"spread must be poisson or uniform, got {how!r}")
    base = np.repeat(starts, n)
    return np.sort(base + rng.uniform(0.0, bucket_s, base.size))


def _read_csv(path: Path, fmt: str) -> tuple[str, Array]:
    with path.open(newline="") as fh:
        rows = [r for r in csv.reader(fh) if r and any(c.strip() for c in r)]
    if not rows:
        raise ValueError(f"{path} is empty")
    header = [c.strip() for c in rows[0]]
    has_header = any(not _is_number(c) for c in header)
    body = rows[1:] if has_header else rows
    if fmt == "auto":
        if has_header and "1" in header and len(header) > 2:
            fmt = "azure"
        elif has_header and header[0].lower() in {"count", "counts", "invocations"}:
            fmt = "counts"
        else:
            fmt = "timestamps"
    if fmt == "azure":
        first = header.index("1") if has_header else 0
        data = np.array([[float(c) for c in r[first:]] for r in body], dtype=np.float64)
        return fmt, data.sum(axis=0)
    return fmt, np.array([float(r[0]) for r in body], dtype=np.float64)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def from_csv(
    path: str | Path,
    duration_s: float,
    rng: np.random.Generator,
    fmt: str = "auto",
    spread: str = "poisson",
    scale: float = 1.0,
) -> Array:
    """Arrivals from a CSV of timestamps, per-minute counts, or an Azure Functions trace."""
    kind, values = _read_csv(Path(path), fmt)
    if kind == "timestamps":
        times = np.sort(values - values.min()) if values.size else values
        if scale != 1.0:
            times = times / scale  # more load: compress time
        return times[times < duration_s]
    if kind not in {"counts", "azure"}:
        raise ValueError(f"unknown csv format {kind!r}: use timestamps, counts or azure")
    times = _spread(values * scale, 60.0, spread, rng)
    return times[times < duration_s]


@dataclass(frozen=True)
class TraceSpec:
    """A parsed TRACE string: ``kind`` and its parameters (strings, checked at generation)."""

    kind: str
    params: tuple[tuple[str, str], ...]
    path: str | None = None

    def generate(self, duration_s: float, rng: np.random.Generator) -> Array:
        p = dict(self.params)
        try:
            return _GENERATORS[self.kind](self, p, duration_s, rng)
        except KeyError as exc:
            raise ValueError(f"trace {self.kind!r} is missing parameter {exc}") from None


def _f(p: dict[str, str], key: str, default: float | None = None) -> float:
    if key not in p:
        if default is None:
            raise KeyError(key)
        return default
    return float(p[key])


_GENERATORS: dict[str, Callable[[TraceSpec, dict[str, str], float, np.random.Generator], Array]] = {
    "constant": lambda s, p, d, rng: constant(_f(p, "rate"), d),
    "poisson": lambda s, p, d, rng: poisson(_f(p, "rate"), d, rng),
    "gamma": lambda s, p, d, rng: gamma(_f(p, "rate"), _f(p, "cv"), d, rng),
    "mmpp": lambda s, p, d, rng: mmpp(_f(p, "low"), _f(p, "high"), _f(p, "switch"), d, rng),
    "diurnal": lambda s, p, d, rng: sinusoid(
        _f(p, "mean"), _f(p, "amp", 0.5), _f(p, "period", 86400.0), d, rng
    ),
    "spike": lambda s, p, d, rng: spike(
        _f(p, "base"), _f(p, "peak"), _f(p, "at"), _f(p, "width", 60.0), d, rng
    ),
    "step": lambda s, p, d, rng: step(
        [float(r) for r in p["rates"].split("/")], _f(p, "every"), d, rng
    ),
    "csv": lambda s, p, d, rng: from_csv(
        s.path or "",
        d,
        rng,
        p.get("format", "auto"),
        p.get("spread", "poisson"),
        _f(p, "scale", 1.0),
    ),
}


# Each trace kind's parameters: a misspelt one (``rat=200``) is an error, never a default.
PARAMETERS: dict[str, tuple[str, ...]] = {
    "constant": ("rate",),
    "poisson": ("rate",),
    "gamma": ("rate", "cv"),
    "mmpp": ("low", "high", "switch"),
    "diurnal": ("mean", "amp", "period"),
    "spike": ("base", "peak", "at", "width"),
    "step": ("rates", "every"),
    "csv": ("format", "spread", "scale"),
}


def parse_trace(text: str) -> list[TraceSpec]:
    """Parse a TRACE string (``+`` superposes traces) into specs; errors say what is wrong."""
    specs = []
    for part in text.split("+"):
        kind, _, rest = part.strip().partition(":")
        kind = kind.strip().lower()
        if kind not in _GENERATORS:
            raise ValueError(
                f"unknown trace {kind!r} in {text!r}: use one of {', '.join(_GENERATORS)}"
            )
        path = None
        items = [x for x in rest.split(",") if x.strip()] if rest else []
        if kind == "csv":
            if not items or "=" in items[0]:
                raise ValueError("csv trace needs a path: csv:trace.csv[,format=...]")
            path, items = items[0].strip(), items[1:]
        params = []
        for item in items:
            key, eq, value = item.partition("=")
            if not eq:
                raise ValueError(f"trace parameter {item!r} in {text!r} is not key=value")
            key = key.strip().lower()
            if key not in PARAMETERS[kind]:
                raise ValueError(f"trace {kind!r} has no parameter {key!r} (in {text!r}); its "
                                 f"parameters are {', '.join(PARAMETERS[kind])}")
            params.append((key, value.strip()))
        specs.append(TraceSpec(kind, tuple(params), path))
    return specs


def generate(text: str, duration_s: float, seed: int = 0) -> Array:
    """Arrival times for the TRACE string ``text`` over ``duration_s``, deterministic in seed."""
    rng = np.random.default_rng(seed)
    parts = [spec.generate(duration_s, rng) for spec in parse_trace(text)]
    if len(parts) == 1:
        return parts[0]
    return np.sort(np.concatenate(parts), kind="stable")
