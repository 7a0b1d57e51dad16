"""An in-process replica backend that still serialises every message through the codec."""

from __future__ import annotations

import asyncio
import os

from tailguard.models.base import Model
from tailguard.serve.config import DeploymentSpec
from tailguard.serve.loader import instantiate
from tailguard.serve.replicas.backend import ReplicaDied
from tailguard.serve.replicas.codec import decode, encode
from tailguard.serve.replicas.messages import (
    BatchError,
    BatchRequest,
    BatchResult,
    ErrorKind,
)
from tailguard.tensors import Tensors


def _wire(msg: object) -> object:
    frame = b"".join(bytes(b) for b in encode(msg))  # type: ignore[arg-type]
    return decode(memoryview(frame)[4:])


class FakeReplica:
    def __init__(self, spec: DeploymentSpec, index: int, backend: FakeBackend) -> None:
        self._spec = spec
        self.index = index
        self._backend = backend
        self._model: Model | None = None
        self._closed: asyncio.Future[None] | None = None
        self._reply: asyncio.Future[None] | None = None
        self.batches: list[int] = []  # rows per batch served
        self.traceparents: list[str | None] = []  # what each batch message carried

    @property
    def name(self) -> str:
        return f"{self._spec.name}-{self.index}"

    @property
    def pid(self) -> int | None:
        return os.getpid()

    async def start(self) -> float:
        self._closed = asyncio.get_running_loop().create_future()
        if self._backend.fail_setup:
            raise ReplicaDied("setup failed on purpose")
        gate = self._backend.hold_start.get(self.index)
        if gate is not None:
            await gate.wait()  # this replica's setup takes until the test lets it go
        self._model = instantiate(self._spec)
        self._model.setup()
        self._backend.started.append(self)
        return 0.0

    async def infer(self, batch_id: int, tensors: Tensors,
                    traceparent: str | None = None) -> BatchResult | BatchError:
        request = _wire(BatchRequest(batch_id, tensors, traceparent))
        assert isinstance(request, BatchRequest) and self._model is not None
        self.batches.append(len(next(iter(request.tensors.values()))))
        self.traceparents.append(request.traceparent)
        self._reply = asyncio.get_running_loop().create_future()
        delay = asyncio.ensure_future(asyncio.sleep(self._backend.delay_s))
        await asyncio.wait({delay, self._reply}, return_when=asyncio.FIRST_COMPLETED)
        delay.cancel()
        if self._reply.done():
            raise ReplicaDied("killed mid-batch")
        try:
            out = self._model.predict(request.tensors)
        except ValueError as exc:
            return BatchError(batch_id, ErrorKind.BAD_INPUT, str(exc))
        reply = _wire(BatchResult(batch_id, out, self._backend.delay_s))
        assert isinstance(reply, BatchResult)
        return reply

    def kill(self) -> None:
        if self._reply is not None and not self._reply.done():
            self._reply.set_result(None)
        if self._closed is not None and not self._closed.done():
            self._closed.set_result(None)

    async def wait_closed(self) -> None:
        assert self._closed is not None
        await self._closed

    def alive(self) -> bool:
        return self._closed is not None and not self._closed.done()

    async def stop(self, timeout_s: float) -> None:
        self.kill()


class FakeBackend:
    def __init__(self, delay_s: float = 0.0, fail_setup: bool = False) -> None:
        self.delay_s = delay_s
        self.fail_setup = fail_setup
        self.started: list[FakeReplica] = []
        self.hold_start: dict[int, asyncio.Event] = {}  # slot index -> setup finishes on set

    def create(self, spec: DeploymentSpec, index: int) -> FakeReplica:
        return FakeReplica(spec, index, self)
