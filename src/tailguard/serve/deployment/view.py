"""The one snapshot a deployment hands out about its load, as one request would meet it.

:meth:`Deployment.load_view` builds it, the pure :func:`~tailguard.serve.gate.decide.decide`
judges it (at light load the gate first tries a cheaper bound, ``Deployment.finish_bound_s``,
that makes the view needless). A test builds one by hand::

    view = LoadView(rows_ahead=12, replica_free_in_s=(0.0,), inflight_rows=0,
                    service=ServiceFit(0.0, 0.009), batch_rows=3)
"""

from __future__ import annotations

from typing import NamedTuple

from tailguard.serve.deployment.demand import FairShare
from tailguard.serve.deployment.estimates import ServiceFit

__all__ = ["LoadView"]


class LoadView(NamedTuple):
    """A deployment's load for one request, measured just now.

    ``rows_ahead``: queued rows served before a request of the caller's class and tenant (see
    ``FairQueue.rows_ahead``). ``replica_free_in_s``: per ready replica taking batches, the
    seconds until it takes its next one (0 when idle); empty when none does (all draining,
    say). ``inflight_rows``: rows the busy replicas still have to work through. ``service``:
    the batch service-time fit, None while nothing is measured (cold). ``batch_rows``: the
    batch cap now (:func:`~tailguard.serve.deployment.batch_policy.batch_cap`).
    ``batch_wait_s``: how long the batcher may wait for more rows before the request's batch
    (its ``max_wait_ms`` when the queue is short of a full batch, else 0). ``share``: the
    caller's place in the max-min fair split of the capacity (None while unmeasured).
    ``ready_replicas``: replicas serving (draining ones included). ``idle_replicas``: ready
    ones taking batches with none running (None: as many as are free now). ``probed_ago_s``:
    since the service model last measured a batch or admission last let a probe through
    (None: never). A named tuple: one is built per
    request, and a frozen dataclass takes twice as long to build.
    """

    rows_ahead: int
    replica_free_in_s: tuple[float, ...]
    inflight_rows: int
    service: ServiceFit | None
    batch_rows: int
    batch_wait_s: float = 0.0
    share: FairShare | None = None
    ready_replicas: int | None = None
    idle_replicas: int | None = None
    probed_ago_s: float | None = None

    @property
    def replicas(self) -> int:
        return len(self.replica_free_in_s) if self.ready_replicas is None else self.ready_replicas

    @property
    def cold(self) -> bool:
        """True when feasibility cannot be judged: nothing measured or no replica ready."""
        return self.service is None or self.replicas <= 0 or not (
            self.service.rows_per_s(self.batch_rows) > 0)
