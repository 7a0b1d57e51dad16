"""The replica as a Ray actor: the same model, setup and batch path as a local replica process.

Runs on whichever node Ray placed it. A threaded actor with three lanes: ``infer`` (one batch
at a time, under a lock), ``park`` (a call that never returns while the actor lives, so the
gateway learns of its death from the call failing — the moment Ray's core worker does, not
after a periodic health check) and ``drain`` (waits for the batch in hand, then lets the
gateway kill the actor).
"""

from __future__ import annotations

import os
import threading
import time
from typing import TYPE_CHECKING

from tailguard.models.base import Model
from tailguard.serve.config import DeploymentSpec
from tailguard.serve.loader import instantiate
from tailguard.serve.replicas.messages import BatchError, BatchResult
from tailguard.serve.replicas.worker import lower_priority, replica_tracing, traced_batch
from tailguard.tensors import Tensors

if TYPE_CHECKING:
    from tailguard.observe.tracing import Tracing

ACTOR_LANES = 3  # infer, park, drain


class ReplicaActor:
    """Wrapped by ``ray.remote`` in :mod:`tailguard.serve.replicas.ray_backend`."""

    def __init__(self, spec_json: str) -> None:
        self._spec = DeploymentSpec.model_validate_json(spec_json)
        self._busy = threading.Lock()
        self._stopped = threading.Event()
        self._model: Model | None = None
        self._tracing: Tracing | None = None

    def setup(self) -> tuple[int, str, float]:
        """Load the model: (pid, node id, setup seconds)."""
        import ray

        lower_priority(self._spec)  # as a local replica: the gateway may share this host
        start = time.perf_counter()
        model = instantiate(self._spec)
        model.setup()
        self._model = model
        # Its env (runtime_env) carries the gateway's tracing spec; spans export from here.
        self._tracing = replica_tracing(self._spec)
        return os.getpid(), ray.get_runtime_context().get_node_id(), time.perf_counter() - start

    def infer(self, batch_id: int, tensors: Tensors,
              traceparent: str | None = None) -> BatchResult | BatchError:
        if self._model is None:
            raise RuntimeError("infer() before setup()")
        with self._busy:
            return traced_batch(self._tracing, self._model, batch_id, tensors, traceparent)

    def park(self) -> None:
        """Returns only once the replica is draining: its failure is the death notice."""
        self._stopped.wait()

    def drain(self) -> None:
        """Finish the batch in hand, release ``park``; the gateway then kills the actor."""
        with self._busy:
            if self._tracing is not None:
                self._tracing.shutdown()  # the gateway kills the actor next: export now
            self._stopped.set()
