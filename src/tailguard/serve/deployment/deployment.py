"""A running deployment: the facade over its queue, batcher, supervisor and estimates.

Requests wait in the deployment's fair queue (strict between priority classes, weighted-fair
between tenants, earliest deadline first within a tenant); the :class:`~.batcher.Batcher`
runs each ready replica's batches, the :class:`~.supervisor.Supervisor` keeps the replicas
alive. One :class:`~.estimates.ServiceModel` feeds admission (through :meth:`load_view`), the
batch cap (:func:`~.batch_policy.batch_cap`) and the autoscaler's recorder.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable, Hashable
from typing import TYPE_CHECKING

from tailguard.autoscale.live import LiveRecorder
from tailguard.observe.metrics import DeploymentMetrics
from tailguard.observe.usage import UsageMeter
from tailguard.serve.config import DeploymentSpec
from tailguard.serve.deployment.batch_policy import BatchPolicy, BatchView, batch_cap
from tailguard.serve.deployment.batcher import Batcher
from tailguard.serve.deployment.demand import Demand, FairShare
from tailguard.serve.deployment.estimates import ServiceModel
from tailguard.serve.deployment.queue import FairQueue, FairQueueConfig
from tailguard.serve.deployment.slots import Pending, Slot, SlotState
from tailguard.serve.deployment.supervisor import RESTART_BACKOFF_MAX_S, Supervisor
from tailguard.serve.deployment.view import LoadView
from tailguard.serve.errors import PayloadTooLarge, Unavailable
from tailguard.serve.gate.finish import finish_bound
from tailguard.serve.gate.identity import OPEN_CALLER, Caller
from tailguard.serve.loader import ModelSignature
from tailguard.serve.replicas.backend import ReplicaBackend
from tailguard.tensors import Tensors

if TYPE_CHECKING:
    from opentelemetry.trace import Span

    from tailguard.observe.tracing import Tracing
    from tailguard.serve.skew import SkewMonitor

__all__ = ["Deployment"]

BUSY_RETRY_AFTER_S = 1.0  # Retry-After of a full queue or a deployment shutting down
RESTART_TIMEOUT_S = 300.0  # a rolling restart waits this long for each replica to come back
# A caller's fair share is recomputed at most this often: demand moves on a 0.5 s time
# constant, and at thousands of requests a second recomputing it per request was a third of
# admission's cost.
SHARE_REFRESH_S = 0.005


class Deployment:
    """Queue + replicas of one deployment. Create, ``await start()``, ``infer()``, ``stop()``."""

    def __init__(
        self,
        spec: DeploymentSpec,
        signature: ModelSignature,
        backend: ReplicaBackend,
        metrics: DeploymentMetrics,
        usage: UsageMeter | None = None,
        queue_config: FairQueueConfig | None = None,
        tracing: Tracing | None = None,
    ) -> None:
        self.spec = spec
        self.signature = signature
        self._metrics = metrics
        self._service = ServiceModel()  # batch service time vs batch size, fitted online
        self._demand = Demand()  # each caller's recent rows/s asked of this deployment
        self.batch_policy = BatchPolicy(
            spec.max_batch_size, None if spec.p99_ms is None else spec.p99_ms / 1000.0,
            spec.batch_slo_share)
        self.recorder = LiveRecorder(service=self._service)  # the autoscaler reads it
        self._queue: FairQueue[Pending] = FairQueue(queue_config)
        self._batcher = Batcher(spec.name, self._queue, max_wait_s=spec.max_wait_ms / 1000.0,
                                cap=self.batch_rows_cap, service=self._service,
                                demand=self._demand, metrics=metrics, recorder=self.recorder,
                                usage=usage, tracing=tracing)
        self._supervisor = Supervisor(spec, backend, metrics, self._batcher.serve,
                                      self._no_replica, self._batcher.wake)
        self.on_cold: Callable[[], None] | None = None  # scale-from-zero hook (autoscaler)
        self.skew: SkewMonitor | None = None  # training/serving skew sampler (spec.skew)
        self._accepting = True
        # (class rank, tenant) -> (computed at, capacity shared, share)
        self._shares: dict[tuple[int, str], tuple[float, float, FairShare]] = {}

    # ----------------------------------------------------------------- status
    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def queued_rows(self) -> int:
        return self._queue.rows

    @property
    def ready_replicas(self) -> int:
        return self._supervisor.ready

    @property
    def desired_replicas(self) -> int:
        return self._supervisor.desired

    def replica_counts(self) -> dict[str, int]:
        return self._supervisor.counts()

    def replica_pids(self) -> list[int]:
        """Process ids of the ready replicas (the GPU signal is read for these)."""
        return [s.handle.pid for s in self._supervisor.slots
                if s.state is SlotState.READY and s.handle is not None
                and s.handle.pid is not None]

    @property
    def cold_start_s(self) -> float | None:
        """The last replica's time from being asked for to serving (``None``: none yet)."""
        return self._supervisor.cold_start_s

    @property
    def is_ready(self) -> bool:
        # A deployment scaled to zero on purpose is ready: its first request cold-starts it.
        return self._accepting and (self.ready_replicas > 0 or self.desired_replicas == 0)

    def status(self) -> dict[str, object]:
        """What ``GET /v1/deployments`` shows: settings, queue and every replica slot."""
        return {
            "name": self.name,
            "version": self.spec.version,
            "ready": self.is_ready,
            "queued_rows": self._queue.rows,
            "service_model": dict(zip(("fixed_s", "per_row_s"),
                                      self._service.coefficients(), strict=True)),
            "batch_rows_cap": self.batch_rows_cap(),
            "inflight_batches": self._batcher.inflight,
            "setup_s": self._supervisor.setup_s,  # the last replica's setup() alone
            "cold_start_s": self._supervisor.cold_start_s,  # ... and spawn + imports
            "settings": {k: getattr(self.spec, k) for k in (
                "replicas", "max_batch_size", "max_wait_ms", "timeout_ms", "p99_ms")},
            "replica_counts": self.replica_counts(),
            "replicas": [
                {"index": s.index,
                 "state": SlotState.DRAINING.value if s.draining else s.state.value,
                 "pid": s.handle.pid if s.handle is not None else None,
                 "node": getattr(s.handle, "node_id", None),
                 "busy": s.busy, "restarts": s.restarts, "last_error": s.last_error}
                for s in self._supervisor.slots
            ],
        }

    # ----------------------------------------------------------------- estimates
    def batch_rows_cap(self) -> int:
        """Rows the next batch may take (:func:`~.batch_policy.batch_cap`)."""
        if self.batch_policy.slo_s is None:
            return self.spec.max_batch_size
        view = BatchView(self._service.fit, self.ready_replicas, self._queue.rows)
        return batch_cap(view, self.batch_policy)

    def load_view(self, caller: Caller, rows: int, now: float) -> LoadView:
        """The deployment's load as a request of ``rows`` rows from ``caller`` meets it."""
        cap = self.batch_rows_cap()
        fit = self._service.fit
        free_in: list[float] = []
        rows_left = 0.0
        ready = idle = 0
        for slot in self._supervisor.slots:
            if slot.state is not SlotState.READY:
                continue
            ready += 1
            left_s = self._left_s(slot, now)
            if slot.busy and fit is not None:
                expected = fit.seconds(slot.batch_rows)
                if expected > 0:  # a batch halfway through counts half its rows
                    rows_left += slot.batch_rows * left_s / expected
            if not slot.draining:
                free_in.append(left_s)
                idle += not slot.busy
        # Unmeasured, nothing says how far a batch has got: count it whole.
        inflight = math.ceil(rows_left) if fit is not None else self._batcher.inflight_rows
        queued = self._queue.rows
        return LoadView(
            rows_ahead=self._queue.rows_ahead(caller.priority, caller.tenant, rows=rows,
                                              weight=caller.weight),
            replica_free_in_s=tuple(free_in),
            inflight_rows=inflight,
            service=fit,
            batch_rows=cap,
            batch_wait_s=self.spec.max_wait_ms / 1000.0 if queued + rows < cap else 0.0,
            share=self._fair_share(caller, cap, ready, now),
            ready_replicas=ready,
            idle_replicas=idle,
            probed_ago_s=(None if self._batcher.last_evidence_s is None
                          else now - self._batcher.last_evidence_s),
        )

    def _left_s(self, slot: Slot, now: float) -> float:
        """Seconds until ``slot`` takes its next batch, by the service model (0: idle, or
        its batch has run past its prediction)."""
        fit = self._service.fit
        if not slot.busy or fit is None:
            return 0.0
        return max(0.0, fit.seconds(slot.batch_rows) - (now - slot.busy_since))

    def note_probe(self, now: float) -> None:
        """Admission let a probe through: the next waits a while (see ``decide``)."""
        self._batcher.last_evidence_s = now

    def finish_bound_s(self, caller: Caller, rows: int, now: float) -> float | None:
        """An upper bound on the seconds :func:`~tailguard.serve.gate.decide.predict_finish`
        would predict for this request, from what costs nothing to read, or None when there
        is none: nothing measured, no replica taking batches, or another caller has asked
        (a caller over its share then drains at less than the full rate). Every queued row
        counts as ahead of it, every batch ahead runs after the last replica frees, and the
        batcher always waits ``max_wait_ms``."""
        fit = self._service.fit
        if fit is None or not self._demand.alone(caller.priority, caller.tenant):
            return None
        latest = -1.0
        for slot in self._supervisor.slots:
            if slot.state is SlotState.READY and not slot.draining:
                latest = max(latest, self._left_s(slot, now))
        if latest < 0:
            return None
        return finish_bound(fit, latest, self._queue.rows, rows, self.batch_rows_cap(),
                            self.spec.max_wait_ms / 1000.0)

    def _fair_share(self, caller: Caller, cap: int, ready: int, now: float) -> FairShare | None:
        """Where the caller's recent demand stands in the max-min fair split of the capacity
        (full batches on every ready replica, or what they are measured to serve)."""
        rate = self._service.rows_per_s(cap)
        if rate is None or ready == 0:
            return None
        capacity = rate * ready
        key = (caller.priority.rank, caller.tenant)
        cached = self._shares.get(key)
        if cached is not None and 0 <= now - cached[0] < SHARE_REFRESH_S and (
                cached[1] == capacity):
            return cached[2]
        share = self._demand.share(caller.priority, caller.tenant, weight=caller.weight,
                                   capacity_rows_per_s=capacity, now=now)
        self._shares[key] = (now, capacity, share)
        return share

    def note_demand(self, caller: Caller, rows: int, now: float) -> None:
        """Count a request's rows in its caller's demand (admitted or shed)."""
        self._demand.asked(caller.priority, caller.tenant, weight=caller.weight, rows=rows,
                           now=now)

    # ------------------------------------------------------------- lifecycle
    async def start(self) -> None:
        """Start the initial replicas; returns at once (readiness tells when they serve)."""
        self.scale_to(self.spec.replicas)

    def scale_to(self, replicas: int) -> None:
        """Add replicas, or drain the surplus: a drained replica takes no new batch, finishes
        the one it runs, then stops — so no request fails because of scaling."""
        self._supervisor.scale_to(replicas)

    async def restart(self, timeout_s: float = RESTART_TIMEOUT_S) -> int:
        """Rolling restart of every replica, one at a time; returns replicas restarted."""
        return await self._supervisor.restart(timeout_s)

    def retune(self, spec: DeploymentSpec) -> None:
        """Take a new spec of the same deployment (a config apply). Batching, deadlines, the
        SLO and the queue bound apply from the next request and batch; replicas started from
        now on run the new spec (:meth:`roll` restarts the running ones)."""
        if spec.name != self.name:
            raise ValueError(f"deployment {self.name!r} cannot become {spec.name!r}")
        self.spec = spec
        self._supervisor.spec = spec
        self.batch_policy = BatchPolicy(
            spec.max_batch_size, None if spec.p99_ms is None else spec.p99_ms / 1000.0,
            spec.batch_slo_share)
        self._shares.clear()
        self._batcher.set_max_wait_s(spec.max_wait_ms / 1000.0)

    async def roll(self, spec: DeploymentSpec, signature: ModelSignature,
                   timeout_s: float = RESTART_TIMEOUT_S) -> int:
        """Replace every replica with one running ``spec`` (a changed model, options ...):
        a rolling restart, one replica at a time, each back before the next goes, so the
        queue keeps being served. Returns the replicas restarted."""
        self.retune(spec)
        self.signature = signature
        return await self._supervisor.restart(timeout_s)

    async def stop(self, drain_timeout_s: float) -> None:
        """Refuse new requests, finish queued and in-flight ones, then stop the replicas."""
        self._accepting = False
        batcher, supervisor = self._batcher, self._supervisor
        await batcher.progress.wait_until(
            lambda: not (self._queue.rows or batcher.inflight) or (
                supervisor.ready == 0 and supervisor.setup_error is not None),
            drain_timeout_s)
        batcher.stopping = True
        batcher.fail_queued(Unavailable(f"deployment {self.name} is shutting down"))
        batcher.wake()
        await supervisor.stop()

    # ------------------------------------------------------------ request path
    async def infer(self, tensors: Tensors, rows: int, key: Hashable,
                    timeout_s: float | None = None, caller: Caller = OPEN_CALLER,
                    trace: Span | None = None) -> Tensors:
        """Queue ``rows`` rows and wait for their outputs (or a typed error); ``trace`` is
        the request's span, when it is traced (its queue wait and batch hang off it)."""
        if not self._accepting:
            raise Unavailable(f"deployment {self.name} is shutting down",
                              retry_after_s=BUSY_RETRY_AFTER_S)
        supervisor = self._supervisor
        if supervisor.setup_error is not None and supervisor.ready == 0:
            raise Unavailable(f"deployment {self.name} has no replica: {supervisor.setup_error}",
                              retry_after_s=RESTART_BACKOFF_MAX_S)
        if rows > self.spec.max_queue_rows:  # could never fit, however empty the queue
            raise PayloadTooLarge(
                f"request of {rows} rows exceeds deployment {self.name}'s max_queue_rows "
                f"({self.spec.max_queue_rows}); split it or raise max_queue_rows")
        if self._queue.rows + rows > self.spec.max_queue_rows:
            raise Unavailable(
                f"deployment {self.name}: queue is full ({self._queue.rows} rows waiting)",
                retry_after_s=BUSY_RETRY_AFTER_S)
        loop = asyncio.get_running_loop()
        now = loop.time()
        timeout = self.spec.timeout_ms / 1000.0 if timeout_s is None else timeout_s
        if supervisor.ready == 0 and supervisor.desired == 0:
            self._cold_start(timeout)
        if self.skew is not None:
            self.skew.observe(tensors)
        pending = Pending(tensors, rows, key, loop.create_future(), now, now + timeout, caller,
                          trace=trace)
        timer = loop.call_at(pending.deadline, self._batcher.expire, pending)
        self._batcher.enqueue(pending)
        self.recorder.arrival(now, rows)
        ok = False
        try:
            result = await pending.future
            ok = True
            return result
        except asyncio.CancelledError:  # the client went away: its rows leave the queue now
            self._batcher.forget(pending)
            raise
        finally:
            timer.cancel()
            done = loop.time()
            self.recorder.completed(done, done - now, ok)

    def _cold_start(self, timeout_s: float) -> None:
        """First request while scaled to zero: start a replica, or refuse at once when the
        last measured cold start cannot finish within this request's deadline."""
        setup_s = self._supervisor.setup_s
        if self.on_cold is None:
            raise Unavailable(f"deployment {self.name} has no replica (scaled to zero)",
                              retry_after_s=setup_s or BUSY_RETRY_AFTER_S)
        self.on_cold()
        if setup_s is not None and setup_s > timeout_s:
            raise Unavailable(
                f"deployment {self.name} is cold: starting a replica takes about "
                f"{setup_s:.1f} s, more than this request's deadline",
                retry_after_s=setup_s)

    def _no_replica(self, error: str) -> None:
        # Nothing can serve the queue now: answer it rather than let it wait for the deadline.
        self._batcher.fail_queued(Unavailable(f"deployment {self.name} has no replica: {error}",
                                              retry_after_s=RESTART_BACKOFF_MAX_S))

    @property
    def slots(self) -> list[Slot]:
        """The replica slots (for status and tests)."""
        return self._supervisor.slots
