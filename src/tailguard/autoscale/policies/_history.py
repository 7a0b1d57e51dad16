"""Time-stamped sample histories kept inside policy state (seconds, never ticks)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

Samples = tuple[tuple[float, float], ...]

STATE_VERSION = 1


def push(samples: Samples, now: float, value: float, keep_s: float) -> Samples:
    """Append ``(now, value)`` and drop samples older than ``now - keep_s``."""
    cutoff = now - keep_s
    kept = tuple(s for s in samples if s[0] > cutoff and s[0] <= now)
    return (*kept, (now, float(value)))


def in_window(samples: Samples, now: float, window_s: float) -> list[float]:
    """Values of the samples taken in ``(now - window_s, now]``."""
    cutoff = now - window_s
    return [v for t, v in samples if cutoff < t <= now]


def window_mean(samples: Samples, now: float, window_s: float) -> float:
    values = in_window(samples, now, window_s)
    return sum(values) / len(values) if values else 0.0


def window_max(samples: Samples, now: float, window_s: float) -> float:
    values = in_window(samples, now, window_s)
    return max(values) if values else 0.0


def samples_to_list(samples: Samples) -> list[list[float]]:
    return [[t, v] for t, v in samples]


def samples_from_list(raw: Sequence[Sequence[float]]) -> Samples:
    return tuple((float(t), float(v)) for t, v in raw)


def check_version(raw: dict[str, Any], kind: str) -> None:
    """Refuse state written by another version or another policy: say what to do."""
    if raw.get("kind") != kind:
        raise ValueError(
            f"state is for policy {raw.get('kind')!r}, not {kind!r}: start from a fresh state"
        )
    if raw.get("version") != STATE_VERSION:
        raise ValueError(
            f"{kind} state version {raw.get('version')!r} is not {STATE_VERSION}: "
            "start from a fresh state"
        )
