"""Batch formation and dispatch: each ready replica's loop pulls the next batch and runs it.

When its replica is free a slot pulls the next batch — up to :func:`~.batch_policy.batch_cap`
rows, waiting at most ``max_wait_ms`` after the oldest request when the queue is short — sends
it as one message, and splits the outputs back to the requests. A replica that dies mid-batch
has its requests re-queued once (at the front); one bad request in a batch is found by running
each alone. Every request ends with a result or a typed
:class:`~tailguard.serve.errors.ServeError`.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

from tailguard.autoscale.live import LiveRecorder
from tailguard.observe.metrics import DeploymentMetrics
from tailguard.observe.usage import UsageMeter
from tailguard.serve.deployment.demand import Demand
from tailguard.serve.deployment.estimates import ServiceModel
from tailguard.serve.deployment.queue import FairQueue
from tailguard.serve.deployment.slots import Pending, Signal, Slot
from tailguard.serve.errors import BadRequest, DeadlineExceeded, ModelFailed, Unavailable
from tailguard.serve.replicas.backend import ReplicaDied, ReplicaHandle
from tailguard.serve.replicas.messages import BatchError, ErrorKind

if TYPE_CHECKING:
    from tailguard.observe.tracing import Tracing
    from tailguard.serve.deployment.batch_traces import BatchTrace

__all__ = ["MAX_DISPATCHES", "Batcher"]

log = logging.getLogger("tailguard.serve")

MAX_DISPATCHES = 2  # a request runs at most twice: its first try and one retry
HANG_GRACE_S = 5.0  # a batch running this long past its last deadline means a hung replica
RETRY_AFTER_S = 1.0  # Retry-After of a request whose replica died under it, twice
KILL_NOW_S = 0.0  # a hung replica's stop: no grace, it answers nothing


def _resolve(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


class Batcher:
    """The queue side of a deployment: enqueue, expire, and each slot's serving loop."""

    def __init__(self, name: str, queue: FairQueue[Pending], *, max_wait_s: float,
                 cap: Callable[[], int], service: ServiceModel, demand: Demand,
                 metrics: DeploymentMetrics, recorder: LiveRecorder,
                 usage: UsageMeter | None, tracing: Tracing | None = None) -> None:
        self.name = name
        self.queue = queue
        self._max_wait_s = max_wait_s  # a live config apply may change it (set_max_wait_s)
        self._cap = cap
        self._service = service
        self._demand = demand
        self._metrics = metrics
        self._recorder = recorder
        self._usage = usage
        self._idle: list[Slot] = []
        self._fill: asyncio.Future[None] | None = None
        self._batch_ids = itertools.count(1)
        self.inflight = 0  # batches running
        self.inflight_rows = 0
        self.progress = Signal()  # a batch ended or a request left the queue
        # Loop time of the last evidence on the service model: a measured batch, or a probe
        # admission let through to get one (``Deployment.note_probe``).
        self.last_evidence_s: float | None = None
        self.stopping = False
        self._tracing = tracing
        self._batch_trace: type[BatchTrace] | None = None
        if tracing is not None:  # imported only when on: off, OpenTelemetry is never loaded
            from tailguard.serve.deployment.batch_traces import BatchTrace

            self._batch_trace = BatchTrace

    # ------------------------------------------------------------------ queue

    def set_max_wait_s(self, max_wait_s: float) -> None:
        """A new ``max_wait_ms`` (a config apply): batches closed from now on wait this long."""
        self._max_wait_s = max_wait_s
        self.wake()

    def enqueue(self, p: Pending, front: bool = False) -> None:
        c = p.caller
        self.queue.push(p, tenant=c.tenant, priority=c.priority, weight=c.weight,
                        deadline=p.deadline, rows=p.rows, now=p.enqueued, front=front)
        while self._idle:
            slot = self._idle.pop()
            if slot.wake is not None and not slot.wake.done():
                slot.wake.set_result(None)
                break
        fill = self._fill
        if fill is not None and not fill.done() and self.queue.rows >= self._cap():
            fill.set_result(None)

    def expire(self, p: Pending) -> None:
        if p.future.done():
            return
        self.queue.remove(p)  # False (a no-op) once it left the queue
        waited_ms = (p.deadline - p.enqueued) * 1000
        p.future.set_exception(DeadlineExceeded(
            f"deployment {self.name}: no result within the {waited_ms:.0f} ms deadline"))
        self.progress.pulse()

    def forget(self, p: Pending) -> None:
        """A queued request whose caller went away leaves the queue (a no-op once out)."""
        if self.queue.remove(p):
            self.progress.pulse()

    def fail_queued(self, error: Exception) -> None:
        while (p := self.queue.pop(0.0)) is not None:
            _fail(p, error)
        self.progress.pulse()

    def wake(self) -> None:
        """Wake every waiting slot and an open batch fill (a replica left, or stopping)."""
        for slot in self._idle:
            slot.notify()
        if self._fill is not None and not self._fill.done():
            self._fill.set_result(None)

    def _peek_live(self, now: float) -> Pending | None:
        dropped = False
        while (p := self.queue.peek(now)) is not None and p.future.done():
            self.queue.pop(now)
            dropped = True
        if dropped:
            self.progress.pulse()  # the queue may be empty now: a drain waits on it
        return p

    # ------------------------------------------------------------------ batches
    async def _next_batch(self, slot: Slot, handle: ReplicaHandle) -> list[Pending] | None:
        """Wait for work, then form a batch. ``None`` when the slot must stop serving."""
        loop = asyncio.get_running_loop()
        while True:
            if self.stopping or slot.draining or not handle.alive():
                return None
            head = self._peek_live(loop.time())
            if head is not None:
                break
            slot.wake = loop.create_future()
            self._idle.append(slot)
            await slot.wake
            slot.wake = None
        max_rows = self._cap()
        close_at = head.enqueued + self._max_wait_s
        if self.queue.rows < max_rows and not head.solo and loop.time() < close_at:
            if self._fill is None or self._fill.done():
                self._fill = loop.create_future()
            fill = self._fill
            timer = loop.call_at(close_at, _resolve, fill)
            await fill
            timer.cancel()
            if self.stopping or slot.draining or not handle.alive():
                return None
            max_rows = self._cap()
        batch: list[Pending] = []
        rows = 0
        now = loop.time()
        while (p := self._peek_live(now)) is not None:
            if batch and (p.solo or batch[0].solo or p.key != batch[0].key
                          or rows + p.rows > max_rows):
                break
            self.queue.pop(now)
            batch.append(p)
            rows += p.rows
            self._demand.served(p.caller.priority, p.caller.tenant, rows=p.rows, now=now)
        return batch or None

    async def serve(self, slot: Slot, handle: ReplicaHandle) -> None:
        """Run batches on ``handle`` until it dies, the slot drains or the deployment stops."""
        loop = asyncio.get_running_loop()
        while True:
            batch = await self._next_batch(slot, handle)
            if batch is None:
                if self.stopping or slot.draining or not handle.alive():
                    return
                continue
            now = loop.time()
            rows = 0
            traced: list[Pending] | None = None
            for p in batch:
                p.dispatches += 1
                rows += p.rows
                self._metrics.queue_wait.observe(now - p.enqueued)
                if p.trace is not None:
                    if traced is None:
                        traced = []
                    traced.append(p)
            if len(batch) == 1:
                tensors = batch[0].tensors
            else:
                tensors = {name: np.concatenate([p.tensors[name] for p in batch])
                           for name in batch[0].tensors}
            self._metrics.batch_size.observe(rows)
            self.inflight += 1
            self.inflight_rows += rows
            slot.busy, slot.busy_since, slot.batch_rows = True, now, rows
            # A replica still busy well past every deadline in its batch is hung (stopped,
            # deadlocked): its requests have had their 504; kill it so the slot restarts.
            hang_after = max(p.deadline for p in batch) - now + HANG_GRACE_S
            batch_id = next(self._batch_ids)
            span: BatchTrace | None = None
            if traced is not None and self._batch_trace is not None:
                assert self._tracing is not None
                span = self._batch_trace(self._tracing, self.name, handle.name, batch_id,
                                         rows, len(batch), traced, now)
            try:
                # Only a traced batch passes a traceparent: a handle need not know of traces.
                call = (handle.infer(batch_id, tensors) if span is None
                        else handle.infer(batch_id, tensors, traceparent=span.traceparent))
                reply = await asyncio.wait_for(call, hang_after)
            except ReplicaDied as exc:
                if span is not None:
                    span.end("replica_died", str(exc))
                self._retry_or_fail(batch)
                return
            except TimeoutError:
                log.error("replica %s (pid %s) hung for %.1f s on one batch; killing it",
                          handle.name, handle.pid, hang_after)
                if span is not None:
                    span.end("hung", f"no answer within {hang_after:.1f} s")
                await handle.stop(timeout_s=KILL_NOW_S)
                self._retry_or_fail(batch)
                return
            finally:
                self.inflight -= 1
                self.inflight_rows -= rows
                slot.busy = False
                self.progress.pulse()
            if isinstance(reply, BatchError):
                if span is not None:
                    span.end(reply.kind.value, reply.error)
                self._batch_failed(batch, reply)
                continue
            if span is not None:
                span.end("ok")
            self._observe_service(batch, rows, reply.service_s)
            offset = 0
            for p in batch:
                end = offset + p.rows
                if not p.future.done():
                    p.future.set_result({k: v[offset:end] for k, v in reply.tensors.items()})
                offset = end

    def _observe_service(self, batch: list[Pending], rows: int, service_s: float) -> None:
        self._metrics.service.observe(service_s)
        now = asyncio.get_running_loop().time()
        self.last_evidence_s = now
        self._recorder.batch(now, rows, service_s)
        self._service.observe(rows, service_s)
        if self._usage is not None:
            for p in batch:
                self._usage.charge(p.caller.tenant, self.name, service_s * p.rows / rows)

    def _retry_or_fail(self, batch: list[Pending]) -> None:
        self._metrics.retries.inc()
        for p in reversed(batch):
            if p.future.done():
                continue
            if p.dispatches >= MAX_DISPATCHES or self.stopping:
                why = "the deployment is stopping" if self.stopping else "twice"
                _fail(p, Unavailable(
                    f"deployment {self.name}: the replica died while running this request, "
                    f"{why}", retry_after_s=RETRY_AFTER_S))
            else:
                self.enqueue(p, front=True)

    def _batch_failed(self, batch: list[Pending], reply: BatchError) -> None:
        if len(batch) > 1:
            # One bad request must not fail the others: run each alone to find it.
            for p in reversed(batch):
                p.solo = True
                p.dispatches -= 1
                if not p.future.done():
                    self.enqueue(p, front=True)
            return
        error_cls = BadRequest if reply.kind is ErrorKind.BAD_INPUT else ModelFailed
        _fail(batch[0], error_cls(f"model {self.name} rejected the request: {reply.error}"))


def _fail(p: Pending, error: Exception) -> None:
    if not p.future.done():
        p.future.set_exception(error)
