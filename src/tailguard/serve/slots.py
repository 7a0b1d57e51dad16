"""The state a deployment keeps per request and per replica slot (typed, no behaviour)."""

from __future__ import annotations

import asyncio
from collections.abc import Hashable
from dataclasses import dataclass, field
from enum import StrEnum

from tailguard.serve.replicas.backend import ReplicaHandle
from tailguard.serve.tenants import Priority
from tailguard.tensors import Tensors


@dataclass(frozen=True, slots=True)
class Caller:
    """Who sent a request, as the scheduler sees it (the open default when no tenants)."""

    tenant: str = "anonymous"
    priority: Priority = Priority.STANDARD
    weight: float = 1.0


OPEN_CALLER = Caller()


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
    task: asyncio.Task[None] | None = field(default=None, repr=False)

    def notify(self) -> None:
        if self.wake is not None and not self.wake.done():
            self.wake.set_result(None)
