"""When would a new request finish? Two predictors, pure functions of a load snapshot.

:func:`estimate_finish_batched` is the one admission uses: batch by batch, replica by replica,
as the batcher will run them. :func:`estimate_finish` is a fluid drain of every row at the
replicas' total rate, for when no replica takes batches (all draining, say).
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Sequence

from tailguard.serve.deployment.estimates import ServiceFit

__all__ = ["FLUID_AFTER_BATCHES", "estimate_finish", "estimate_finish_batched", "finish_bound"]

FLUID_AFTER_BATCHES = 64  # per replica: beyond this many batches ahead, the fluid mean


def finish_bound(fit: ServiceFit, latest_free_s: float, queued_rows: int, rows: int, cap: int,
                 batch_wait_s: float) -> float:
    """An upper bound on the seconds :func:`estimate_finish_batched` gives a request of
    ``rows`` rows, for a caller that drains at the full rate: every queued row is ahead of
    it, every batch ahead runs after the replica that frees last (``latest_free_s``), its
    own batch is as full as the queue makes it, and the batcher waits ``batch_wait_s``."""
    cap = max(1, cap)
    before = (queued_rows + min(max(1, rows), cap) - 1) // cap
    own = fit.seconds(max(rows, min(cap, queued_rows + rows)))
    return latest_free_s + before * fit.seconds(cap) + batch_wait_s + own


def estimate_finish(
    now: float,
    rows_ahead: int,
    service_rate_rows_per_s: float,
    replicas: int,
    batch_service_s: float = 0.0,
    *,
    inflight_rows: int = 0,
    batch_wait_s: float = 0.0,
    drain_rows_per_s: float | None = None,
) -> float:
    """Predicted time a new request finishes (same clock as ``now``).

    The replicas first work off ``inflight_rows`` at ``service_rate_rows_per_s`` each (rows
    per second of one busy replica), and ``rows_ahead`` at ``drain_rows_per_s`` when given
    (what the request's tenant gets while others keep sending), else at the replicas' full
    rate; then the batcher may wait up to ``batch_wait_s`` to fill the request's batch, which
    takes ``batch_service_s``. ``inf`` with no capacity (rate, replicas or drain rate not
    positive).
    """
    capacity = service_rate_rows_per_s * replicas
    drain = capacity if drain_rows_per_s is None else drain_rows_per_s
    if not capacity > 0 or not drain > 0:
        return math.inf
    drain_s = max(0, inflight_rows) / capacity + max(0, rows_ahead) / drain
    return now + drain_s + max(0.0, batch_wait_s) + max(0.0, batch_service_s)


def estimate_finish_batched(
    now: float,
    replica_free_in_s: Sequence[float],
    batches_before: int,
    full_batch_s: float,
    own_batch_s: float,
    *,
    batch_wait_s: float = 0.0,
) -> float:
    """Predicted finish of a request whose batch is the ``batches_before``-th to be formed
    from now (0: the next one), batch by batch.

    ``replica_free_in_s`` holds, per ready replica, the seconds until it takes its next batch
    (0 when idle). Each earlier batch goes to the replica free first and keeps it
    ``full_batch_s``; the request's own batch starts on the next free replica, after the
    batcher's ``batch_wait_s``, and takes ``own_batch_s``. Unlike a fluid drain of all rows
    at the total rate, this does not charge the request for rows that ride in its own batch,
    nor for the other replicas' work when one is about to free. Exact for the fixed batch
    length; the fluid mean beyond :data:`FLUID_AFTER_BATCHES` batches per replica, where the
    two agree. ``inf`` with no replica.
    """
    n = len(replica_free_in_s)
    if n == 0:
        return math.inf
    free = sorted(max(0.0, f) for f in replica_free_in_s)  # a sorted list is a heap
    k = max(0, batches_before)
    if k <= FLUID_AFTER_BATCHES * n:
        for _ in range(k):
            heapq.heapreplace(free, free[0] + max(0.0, full_batch_s))
        start = free[0]
    else:
        start = (sum(free) + k * max(0.0, full_batch_s)) / n
    return now + start + max(0.0, batch_wait_s) + max(0.0, own_batch_s)
