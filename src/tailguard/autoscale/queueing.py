"""Queueing formulas behind the ``slo`` policy: Erlang B/C and a batching M/G/c model.

References:

* Erlang C (M/M/c): the probability an arrival waits is ``C(c, A)`` and the waiting time
  tail is ``P(Wq > t) = C(c, A) * exp(-(c*mu - lambda) * t)`` (Kleinrock, *Queueing Systems*
  Vol. 1, section 3.5). Erlang B is computed in log space from the Poisson distribution,
  ``B(c, A) = pmf(c; A) / cdf(c; A)``, which stays stable for thousands of servers;
  ``C = c*B / (c - A*(1 - B))``.
* M/G/c (and G/G/c) by the Allen-Cunneen approximation: scale the M/M/c wait by
  ``(ca2 + cs2) / 2``, the mean of the squared coefficients of variation of inter-arrival
  and service times (Allen, *Probability, Statistics and Queueing Theory*, 1990).

Batching: a replica that serves a batch of ``k`` rows in ``s(k)`` seconds is a server of
*batches* with rate ``lambda / k`` and service time ``s(k)`` (capacity ``k / s(k)`` rows/s).
A dynamic batcher takes what is queued, so the load picks the batch size; we predict the
latency quantile for every feasible ``k`` and keep the smallest, which is the batch size at
which the queue settles. A request's latency is its queueing wait plus the time to gather its
batch (``(k - 1) / lambda``), plus any configured batch wait, plus ``s(k)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from tailguard.autoscale.snapshot import ServiceProfile

__all__ = [
    "LatencyPrediction",
    "erlang_b",
    "erlang_c",
    "min_replicas_for_latency",
    "min_replicas_for_utilization",
    "mmc_wait_quantile_s",
    "predict_latency_quantile",
]


@lru_cache(maxsize=8)
def _log_factorials(n: int) -> np.ndarray:
    """``log(j!)`` for ``j = 0..n`` (cached per power-of-two size)."""
    out = np.zeros(n + 1)
    if n:
        out[1:] = np.cumsum(np.log(np.arange(1, n + 1, dtype=np.float64)))
    return out


def erlang_b(servers: int, offered_load: float) -> float:
    """Blocking probability of M/M/c/c with ``offered_load = lambda / mu`` erlangs."""
    if servers < 0:
        raise ValueError("servers must be >= 0")
    if offered_load <= 0:
        return 0.0 if servers > 0 else 1.0
    size = 1 << max(servers, 1).bit_length()
    logfact = _log_factorials(size)[: servers + 1]
    j = np.arange(servers + 1, dtype=np.float64)
    logpmf = j * math.log(offered_load) - logfact
    peak = float(logpmf.max())
    return float(math.exp(logpmf[-1] - peak) / np.exp(logpmf - peak).sum())


def erlang_c(servers: int, offered_load: float) -> float:
    """Probability that an arrival waits in M/M/c; 1.0 when the queue is unstable."""
    if servers <= 0 or offered_load >= servers:
        return 1.0
    if offered_load <= 0:
        return 0.0
    b = erlang_b(servers, offered_load)
    return servers * b / (servers - offered_load * (1.0 - b))


def mmc_wait_quantile_s(
    arrival_rps: float, service_s: float, servers: int, quantile: float = 0.99
) -> float:
    """The ``quantile`` of the M/M/c waiting time in queue (inf when unstable)."""
    if not 0.0 < quantile < 1.0:
        raise ValueError(f"quantile must be in (0, 1), got {quantile}")
    if arrival_rps <= 0:
        return 0.0
    load = arrival_rps * service_s
    if servers <= 0 or load >= servers:
        return math.inf
    c = erlang_c(servers, load)
    tail = 1.0 - quantile
    if c <= tail:
        return 0.0
    return math.log(c / tail) / (servers / service_s - arrival_rps)


@dataclass(frozen=True)
class LatencyPrediction:
    """Predicted latency ``quantile`` (seconds) and the batch size and utilisation behind it."""

    latency_s: float
    batch_size: int
    utilization: float


def predict_latency_quantile(
    arrival_rps: float,
    replicas: int,
    profile: ServiceProfile,
    quantile: float = 0.99,
    arrival_cv: float = 1.0,
    batch_wait_s: float = 0.0,
) -> LatencyPrediction:
    """Predict the request-latency ``quantile`` with ``replicas`` batching replicas.

    Returns ``latency_s = inf`` when no batch size keeps the queue stable.
    """
    kmax = profile.max_batch_size
    if arrival_rps <= 0:
        return LatencyPrediction(profile.service_time_s(1), 1, 0.0)
    if replicas <= 0:
        return LatencyPrediction(math.inf, kmax, math.inf)
    ca2 = arrival_cv * arrival_cv
    gather_wait = min(batch_wait_s, (kmax - 1) / arrival_rps)
    overload = arrival_rps * profile.service_time_s(kmax) / (kmax * replicas)
    best = LatencyPrediction(math.inf, kmax, overload)
    for k in range(1, kmax + 1):
        s_k = profile.service_time_s(k)
        batch_rate = arrival_rps / k
        util = batch_rate * s_k / replicas
        if util >= 1.0:
            continue
        # Batches of k iid inter-arrivals: the squared CV of their sum shrinks by k.
        factor = (ca2 / k) / 2.0
        wait = factor * mmc_wait_quantile_s(batch_rate, s_k, replicas, quantile)
        latency = wait + (k - 1) / arrival_rps + gather_wait + s_k
        if latency < best.latency_s:
            best = LatencyPrediction(latency, k, util)
    return best


def min_replicas_for_latency(
    arrival_rps: float,
    profile: ServiceProfile,
    target_s: float,
    quantile: float = 0.99,
    arrival_cv: float = 1.0,
    batch_wait_s: float = 0.0,
    max_replicas: int = 100_000,
) -> int:
    """Fewest replicas whose predicted latency ``quantile`` is at most ``target_s``.

    The prediction is non-increasing in the replica count, so this gallops up from the
    stability bound and bisects. Returns ``max_replicas`` when even that is not enough.
    """
    if arrival_rps <= 0:
        return 0

    def meets(c: int) -> bool:
        pred = predict_latency_quantile(arrival_rps, c, profile, quantile, arrival_cv, batch_wait_s)
        return pred.latency_s <= target_s

    kmax = profile.max_batch_size
    lo = max(1, math.floor(arrival_rps * profile.service_time_s(kmax) / kmax))
    if lo >= max_replicas:
        return max_replicas
    if meets(lo):
        return lo
    step = 1
    hi = lo + step
    while not meets(hi):
        if hi >= max_replicas:
            return max_replicas
        lo = hi
        step *= 2
        hi = min(lo + step, max_replicas)
    # invariant: meets(hi) and not meets(lo)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if meets(mid):
            hi = mid
        else:
            lo = mid
    return hi


def min_replicas_for_utilization(
    arrival_rps: float, profile: ServiceProfile, ceiling: float
) -> int:
    """Fewest replicas that keep each one busy at most ``ceiling`` of the time at max batch."""
    if not 0.0 < ceiling <= 1.0:
        raise ValueError(f"utilization ceiling must be in (0, 1], got {ceiling}")
    if arrival_rps <= 0:
        return 0
    return math.ceil(arrival_rps / (profile.capacity_rps() * ceiling) - 1e-9)
