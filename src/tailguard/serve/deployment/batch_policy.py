"""How many rows a batch may take: a pure function of the service model, the fleet and the load.

Three published answers, and what we took from each:

- **Nexus** (SOSP '19) sizes a batch so that two fit the SLO: a request arriving just as a
  batch starts waits for it, then runs in its own, ``2 * s(k) <= SLO``. Right for one replica
  with no admission control, but static: it ignores that with ``R`` staggered replicas the
  next one frees after ``s(k)/R`` on average, and that admission keeps the queue short.
- **Clipper** (NSDI '17) finds the size by AIMD on measured batch latency: grow by one while
  under the objective, cut by a factor when over. It needs no model and explores, but it
  targets the batch time alone, not the wait before it, and it oscillates.
- **Clockwork** (OSDI '20) predicts every batch's time exactly and picks, per batch, the
  largest size whose requests all meet their deadlines, dropping those that cannot.

tailguard's rule, :func:`batch_cap`:

1. **The SLO size** (Nexus, generalised to ``R`` replicas): the largest ``k`` whose own batch
   plus the wait for the next free replica fits ``batch_slo_share`` of the objective,
   ``s(k) * (1 + 1/R) <= fraction * p99``. With one replica and the default 0.7 this is the
   0.35 of the objective measured best on ``benchmarks/noisy_neighbor.py``; with two it is
   0.47. Admission (Clockwork's role) then admits only what this size can finish in time.
2. **Exploration** (Clipper's additive increase): the fit has no batching gain until it has
   seen a spread of sizes — through the origin, a lone 20 ms row predicts 40 ms for two and
   the cap stays at one forever (the default ``minilm`` served every batch at one row this
   way, a third of its capacity). While the largest size measured runs within the budget,
   the cap may go one row past it; the batch that measures it gives the fit its spread, and
   a size measured over budget is the decrease.
3. **A backlog the SLO size cannot drain** within the objective (a critical flood, which is
   never shed, or admission turned off) is late anyway: a request waiting in an unbounded
   queue misses its SLO far worse than one in a bigger batch. The cap grows to the smallest
   size that drains the queued rows within one objective (``R * k / s(k) * p99 >= rows``),
   or to ``max_batch_size``, the most throughput there is. Admission keeps the queue within
   what the SLO size drains, so under admitted load the cap stays at rule 1 or 2.

At light load the cap rarely binds: a batch takes what is queued, so batches stay small and
latency low; ``max_wait_ms`` bounds the wait for more rows. Measurements:
``benchmarks/serve_minilm.py`` (the built-in default deployment) and
``benchmarks/noisy_neighbor.py``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from tailguard.serve.deployment.estimates import ServiceFit

__all__ = ["BatchPolicy", "BatchView", "batch_cap"]


@dataclass(frozen=True, slots=True)
class BatchPolicy:
    """A deployment's batching settings: ``max_batch_size`` rows at most; with an objective
    ``slo_s``, sized by :func:`batch_cap` with ``slo_fraction`` of it."""

    max_batch_size: int
    slo_s: float | None = None
    slo_fraction: float = 0.7

    def __post_init__(self) -> None:
        if self.max_batch_size < 1:
            raise ValueError(f"max_batch_size must be >= 1, got {self.max_batch_size}")
        if self.slo_s is not None and not self.slo_s > 0:
            raise ValueError(f"slo_s must be > 0, got {self.slo_s}")
        if not 0 < self.slo_fraction <= 1:
            raise ValueError(f"slo_fraction must be in (0, 1], got {self.slo_fraction}")


@dataclass(frozen=True, slots=True)
class BatchView:
    """What the cap depends on, now: the service fit (None while unmeasured), the ready
    replicas and the rows queued."""

    service: ServiceFit | None
    ready_replicas: int
    queued_rows: int = 0


def slo_budget_s(policy: BatchPolicy, replicas: int) -> float | None:
    """Seconds one batch may take under rule 1 (None without an objective)."""
    if policy.slo_s is None:
        return None
    return policy.slo_fraction * policy.slo_s / (1.0 + 1.0 / max(1, replicas))


def batch_cap(view: BatchView, policy: BatchPolicy) -> int:
    """Rows the next batch may take (see the module docstring); in [1, max_batch_size]."""
    cap = policy.max_batch_size
    fit = view.service
    budget = slo_budget_s(policy, view.ready_replicas)
    if budget is None or policy.slo_s is None or fit is None:
        return cap
    fixed, per_row = fit.fixed_s, fit.per_row_s
    k = cap if per_row <= 1e-12 else int(min(cap, (budget - fixed) / per_row + 1e-9))
    # The largest size's mean time does not age: after a slowdown, batches of that size
    # measure it again, over budget, and the probe stops.
    largest = fit.largest
    if largest is not None and largest[1] <= budget and largest[0] >= k:
        k = largest[0] + 1  # probe one row past the largest size that ran within budget
    k = max(1, min(cap, k))
    if k == cap or fixed <= 0:
        return k  # without a fixed cost, bigger batches drain no faster
    replicas = max(1, view.ready_replicas)
    drained = replicas * k * policy.slo_s / fit.seconds(k)
    if view.queued_rows <= drained:
        return k
    spare = replicas * policy.slo_s - view.queued_rows * per_row
    if spare <= 0:
        return cap
    return max(k, min(cap, math.ceil(view.queued_rows * fixed / spare)))
