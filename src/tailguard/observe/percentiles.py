"""The one percentile of the project: nearest rank, ``q`` in percent.

**Definition.** The ``q``-th percentile of ``n`` samples is the smallest sample ``x`` such that
at least ``q`` % of the samples are ``<= x``: the sample of rank ``ceil(q / 100 * n)`` in
ascending order (rank 1 for ``q = 0``). It is numpy's ``method="inverted_cdf"`` and the
textbook "nearest rank" — computed here with exact ranks where numpy is off by one from
floating-point error (``np.percentile(1..1000, 99.9, method="inverted_cdf")`` is 1000, not
999: ``99.9 * 1000 / 100`` lands one ulp above 999).

**Why this one.** Every value it reports is a latency that some request really had, and it
never reads below a sample that fewer than ``q`` % of requests beat; numpy's default linear
interpolation invents values between two samples (P99 of 1..100 is 99.01) and, on the few
dozen completions of a short window, moves the tail by a whole sample's gap. The simulator,
the live recorder the autoscaler reads, the load reports, chaos runs and model profiles all
call this module, so the P99 a policy is tuned on in the simulator is the P99 measured live.

**Convention.** ``q`` is in percent, ``0 <= q <= 100`` (``P99`` is ``q = 99``), as in
``np.percentile``; never a fraction. An empty input has no percentile: ``None`` (NaN per group
in :func:`grouped_percentiles`). Samples must not be NaN; ``inf`` is a sample like any other
(chaos runs count a failed request as infinitely late).

Usage::

    from tailguard.observe.percentiles import percentile, percentiles

    p99 = percentile(latencies_s, 99)                    # float, or None when empty
    p50, p99, p999 = percentiles(latencies_s, (50, 99, 99.9))

:func:`grouped_percentiles` is the vectorised twin for many groups at once (a load timeline's
per-second buckets): one sort for all groups, the same ranks, tested to agree with
:func:`percentiles` group by group.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

__all__ = ["grouped_percentiles", "percentile", "percentiles"]

# q * n / 100 lands a few ulps above an integer rank (99.9 % of 1000 -> 999.0000000000001);
# shrinking by this relative slack before the ceiling gives the exact rank for any n < 1e12.
_RANK_SLACK = 1e-12


def _check(qs: Sequence[float]) -> None:
    for q in qs:
        if not 0.0 <= q <= 100.0:
            raise ValueError(f"percentiles are in percent, 0 <= q <= 100; got {q}")


def _ranks(q: npt.ArrayLike, n: npt.ArrayLike) -> npt.NDArray[np.int64]:
    """1-based nearest ranks ``ceil(q/100 * n)``, clipped to ``[1, n]`` (broadcasts)."""
    raw = np.ceil(np.multiply(q, n) / 100.0 * (1.0 - _RANK_SLACK))
    return np.clip(raw, 1, np.maximum(n, 1)).astype(np.int64)


def percentiles(values: npt.ArrayLike, qs: Sequence[float]) -> list[float | None]:
    """Nearest-rank percentiles (``qs`` in percent) of ``values``; ``None`` each when empty.

    One partial sort (``np.partition``, linear time) for all of ``qs``.
    """
    _check(qs)
    arr = np.asarray(values, dtype=np.float64).ravel()
    n = int(arr.size)
    if n == 0:
        return [None for _ in qs]
    ranks = _ranks(np.asarray(qs, dtype=np.float64), n).tolist()
    ordered = np.partition(arr, sorted({r - 1 for r in ranks}))
    return [float(ordered[r - 1]) for r in ranks]


def percentile(values: npt.ArrayLike, q: float) -> float | None:
    """The nearest-rank ``q``-th percentile (``q`` in percent) of ``values``; None if empty."""
    return percentiles(values, (q,))[0]


def grouped_percentiles(
    group: npt.NDArray[np.integer], values: npt.ArrayLike, n_groups: int,
    qs: Sequence[float],
) -> list[npt.NDArray[np.float64]]:
    """Nearest-rank percentiles of ``values`` within each of ``n_groups`` groups.

    ``group[i]`` is the group of ``values[i]`` (``0 <= group < n_groups``; a negative group
    drops the sample). One array per ``q`` (in percent), ``n_groups`` long, NaN for an empty
    group. One lexsort for every group and ``q``: no Python loop over samples or groups.
    """
    _check(qs)
    vals = np.asarray(values, dtype=np.float64).ravel()
    grp = np.asarray(group).ravel()
    keep = grp >= 0
    g, v = grp[keep], vals[keep]
    order = np.lexsort((v, g))
    g, v = g[order], v[order]
    edges = np.arange(n_groups)
    starts = np.searchsorted(g, edges, side="left")
    counts = (np.searchsorted(g, edges, side="right") - starts).astype(np.int64)
    out: list[npt.NDArray[np.float64]] = []
    for q in qs:
        pos = np.clip(starts + _ranks(q, counts) - 1, 0, max(v.size - 1, 0))
        picked = v[pos] if v.size else np.zeros(n_groups)
        out.append(np.where(counts > 0, picked, np.nan))
    return out
