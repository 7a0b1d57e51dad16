"""A running deployment: its request queue, batch formation and replica supervision.

Requests wait in the deployment's fair queue (strict between priority classes, weighted-fair
between tenants, earliest deadline first within a tenant). Each replica slot runs one loop:
when its replica is free it pulls the next batch — up to ``max_batch_size`` rows, waiting at
most ``max_wait_ms`` after the oldest request when the queue is short — sends it as one
message, and splits the outputs back to the requests. A replica that dies mid-batch has its
requests re-queued once (at the front); the slot restarts it with exponential backoff. Every
request carries a deadline and ends with a result or a typed
:class:`~tailguard.serve.errors.ServeError`.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import math
from collections.abc import Callable, Hashable

import numpy as np

from tailguard.autoscale.live import LiveRecorder
from tailguard.observe.metrics import DeploymentMetrics
from tailguard.observe.usage import UsageMeter
from tailguard.serve.admission import AdmissionSnapshot
from tailguard.serve.config import DeploymentSpec
from tailguard.serve.demand import Demand, FairShare
from tailguard.serve.errors import BadRequest, DeadlineExceeded, ModelFailed, Unavailable
from tailguard.serve.fairqueue import FairQueue, FairQueueConfig
from tailguard.serve.loader import ModelSignature
from tailguard.serve.replicas.backend import (
    ReplicaBackend,
    ReplicaDied,
    ReplicaHandle,
    ReplicaSetupFailed,
)
from tailguard.serve.replicas.messages import BatchError, ErrorKind
from tailguard.serve.service_model import ServiceModel
from tailguard.serve.slots import OPEN_CALLER, Caller, Pending, Slot, SlotState
from tailguard.tensors import Tensors

log = logging.getLogger("tailguard.serve")

RESTART_BACKOFF_S = 0.5
RESTART_BACKOFF_MAX_S = 30.0
HEALTHY_RESET_S = 30.0  # a replica up this long resets its restart backoff
MAX_DISPATCHES = 2  # a request runs at most twice: its first try and one retry
HANG_GRACE_S = 5.0  # a batch running this long past its last deadline means a hung replica


def _resolve(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


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
    ) -> None:
        self.spec = spec
        self.signature = signature
        self._backend = backend
        self._metrics = metrics
        self._usage = usage
        self._queue: FairQueue[Pending] = FairQueue(queue_config)
        self._idle: list[Slot] = []
        self._fill: asyncio.Future[None] | None = None
        self._slots: list[Slot] = []
        self._slot_ids = itertools.count()
        self._initial_replicas = spec.replicas
        self._setup_s: float | None = None  # last measured cold start
        self.on_cold: Callable[[], None] | None = None  # scale-from-zero hook (autoscaler)
        self.recorder = LiveRecorder()  # what the autoscaling controller reads
        self._batch_ids = itertools.count(1)
        self._inflight = 0
        self._inflight_rows = 0
        self._service = ServiceModel()  # batch service time vs batch size, fitted online
        self._demand = Demand()  # each tenant's recent rows/s asked of this deployment
        self._accepting = True
        self._stopping = False
        self._setup_error: str | None = None

    # ----------------------------------------------------------------- status
    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def queued_rows(self) -> int:
        return self._queue.rows

    def admission_snapshot(self, rows_ahead: int, rows: int, now: float, *,
                           drain_rows_per_s: float | None = None) -> AdmissionSnapshot:
        """What admission needs for a request of ``rows`` rows with ``rows_ahead`` before it;
        its own batch holds at most the rows ahead plus its own (capped at the batch cap).

        The view is batch by batch, replica by replica. ``drain_rows_per_s`` (None: the full
        rate) is what a caller over its fair share can count on: the lighter tenants' later
        arrivals, which no queue snapshot shows, go ahead of its rows."""
        max_rows = self.batch_rows_cap()
        measured = self._service.measured
        free_in, inflight_rows = self._busy_view(now)
        return AdmissionSnapshot(
            rows_ahead_by_class=self._queue.rows_ahead_by_class(),
            service_rate_rows_per_s=self._service.rows_per_s(max_rows),
            ready_replicas=self.ready_replicas,
            inflight_rows=inflight_rows,
            # a request bigger than the cap runs as a batch of its own, whole
            batch_service_s=(self._service.seconds(max(rows, min(max_rows, rows_ahead + rows)))
                             if measured else None),
            # no replica taking batches (all draining, say): the fluid view, which waits
            replica_free_in_s=free_in or None,
            batch_rows=max_rows,
            full_batch_s=self._service.seconds(max_rows) if measured else None,
            drain_rows_per_s=drain_rows_per_s,
        )

    def _batch_left(self, slot: Slot, now: float) -> tuple[float, float]:
        """(seconds, share) of a busy slot's batch still to run, by the service model (its
        start time is known, its length predicted); (0, 0) when it is idle or overdue."""
        if not slot.busy or not self._service.measured:
            return 0.0, 0.0
        expected = self._service.seconds(slot.batch_rows)
        left_s = max(0.0, expected - (now - slot.busy_since))
        return left_s, (left_s / expected if expected > 0 else 0.0)

    def _busy_view(self, now: float) -> tuple[tuple[float, ...], int]:
        """One pass over the slots: per ready replica, the seconds until it takes its next
        batch (0 when idle); and the rows the busy replicas still have to work through (a
        batch halfway through counts half its rows)."""
        free_in: list[float] = []
        rows_left = 0.0
        for slot in self._slots:
            left_s, share = self._batch_left(slot, now)  # (0, 0) while unmeasured
            rows_left += slot.batch_rows * share
            if slot.state is SlotState.READY and not slot.draining:
                free_in.append(left_s)
        # Unmeasured, nothing says how far a batch has got: count it whole.
        inflight = math.ceil(rows_left) if self._service.measured else self._inflight_rows
        return tuple(free_in), inflight

    def batch_rows_cap(self) -> int:
        """Rows per batch, at most: ``max_batch_size``, and with a ``p99_ms`` objective no more
        than a batch the service model says runs in ``batch_slo_fraction`` of it — a request
        that arrives just as a batch starts waits for that one, then runs in its own: both
        must fit the SLO, with room left for queueing and noise. The default 0.35 leaves 30%
        of it; measured on ``benchmarks/noisy_neighbor.py`` (one replica, 6 interleaved
        pairs): B's P99 196-224 ms at 0.35 against 214-291 ms at 0.4 (over 250 in 2 of 6),
        goodput median 0.93 against 0.95, within this machine's noise. With two replicas on
        the same two cores (the load generators and the gateway crowding them) 0.4 kept B
        whole more often (4 of 4 runs against 4 of 6) at the same P99 median (226 and 228
        ms), and 0.3 lost more capacity than its shorter wait won (B's P99 267-308 ms)."""
        cap = self.spec.max_batch_size
        if self.spec.p99_ms is None or not self._service.measured:
            return cap
        fixed, per_row = self._service.coefficients()
        if per_row <= 0:
            return cap
        budget_s = self.spec.p99_ms / 1000.0 * self.spec.batch_slo_fraction
        fit = int((budget_s - fixed) / per_row + 1e-6)
        return max(1, min(cap, fit))

    def note_demand(self, caller: Caller, rows: int, now: float) -> None:
        """Count a request's rows in its tenant's demand (admitted or shed)."""
        self._demand.asked(caller.priority, caller.tenant, weight=caller.weight, rows=rows,
                           now=now)

    def fair_share(self, caller: Caller, now: float) -> FairShare | None:
        """Where the caller's recent demand stands in the max-min fair split of the capacity
        (full batches on every ready replica, or what they are measured to serve); None while
        the service rate is unmeasured."""
        rate = self._service.rows_per_s(self.batch_rows_cap())
        if rate is None or self.ready_replicas == 0:
            return None
        return self._demand.share(caller.priority, caller.tenant, weight=caller.weight,
                                  capacity_rows_per_s=rate * self.ready_replicas, now=now)

    def rows_ahead(self, caller: Caller, rows: int) -> int:
        return self._queue.rows_ahead(caller.priority, caller.tenant, rows=rows,
                                      weight=caller.weight)

    @property
    def ready_replicas(self) -> int:
        return sum(1 for s in self._slots if s.state is SlotState.READY)

    @property
    def desired_replicas(self) -> int:
        """Replicas wanted now: every slot that is not draining."""
        return sum(1 for s in self._slots if not s.draining)

    def replica_counts(self) -> dict[str, int]:
        """Slots by state: ``desired``, ``ready``, ``starting`` (incl. restarting), ``draining``."""
        counts = {"desired": self.desired_replicas, "ready": 0, "starting": 0, "draining": 0}
        for s in self._slots:
            if s.draining:
                counts["draining"] += 1
            elif s.state is SlotState.READY:
                counts["ready"] += 1
            elif s.state in (SlotState.STARTING, SlotState.RESTARTING):
                counts["starting"] += 1
        return counts

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
            "inflight_batches": self._inflight,
            "settings": {k: getattr(self.spec, k) for k in (
                "replicas", "max_batch_size", "max_wait_ms", "timeout_ms", "p99_ms")},
            "replica_counts": self.replica_counts(),
            "replicas": [
                {"index": s.index,
                 "state": SlotState.DRAINING.value if s.draining else s.state.value,
                 "pid": s.handle.pid if s.handle is not None else None,
                 "busy": s.busy, "restarts": s.restarts, "last_error": s.last_error}
                for s in self._slots
            ],
        }

    # ------------------------------------------------------------- lifecycle
    async def start(self) -> None:
        """Start the initial replicas; returns at once (readiness tells when they serve)."""
        self.scale_to(self._initial_replicas)

    def scale_to(self, replicas: int) -> None:
        """Add replicas, or drain the surplus: a drained replica takes no new batch, finishes
        the one it runs, then stops — so no request fails because of scaling. Replicas still
        starting are drained first, then idle ones, then busy ones."""
        if replicas < 0:
            raise ValueError(f"replicas must be >= 0, got {replicas}")
        if self._stopping:
            return
        active = [s for s in self._slots if not s.draining]
        for _ in range(replicas - len(active)):
            slot = Slot(next(self._slot_ids))
            self._slots.append(slot)
            slot.task = asyncio.create_task(self._run_slot(slot), name=f"{self.name}-{slot.index}")
        if replicas < len(active):
            rank = {SlotState.STARTING: 0, SlotState.RESTARTING: 0, SlotState.READY: 1}
            victims = sorted(active, key=lambda s: (rank.get(s.state, 0), s.busy, -s.index))
            for slot in victims[: len(active) - replicas]:
                slot.draining = True
                slot.notify()
                if slot.state is not SlotState.READY and slot.task is not None:
                    slot.task.cancel()  # nothing to finish: stop the cold start now

    async def stop(self, drain_timeout_s: float) -> None:
        """Refuse new requests, finish queued and in-flight ones, then stop the replicas."""
        self._accepting = False
        loop = asyncio.get_running_loop()
        until = loop.time() + drain_timeout_s
        while (self._queue.rows or self._inflight) and loop.time() < until:
            if self.ready_replicas == 0 and self._setup_error is not None:
                break
            await asyncio.sleep(0.01)
        self._stopping = True
        self._fail_queued(Unavailable(f"deployment {self.name} is shutting down"))
        for slot in self._slots:
            slot.notify()
        handles = [s.handle for s in self._slots if s.handle is not None]
        await asyncio.gather(*(h.stop(timeout_s=5.0) for h in handles), return_exceptions=True)
        tasks = [s.task for s in self._slots if s.task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for slot in self._slots:
            slot.state = SlotState.STOPPED
        self._slots.clear()

    # ------------------------------------------------------------ request path
    async def infer(self, tensors: Tensors, rows: int, key: Hashable,
                    timeout_s: float | None = None, caller: Caller = OPEN_CALLER) -> Tensors:
        """Queue ``rows`` rows and wait for their outputs (or a typed error)."""
        if not self._accepting:
            raise Unavailable(f"deployment {self.name} is shutting down", retry_after_s=1.0)
        if self._setup_error is not None and self.ready_replicas == 0:
            raise Unavailable(f"deployment {self.name} has no replica: {self._setup_error}",
                              retry_after_s=RESTART_BACKOFF_MAX_S)
        if self._queue.rows + rows > self.spec.max_queue_rows:
            raise Unavailable(
                f"deployment {self.name}: queue is full ({self._queue.rows} rows waiting)",
                retry_after_s=1.0,
            )
        loop = asyncio.get_running_loop()
        now = loop.time()
        timeout = self.spec.timeout_ms / 1000.0 if timeout_s is None else timeout_s
        if self.ready_replicas == 0 and self.desired_replicas == 0:
            self._cold_start(timeout)
        pending = Pending(tensors, rows, key, loop.create_future(), now, now + timeout, caller)
        timer = loop.call_at(pending.deadline, self._expire, pending)
        self._enqueue(pending)
        self.recorder.arrival(now, rows)
        ok = False
        try:
            result = await pending.future
            ok = True
            return result
        finally:
            timer.cancel()
            done = loop.time()
            self.recorder.completed(done, done - now, ok)

    async def restart(self, timeout_s: float = 300.0) -> int:
        """Rolling restart: each ready replica in turn finishes its batch, exits and is
        started afresh; the next one goes only once it is back. Returns replicas restarted."""
        loop = asyncio.get_running_loop()
        restarted = 0
        for slot in [s for s in self._slots if not s.draining]:
            handle = slot.handle
            if slot.state is not SlotState.READY or handle is None:
                continue
            await handle.stop(timeout_s=30.0)  # the supervisor sees it gone and restarts it
            restarted += 1
            until = loop.time() + timeout_s
            while not (slot.state is SlotState.READY and slot.handle is not handle):
                if self._stopping or slot.draining or loop.time() > until:
                    return restarted
                await asyncio.sleep(0.05)
        return restarted

    def _cold_start(self, timeout_s: float) -> None:
        """First request while scaled to zero: start a replica, or refuse at once when the
        last measured cold start cannot finish within this request's deadline."""
        if self.on_cold is None:
            raise Unavailable(f"deployment {self.name} has no replica (scaled to zero)",
                              retry_after_s=self._setup_s or 1.0)
        self.on_cold()
        if self._setup_s is not None and self._setup_s > timeout_s:
            raise Unavailable(
                f"deployment {self.name} is cold: starting a replica takes about "
                f"{self._setup_s:.1f} s, more than this request's deadline",
                retry_after_s=self._setup_s,
            )

    def _enqueue(self, p: Pending, front: bool = False) -> None:
        c = p.caller
        self._queue.push(p, tenant=c.tenant, priority=c.priority, weight=c.weight,
                         deadline=p.deadline, rows=p.rows, now=p.enqueued, front=front)
        while self._idle:
            slot = self._idle.pop()
            if slot.wake is not None and not slot.wake.done():
                slot.wake.set_result(None)
                break
        fill = self._fill
        if fill is not None and not fill.done() and self._queue.rows >= self.batch_rows_cap():
            fill.set_result(None)

    def _expire(self, p: Pending) -> None:
        if p.future.done():
            return
        self._queue.remove(p)  # False (a no-op) once it left the queue
        waited_ms = (p.deadline - p.enqueued) * 1000
        p.future.set_exception(DeadlineExceeded(
            f"deployment {self.name}: no result within the {waited_ms:.0f} ms deadline"
        ))

    @staticmethod
    def _fail(p: Pending, error: Exception) -> None:
        if not p.future.done():
            p.future.set_exception(error)

    def _peek_live(self, now: float) -> Pending | None:
        while (p := self._queue.peek(now)) is not None and p.future.done():
            self._queue.pop(now)
        return p

    def _fail_queued(self, error: Exception) -> None:
        while (p := self._queue.pop(0.0)) is not None:
            self._fail(p, error)

    async def _next_batch(self, slot: Slot) -> list[Pending] | None:
        """Wait for work, then form a batch. ``None`` when the slot must stop serving."""
        loop = asyncio.get_running_loop()
        handle = slot.handle
        while True:
            if self._stopping or slot.draining or handle is None or not handle.alive():
                return None
            head = self._peek_live(loop.time())
            if head is not None:
                break
            slot.wake = loop.create_future()
            self._idle.append(slot)
            await slot.wake
            slot.wake = None
        max_rows = self.batch_rows_cap()
        close_at = head.enqueued + self.spec.max_wait_ms / 1000.0
        if self._queue.rows < max_rows and not head.solo and loop.time() < close_at:
            if self._fill is None or self._fill.done():
                self._fill = loop.create_future()
            fill = self._fill
            timer = loop.call_at(close_at, _resolve, fill)
            await fill
            timer.cancel()
            if self._stopping or slot.draining or not handle.alive():
                return None
        batch: list[Pending] = []
        rows = 0
        now = loop.time()
        while (p := self._peek_live(now)) is not None:
            if batch and (p.solo or batch[0].solo or p.key != batch[0].key
                          or rows + p.rows > max_rows):
                break
            self._queue.pop(now)
            batch.append(p)
            rows += p.rows
            self._demand.served(p.caller.priority, p.caller.tenant, rows=p.rows, now=now)
        return batch or None

    async def _serve(self, slot: Slot, handle: ReplicaHandle) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = await self._next_batch(slot)
            if batch is None:
                if self._stopping or slot.draining or not handle.alive():
                    return
                continue
            now = loop.time()
            rows = 0
            for p in batch:
                p.dispatches += 1
                rows += p.rows
                self._metrics.queue_wait.observe(now - p.enqueued)
            if len(batch) == 1:
                tensors = batch[0].tensors
            else:
                tensors = {name: np.concatenate([p.tensors[name] for p in batch])
                           for name in batch[0].tensors}
            self._metrics.batch_size.observe(rows)
            self._inflight += 1
            self._inflight_rows += rows
            slot.busy, slot.busy_since, slot.batch_rows = True, now, rows
            # A replica still busy well past every deadline in its batch is hung (stopped,
            # deadlocked): its requests have had their 504; kill it so the slot restarts.
            hang_after = max(p.deadline for p in batch) - now + HANG_GRACE_S
            try:
                reply = await asyncio.wait_for(handle.infer(next(self._batch_ids), tensors),
                                               hang_after)
            except ReplicaDied:
                self._retry_or_fail(batch)
                return
            except TimeoutError:
                log.error("replica %s (pid %s) hung for %.1f s on one batch; killing it",
                          handle.name, handle.pid, hang_after)
                await handle.stop(timeout_s=0.0)
                self._retry_or_fail(batch)
                return
            finally:
                self._inflight -= 1
                self._inflight_rows -= rows
                slot.busy = False
            if isinstance(reply, BatchError):
                self._batch_failed(batch, reply)
                continue
            self._observe_service(batch, rows, reply.service_s)
            offset = 0
            for p in batch:
                end = offset + p.rows
                if not p.future.done():
                    p.future.set_result({k: v[offset:end] for k, v in reply.tensors.items()})
                offset = end

    def _observe_service(self, batch: list[Pending], rows: int, service_s: float) -> None:
        self._metrics.service.observe(service_s)
        self.recorder.batch(asyncio.get_running_loop().time(), rows, service_s)
        if service_s > 0:
            self._service.observe(rows, service_s)
        if self._usage is not None:
            for p in batch:
                self._usage.charge(p.caller.tenant, self.name, service_s * p.rows / rows)

    def _retry_or_fail(self, batch: list[Pending]) -> None:
        self._metrics.retries.inc()
        for p in reversed(batch):
            if p.future.done():
                continue
            if p.dispatches >= MAX_DISPATCHES:
                self._fail(p, Unavailable(
                    f"deployment {self.name}: the replica died while running this request, "
                    "twice", retry_after_s=1.0))
            else:
                self._enqueue(p, front=True)

    def _batch_failed(self, batch: list[Pending], reply: BatchError) -> None:
        if len(batch) > 1:
            # One bad request must not fail the others: run each alone to find it.
            for p in reversed(batch):
                p.solo = True
                p.dispatches -= 1
                if not p.future.done():
                    self._enqueue(p, front=True)
            return
        error_cls = BadRequest if reply.kind is ErrorKind.BAD_INPUT else ModelFailed
        self._fail(batch[0], error_cls(f"model {self.name} rejected the request: {reply.error}"))

    # --------------------------------------------------------------- supervision
    async def _run_slot(self, slot: Slot) -> None:
        try:
            await self._supervise(slot)
        finally:
            if slot.draining:
                if slot.handle is not None:
                    with contextlib.suppress(Exception):
                        await slot.handle.stop(timeout_s=5.0)
                slot.state = SlotState.STOPPED
                if slot in self._slots:
                    self._slots.remove(slot)
                log.info("replica %s-%d drained and stopped", self.name, slot.index)

    async def _supervise(self, slot: Slot) -> None:
        loop = asyncio.get_running_loop()
        backoff = RESTART_BACKOFF_S
        while not self._stopping and not slot.draining:
            handle = self._backend.create(self.spec, slot.index)
            slot.handle = handle
            slot.state = SlotState.STARTING if slot.restarts == 0 else SlotState.RESTARTING
            try:
                setup_s = await handle.start()
            except Exception as exc:  # any start failure, even a backend bug, means "restart"
                slot.last_error = str(exc)
                log.error("replica %s failed to start: %s", handle.name, exc,
                          exc_info=not isinstance(exc, ReplicaSetupFailed | ReplicaDied))
                self._setup_failed(str(exc))
            else:
                log.info("replica %s ready (pid %s, setup %.2f s)",
                         handle.name, handle.pid, setup_s)
                self._setup_error = None
                self._setup_s = setup_s
                slot.state = SlotState.READY
                started = loop.time()
                watcher = asyncio.create_task(self._watch(slot, handle))
                try:
                    await self._serve(slot, handle)
                finally:
                    watcher.cancel()
                if self._stopping or slot.draining:
                    break
                if loop.time() - started > HEALTHY_RESET_S:
                    backoff = RESTART_BACKOFF_S
                log.warning("replica %s (pid %s) died; restarting in %.1f s",
                            handle.name, handle.pid, backoff)
            slot.state = SlotState.RESTARTING
            slot.restarts += 1
            self._metrics.restarts.inc()
            with contextlib.suppress(Exception):
                await handle.stop(timeout_s=1.0)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, RESTART_BACKOFF_MAX_S)
        slot.state = SlotState.STOPPED

    async def _watch(self, slot: Slot, handle: ReplicaHandle) -> None:
        """Mark the slot not ready the moment its replica's connection drops."""
        await handle.wait_closed()
        if slot.state is SlotState.READY and not self._stopping and not slot.draining:
            slot.state = SlotState.RESTARTING
        slot.notify()
        if self._fill is not None and not self._fill.done():
            self._fill.set_result(None)

    def _setup_failed(self, error: str) -> None:
        if self.ready_replicas > 0:
            return
        self._setup_error = error
        # Nothing can serve the queue now: answer it rather than let it wait for the deadline.
        self._fail_queued(Unavailable(f"deployment {self.name} has no replica: {error}",
                                      retry_after_s=RESTART_BACKOFF_MAX_S))
