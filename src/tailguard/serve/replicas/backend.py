"""The replica backend seam: how replica processes are started, called, checked and stopped.

The deployment runtime only talks to :class:`ReplicaHandle`; the local backend runs replicas as
child processes on this machine, and other backends (Ray actors on other nodes) plug in here.
"""

from __future__ import annotations

from typing import Protocol

from tailguard.serve.config import DeploymentSpec
from tailguard.serve.replicas.messages import BatchError, BatchResult
from tailguard.tensors import Tensors


class ReplicaDied(Exception):
    """The replica went away (crash, SIGKILL, closed socket) before answering."""


class ReplicaSetupFailed(Exception):
    """The replica could not load its model; carries the replica's own error text."""


class ReplicaHandle(Protocol):
    """One replica: a process that serves one batch at a time."""

    @property
    def name(self) -> str: ...

    @property
    def pid(self) -> int | None: ...

    async def start(self) -> float:
        """Spawn and wait until the model is loaded; returns setup seconds.

        Raises :class:`ReplicaSetupFailed` or :class:`ReplicaDied`."""
        ...

    async def infer(self, batch_id: int, tensors: Tensors,
                    traceparent: str | None = None) -> BatchResult | BatchError:
        """Run one batch. Raises :class:`ReplicaDied` if the replica vanishes meanwhile.

        ``traceparent`` (W3C) names the gateway's batch span; the replica's predict span is
        its child. The batcher passes it only for a traced batch, so a handle that ignores
        traces may leave it out."""
        ...

    async def wait_closed(self) -> None:
        """Return once the replica's connection is gone (it died or was stopped)."""
        ...

    def alive(self) -> bool: ...

    async def stop(self, timeout_s: float) -> None:
        """Ask the replica to exit after its current batch; kill it after ``timeout_s``."""
        ...


class ReplicaBackend(Protocol):
    """Creates replica handles for a deployment."""

    def create(self, spec: DeploymentSpec, index: int) -> ReplicaHandle: ...
