"""Replica supervision: one slot per replica, started, watched, restarted with backoff, drained.

A slot's task starts its replica, hands it to the batcher's serving loop while it lives, and
restarts it with exponential backoff when it dies (a rolling restart's stop is not a death: no
backoff). Scaling down drains a slot: it takes no new batch, finishes the one it runs, then
stops. Waiters (rolling restart, drain) wait on each slot's :class:`~.slots.Signal`, never by
polling.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections.abc import Awaitable, Callable

from tailguard.observe.metrics import DeploymentMetrics
from tailguard.serve.config import DeploymentSpec
from tailguard.serve.deployment.slots import Slot, SlotState
from tailguard.serve.replicas.backend import (
    ReplicaBackend,
    ReplicaDied,
    ReplicaHandle,
    ReplicaSetupFailed,
)

__all__ = ["Supervisor"]

log = logging.getLogger("tailguard.serve")

RESTART_BACKOFF_S = 0.5
RESTART_BACKOFF_MAX_S = 30.0
HEALTHY_RESET_S = 30.0  # a replica up this long resets its restart backoff
DRAIN_STOP_TIMEOUT_S = 5.0  # a drained replica's stop: its batch is done, it exits at once
DEAD_STOP_TIMEOUT_S = 1.0  # clearing up after a replica that died
RESTART_STOP_TIMEOUT_S = 30.0  # a rolling restart lets the replica finish its batch


class Supervisor:
    """The replica slots of one deployment."""

    def __init__(self, spec: DeploymentSpec, backend: ReplicaBackend,
                 metrics: DeploymentMetrics,
                 serve: Callable[[Slot, ReplicaHandle], Awaitable[None]],
                 no_replica: Callable[[str], None], wake: Callable[[], None]) -> None:
        self.spec = spec
        self._backend = backend
        self._metrics = metrics
        self._serve = serve
        self._no_replica = no_replica  # every start failed and none is ready: fail the queue
        self._wake = wake  # a replica left: wake the batcher's waiting slots and fill
        self.slots: list[Slot] = []
        self._ids = itertools.count()
        self.setup_s: float | None = None  # the last replica's setup() (inside it)
        # The last replica's cold start as a caller pays it: from creating its process
        # (scale_to, a restart) to its serving — spawn, imports and setup() together.
        self.cold_start_s: float | None = None
        self.setup_error: str | None = None
        self.stopping = False
        self._restarting = asyncio.Lock()

    # ----------------------------------------------------------------- counts
    @property
    def ready(self) -> int:
        return sum(1 for s in self.slots if s.state is SlotState.READY)

    @property
    def desired(self) -> int:
        """Replicas wanted now: every slot that is not draining."""
        return sum(1 for s in self.slots if not s.draining)

    def counts(self) -> dict[str, int]:
        """Slots by state: ``desired``, ``ready``, ``starting`` (incl. restarting), ``draining``."""
        counts = {"desired": self.desired, "ready": 0, "starting": 0, "draining": 0}
        for s in self.slots:
            if s.draining:
                counts["draining"] += 1
            elif s.state is SlotState.READY:
                counts["ready"] += 1
            elif s.state in (SlotState.STARTING, SlotState.RESTARTING):
                counts["starting"] += 1
        return counts

    # ----------------------------------------------------------------- scaling
    def scale_to(self, replicas: int) -> None:
        """Add replicas, or drain the surplus: starting ones first, then idle, then busy."""
        if replicas < 0:
            raise ValueError(f"replicas must be >= 0, got {replicas}")
        if self.stopping:
            return
        active = [s for s in self.slots if not s.draining]
        for _ in range(replicas - len(active)):
            slot = Slot(next(self._ids))
            self.slots.append(slot)
            slot.task = asyncio.create_task(self._run(slot), name=f"{self.spec.name}-{slot.index}")
        if replicas < len(active):
            rank = {SlotState.STARTING: 0, SlotState.RESTARTING: 0, SlotState.READY: 1}
            victims = sorted(active, key=lambda s: (rank.get(s.state, 0), s.busy, -s.index))
            for slot in victims[: len(active) - replicas]:
                slot.draining = True
                slot.notify()
                slot.changed.pulse()
                if slot.state is not SlotState.READY and slot.task is not None:
                    slot.task.cancel()  # nothing to finish: stop the cold start now

    async def restart(self, timeout_s: float) -> int:
        """Rolling restart: every replica not draining, one at a time — a starting one once
        it is ready — finishes its batch, exits and is started afresh; the next goes only
        once it is back. Returns the replicas restarted."""
        async with self._restarting:  # two restarts at once would take two replicas down
            restarted = 0
            for slot in [s for s in self.slots if not s.draining]:
                if not await self._wait_ready(slot, None, timeout_s):
                    log.error("replica %s-%d not ready within %.0f s: not restarted",
                              self.spec.name, slot.index, timeout_s)
                    continue  # crash-looping, say: the others still get their restart
                handle = slot.handle
                if self._gone(slot) or handle is None:
                    continue
                slot.restart_requested = True
                try:
                    await handle.stop(timeout_s=RESTART_STOP_TIMEOUT_S)
                except Exception:
                    slot.restart_requested = False  # its next death is a real one
                    raise
                restarted += 1
                if not await self._wait_ready(slot, handle, timeout_s):
                    return restarted  # not back: restarting more would shrink the fleet
            return restarted

    async def _wait_ready(self, slot: Slot, old: ReplicaHandle | None, timeout_s: float) -> bool:
        """Wait until ``slot`` is ready with a handle other than ``old``, or gone (True), or
        ``timeout_s`` passes (False)."""
        def settled() -> bool:
            return self._gone(slot) or (slot.state is SlotState.READY and slot.handle is not old)

        return await slot.changed.wait_until(settled, timeout_s)

    def _gone(self, slot: Slot) -> bool:
        return self.stopping or slot.draining or slot.state is SlotState.STOPPED

    async def stop(self) -> None:
        """Stop every replica and slot task (the queue was drained or failed before)."""
        self.stopping = True
        for slot in self.slots:
            slot.notify()
        handles = [s.handle for s in self.slots if s.handle is not None]
        await asyncio.gather(*(h.stop(timeout_s=DRAIN_STOP_TIMEOUT_S) for h in handles),
                             return_exceptions=True)
        tasks = [s.task for s in self.slots if s.task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for slot in self.slots:
            slot.mark(SlotState.STOPPED)
        self.slots.clear()

    # ----------------------------------------------------------------- one slot
    async def _run(self, slot: Slot) -> None:
        try:
            await self._supervise(slot)
        finally:
            if slot.draining:
                if slot.handle is not None:
                    with contextlib.suppress(Exception):
                        await slot.handle.stop(timeout_s=DRAIN_STOP_TIMEOUT_S)
                slot.mark(SlotState.STOPPED)
                if slot in self.slots:
                    self.slots.remove(slot)
                log.info("replica %s-%d drained and stopped", self.spec.name, slot.index)

    async def _supervise(self, slot: Slot) -> None:
        loop = asyncio.get_running_loop()
        backoff = RESTART_BACKOFF_S
        while not self.stopping and not slot.draining:
            asked = loop.time()
            handle = self._backend.create(self.spec, slot.index)
            slot.handle = handle
            slot.mark(SlotState.STARTING if slot.restarts == 0 else SlotState.RESTARTING)
            try:
                setup_s = await handle.start()
            except Exception as exc:  # any start failure, even a backend bug, means "restart"
                slot.last_error = str(exc)
                log.error("replica %s failed to start: %s", handle.name, exc,
                          exc_info=not isinstance(exc, ReplicaSetupFailed | ReplicaDied))
                if self.ready == 0:
                    self.setup_error = str(exc)
                    self._no_replica(str(exc))
            else:
                log.info("replica %s ready (pid %s, setup %.2f s)",
                         handle.name, handle.pid, setup_s)
                self.setup_error = None
                self.setup_s = setup_s
                self.cold_start_s = loop.time() - asked
                slot.mark(SlotState.READY)
                started = loop.time()
                watcher = asyncio.create_task(self._watch(slot, handle))
                try:
                    await self._serve(slot, handle)
                finally:
                    watcher.cancel()
                if self.stopping or slot.draining:
                    break
                if loop.time() - started > HEALTHY_RESET_S:
                    backoff = RESTART_BACKOFF_S
                if slot.restart_requested:
                    log.info("replica %s (pid %s) stopped for a rolling restart",
                             handle.name, handle.pid)
                else:
                    log.warning("replica %s (pid %s) died; restarting in %.1f s",
                                handle.name, handle.pid, backoff)
            planned, slot.restart_requested = slot.restart_requested, False
            slot.mark(SlotState.RESTARTING)
            slot.restarts += 1
            self._metrics.restarts.inc()
            with contextlib.suppress(Exception):
                await handle.stop(timeout_s=DEAD_STOP_TIMEOUT_S)
            if not planned:
                await asyncio.sleep(backoff)  # a backoff, not a wait for a condition
                backoff = min(backoff * 2, RESTART_BACKOFF_MAX_S)
        slot.mark(SlotState.STOPPED)

    async def _watch(self, slot: Slot, handle: ReplicaHandle) -> None:
        """Mark the slot not ready the moment its replica's connection drops."""
        await handle.wait_closed()
        if slot.state is SlotState.READY and not self.stopping and not slot.draining:
            slot.mark(SlotState.RESTARTING)
        slot.notify()
        self._wake()
