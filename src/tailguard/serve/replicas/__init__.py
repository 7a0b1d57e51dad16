"""Replica processes: backend seam, local backend, worker main loop and wire codec."""

from tailguard.serve.replicas.backend import (
    ReplicaBackend,
    ReplicaDied,
    ReplicaHandle,
    ReplicaSetupFailed,
)
from tailguard.serve.replicas.local import LocalBackend, LocalReplica

__all__ = [
    "LocalBackend",
    "LocalReplica",
    "ReplicaBackend",
    "ReplicaDied",
    "ReplicaHandle",
    "ReplicaSetupFailed",
]
