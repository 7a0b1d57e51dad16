"""Who is overloading a deployment: each tenant's recent demand against its max-min fair share.

Every request that passes its tenant's own quotas (rate limit, concurrency cap) adds its rows
to the tenant's demand — admitted or shed, since a tenant turned away for load is still asking
— as an exponentially weighted rate (rows per second, time constant ``tau_s``). Capacity is
shared max-min fairly (water-filling): higher classes take what they ask for first; within a
class, a tenant asking less than its weighted share of what is left gets all it asks for, and
the rest is split again by weight among the others. A tenant whose demand fits its allocation
is *within its share*: it is not the cause of an overload, whatever its queue looks like at
this instant. A tenant over its share has its backlog drained at its allocation, not at the
deployment's full rate — the lighter tenants' future arrivals go ahead of it in the fair
queue.

The capacity is the service model's estimate of full batches on every replica, or what the
replicas are measured to serve (every tenant's served rows per second), whichever is larger:
saturated, the replicas serve their capacity, whatever a model fitted on noisy batch times
says. Likewise a backlogged tenant's rows drain at least as fast as it is measured to be
served::

    d = Demand(tau_s=1.0)
    d.asked(Priority.STANDARD, "a", weight=1.0, rows=1, now=t)      # at admission
    d.served(Priority.STANDARD, "a", rows=8, now=t)                  # at dispatch
    share = d.share(Priority.STANDARD, "a", weight=1.0, capacity_rows_per_s=400.0, now=t)
    share.within, share.rows_per_s
"""

from __future__ import annotations

import math
from typing import NamedTuple

from tailguard.serve.gate.tenants import Priority

__all__ = ["Demand", "FairShare"]

_IDLE_ROWS_PER_S = 1e-3  # below this a tenant no longer counts as asking


class FairShare(NamedTuple):
    """A tenant's place in the max-min fair allocation of a deployment's capacity.

    ``within``: its demand fits its allocation, up to the :class:`Demand`'s ``tolerance`` (the
    capacity and the demands are estimates: a tenant near its share must not flip between
    the two verdicts on their noise). ``rows_per_s``: the rate its backlog can count on — its
    weighted share of what the others leave (the water level times its weight) or its measured
    service rate, whichever is larger; when every demand fits, its own demand plus the spare
    capacity. Never above ``capacity_rows_per_s``, the capacity that was shared.
    """

    within: bool
    rows_per_s: float
    demand_rows_per_s: float
    capacity_rows_per_s: float


class _Rate:
    """An exponentially weighted rate: ``value`` rows decayed to time ``at``; rate = value/tau."""

    __slots__ = ("at", "value")

    def __init__(self, now: float) -> None:
        self.value = 0.0
        self.at = now

    def add(self, rows: int, now: float, tau_s: float) -> None:
        self.value = self.decayed(now, tau_s) + max(0, rows)
        self.at = max(self.at, now)

    def decayed(self, now: float, tau_s: float) -> float:
        dt = now - self.at
        return self.value if dt <= 0 else self.value * math.exp(-dt / tau_s)


class _Tenant:
    __slots__ = ("asked", "served", "weight")

    def __init__(self, weight: float, now: float) -> None:
        self.asked = _Rate(now)
        self.served = _Rate(now)
        self.weight = weight


class Demand:
    """Per-tenant demand on one deployment; O(tenants) per :meth:`share`, O(1) otherwise."""

    def __init__(self, tau_s: float = 0.5, tolerance: float = 1.25) -> None:
        if not tau_s > 0:
            raise ValueError(f"tau_s must be > 0, got {tau_s}")
        if not tolerance >= 1.0:
            raise ValueError(f"tolerance must be >= 1, got {tolerance}")
        self.tau_s = tau_s
        self.tolerance = tolerance
        self._tenants: dict[tuple[int, str], _Tenant] = {}
        self._askers: set[tuple[int, str]] = set()

    def asked(self, priority: Priority, tenant: str, *, weight: float, rows: int,
              now: float) -> None:
        """Count ``rows`` asked for by ``tenant`` at ``now`` (which must not go backwards)."""
        if not 0 < weight < math.inf:
            raise ValueError(f"weight must be a positive finite number, got {weight}")
        t = self._tenant(priority, tenant, weight, now)
        self._askers.add((priority.rank, tenant))
        t.weight = weight
        t.asked.add(rows, now, self.tau_s)

    def served(self, priority: Priority, tenant: str, *, rows: int, now: float) -> None:
        """Count ``rows`` of ``tenant`` sent to a replica at ``now``."""
        self._tenant(priority, tenant, 1.0, now).served.add(rows, now, self.tau_s)

    def asked_rows_per_s(self, priority: Priority, tenant: str, now: float) -> float:
        t = self._tenants.get((priority.rank, tenant))
        return 0.0 if t is None else t.asked.decayed(now, self.tau_s) / self.tau_s

    def served_rows_per_s(self, priority: Priority, tenant: str, now: float) -> float:
        t = self._tenants.get((priority.rank, tenant))
        return 0.0 if t is None else t.served.decayed(now, self.tau_s) / self.tau_s

    def alone(self, priority: Priority, tenant: str) -> bool:
        """True when no other tenant has ever asked anything of this deployment (rows served
        to a caller outside admission, an operator's, do not count)."""
        askers = self._askers
        return not askers or (len(askers) == 1 and (priority.rank, tenant) in askers)

    def share(self, priority: Priority, tenant: str, *, weight: float,
              capacity_rows_per_s: float, now: float) -> FairShare:
        """Where ``tenant`` stands in the max-min fair split of the capacity: the larger of
        ``capacity_rows_per_s`` (an estimate) and the measured total served rate."""
        if not 0 < weight < math.inf:
            raise ValueError(f"weight must be a positive finite number, got {weight}")
        tau = self.tau_s
        rank = priority.rank
        own = own_served = higher = total_served = 0.0
        flows: list[tuple[float, float]] = []  # (demand, weight) of the others in the class
        for (r, name), t in self._tenants.items():
            served = t.served.decayed(now, tau) / tau
            total_served += served
            demand = t.asked.decayed(now, tau) / tau
            if r == rank and name == tenant:
                own, own_served = demand, served
            elif demand < _IDLE_ROWS_PER_S or r > rank:
                continue
            elif r < rank:
                higher += demand  # a higher class is served first, all it asks for
            else:
                flows.append((demand, t.weight))
        capacity = max(0.0, capacity_rows_per_s, total_served)
        left = max(0.0, capacity - higher)
        # Water-filling: satisfy the flows asking least per unit of weight while they fit.
        flows.append((own, weight))
        flows.sort(key=lambda f: f[0] / f[1])
        total_weight = sum(w for _, w in flows)
        for demand, w in flows:
            level = left / total_weight
            if demand > level * w:  # this flow and every later one is capped at the level
                allocation = min(capacity, max(level * weight, own_served))
                return FairShare(own <= allocation * self.tolerance, allocation, own, capacity)
            left -= demand
            total_weight -= w
        return FairShare(True, min(capacity, own + left), own, capacity)

    def _tenant(self, priority: Priority, tenant: str, weight: float, now: float) -> _Tenant:
        key = (priority.rank, tenant)
        t = self._tenants.get(key)
        if t is None:
            t = self._tenants[key] = _Tenant(weight, now)
        return t
