"""Typed messages between the gateway and a replica process (one message per batch)."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from tailguard.tensors import Tensors


class ErrorKind(StrEnum):
    """Why a batch failed inside a replica."""

    BAD_INPUT = "bad_input"  # the model rejected its input (ValueError/TypeError): 400
    MODEL = "model"  # the model raised anything else: 500


@dataclass(frozen=True)
class Ready:
    """Sent once by a replica after ``setup()`` succeeded."""

    pid: int
    setup_s: float


@dataclass(frozen=True)
class SetupFailed:
    """Sent instead of :class:`Ready` when the model could not be loaded."""

    error: str


@dataclass(frozen=True)
class BatchRequest:
    batch_id: int
    tensors: Tensors = field(repr=False)
    # W3C traceparent of the gateway's batch span: the replica's predict span is its child.
    traceparent: str | None = None


@dataclass(frozen=True)
class BatchResult:
    batch_id: int
    tensors: Tensors = field(repr=False)
    service_s: float


@dataclass(frozen=True)
class BatchError:
    batch_id: int
    kind: ErrorKind
    error: str


@dataclass(frozen=True)
class Stop:
    """Ask a replica to exit after its current batch."""


Message = Ready | SetupFailed | BatchRequest | BatchResult | BatchError | Stop
