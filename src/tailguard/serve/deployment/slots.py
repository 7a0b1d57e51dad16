"""The state a deployment keeps per request and per replica slot, and the signal its waiters
use instead of polling."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING

from tailguard.serve.gate.identity import Caller
from tailguard.serve.replicas.backend import ReplicaHandle
from tailguard.tensors import Tensors

if TYPE_CHECKING:
    from opentelemetry.trace import Span

__all__ = ["Pending", "Signal", "Slot", "SlotState"]


class Signal:
    """Something changed: waiters re-check their condition (an ``asyncio.Condition`` without
    the lock, for one event loop). ``pulse`` wakes every waiter."""

    __slots__ = ("_event",)

    def __init__(self) -> None:
        self._event = asyncio.Event()

    def pulse(self) -> None:
        event, self._event = self._event, asyncio.Event()
        event.set()

    async def wait_until(self, condition: Callable[[], bool], timeout_s: float) -> bool:
        """Wait until ``condition()`` holds (True) or ``timeout_s`` passes (False)."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s):
                while not condition():
                    await self._event.wait()
        return condition()


class SlotState(StrEnum):
    STARTING = "starting"
    READY = "ready"
    RESTARTING = "restarting"
    DRAINING = "draining"  # scaled down: takes no new work, finishes its batch, then stops
    STOPPED = "stopped"


@dataclass(eq=False, slots=True)
class Pending:
    tensors: Tensors
    rows: int
    key: Hashable  # requests with equal keys have row-compatible tensors and may share a batch
    future: asyncio.Future[Tensors]
    enqueued: float
    deadline: float
    caller: Caller
    dispatches: int = 0
    solo: bool = False  # run alone (after its batch failed as a whole)
    trace: Span | None = None  # the request's span when it is traced (never when off)


@dataclass(eq=False)
class Slot:
    index: int
    state: SlotState = SlotState.STARTING
    handle: ReplicaHandle | None = None
    wake: asyncio.Future[None] | None = None
    last_error: str | None = None
    restarts: int = 0
    busy: bool = False
    busy_since: float = 0.0
    batch_rows: int = 0
    draining: bool = False
    restart_requested: bool = False  # a rolling restart stopped it: no backoff, not a death
    task: asyncio.Task[None] | None = field(default=None, repr=False)
    changed: Signal = field(default_factory=Signal, repr=False)

    def mark(self, state: SlotState) -> None:
        self.state = state
        self.changed.pulse()

    def notify(self) -> None:
        if self.wake is not None and not self.wake.done():
            self.wake.set_result(None)
