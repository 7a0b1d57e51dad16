"""Distribution comparisons on histograms and category counts — pure functions.

Both sides are binned with the same fixed edges (see :mod:`.stats`), so shards, splits and a
reference dataset compare bin for bin without keeping any rows.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

PSI_BINS = 10
_EPS = 1e-4  # a share of zero would make the PSI infinite; this floor is the usual fix


def _coarse(base: np.ndarray, other: np.ndarray, bins: int) -> tuple[np.ndarray, np.ndarray]:
    """Merge fine bins into about ``bins`` groups holding equal shares of ``base``."""
    cum = np.cumsum(base) / max(base.sum(), 1)
    group = np.minimum((cum * bins - 1e-9).astype(np.int64).clip(0), bins - 1)
    b = np.bincount(group, weights=base, minlength=bins)
    o = np.bincount(group, weights=other, minlength=bins)
    keep = (b > 0) | (o > 0)
    return b[keep], o[keep]


def psi(base: np.ndarray, other: np.ndarray, bins: int = PSI_BINS) -> float:
    """Population stability index of ``other`` against ``base`` (histograms, same edges).

    Rule of thumb: < 0.1 stable, 0.1-0.25 a moderate shift, > 0.25 a large one.
    """
    base, other = np.asarray(base, float), np.asarray(other, float)
    if base.sum() == 0 or other.sum() == 0:
        return 0.0
    b, o = _coarse(base, other, bins)
    p = np.maximum(b / b.sum(), _EPS)
    q = np.maximum(o / o.sum(), _EPS)
    return float(np.sum((q - p) * np.log(q / p)))


def ks(base: np.ndarray, other: np.ndarray) -> float:
    """Kolmogorov-Smirnov distance between two histograms with the same edges (the largest
    gap between the cumulative shares at a bin edge; exact up to the bin width)."""
    base, other = np.asarray(base, float), np.asarray(other, float)
    if base.sum() == 0 or other.sum() == 0:
        return 0.0
    return float(np.max(np.abs(np.cumsum(base) / base.sum() - np.cumsum(other) / other.sum())))


def share_change(base: Mapping[str, int], other: Mapping[str, int]) -> tuple[float, str | None]:
    """The largest absolute change of one category's share of the rows, and that category."""
    nb, no = sum(base.values()), sum(other.values())
    if nb == 0 or no == 0:
        return 0.0, None
    worst, which = 0.0, None
    for key in sorted(set(base) | set(other)):
        change = abs(base.get(key, 0) / nb - other.get(key, 0) / no)
        if change > worst:
            worst, which = change, key
    return worst, which
