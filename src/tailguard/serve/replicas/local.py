"""Local backend: each replica is a child process talking over a socketpair.

The child is a fresh interpreter (``python -m tailguard.serve.replicas.worker``), never a fork of
the gateway, and inherits one end of a Unix socketpair. Its own process group keeps the
terminal's Ctrl-C away from it: the gateway decides when replicas stop. Not its own session:
with the kernel's autogroup scheduling (on by default on desktop and many server kernels) each
session is a scheduling group with a full share of the CPU, so a replica in a session of its
own would compete with the gateway as an equal, whatever its niceness or SCHED_IDLE say.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import sys
from collections.abc import Mapping
from typing import cast

from tailguard.serve.config import DeploymentSpec
from tailguard.serve.replicas.backend import ReplicaDied, ReplicaSetupFailed
from tailguard.serve.replicas.codec import FrameReader, decode, encode
from tailguard.serve.replicas.messages import (
    BatchError,
    BatchRequest,
    BatchResult,
    Message,
    Ready,
    SetupFailed,
    Stop,
)
from tailguard.tensors import Tensors

# numpy's BLAS pool would start a thread per core in every replica; replicas are the unit of
# parallelism (a model sets its own torch threads), and a BLAS call that hands work to a pool
# thread waits on it, which under SCHED_IDLE and busy cores costs whole scheduler slices.
# The host's or the deployment's env overrides it.
REPLICA_ENV_DEFAULTS = {"OPENBLAS_NUM_THREADS": "1"}

class _Channel(asyncio.Protocol):
    """Gateway end of the socket: frames in, one pending reply at a time."""

    def __init__(self) -> None:
        loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self.reader = FrameReader()
        self.ready: asyncio.Future[Ready] = loop.create_future()
        self.reply: asyncio.Future[BatchResult | BatchError] | None = None
        self.closed: asyncio.Future[None] = loop.create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but have its API.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        for frame in self.reader.feed(data):
            self._dispatch(decode(frame))

    def _dispatch(self, msg: Message) -> None:
        if isinstance(msg, Ready):
            if not self.ready.done():
                self.ready.set_result(msg)
        elif isinstance(msg, SetupFailed):
            if not self.ready.done():
                self.ready.set_exception(ReplicaSetupFailed(msg.error))
        elif isinstance(msg, BatchResult | BatchError):
            reply, self.reply = self.reply, None
            if reply is not None and not reply.done():
                reply.set_result(msg)

    def connection_lost(self, exc: Exception | None) -> None:
        died = ReplicaDied(f"replica connection closed ({exc or 'EOF'})")
        for fut in (self.ready, self.reply):
            if fut is not None and not fut.done():
                fut.set_exception(died)
        if not self.closed.done():
            self.closed.set_result(None)
        # Nobody may await `ready` (e.g. closed after setup): mark its exception retrieved.
        if self.ready.done() and not self.ready.cancelled():
            self.ready.exception()

    def send(self, msg: Message) -> None:
        if self.transport is None or self.transport.is_closing():
            raise ReplicaDied("replica connection is closed")
        self.transport.writelines(encode(msg))


class LocalReplica:
    """A replica process on this machine."""

    def __init__(self, spec: DeploymentSpec, index: int,
                 env: Mapping[str, str] | None = None) -> None:
        self._spec = spec
        self._env = dict(env or {})
        self._name = f"{spec.name}-{index}"
        self._proc: asyncio.subprocess.Process | None = None
        self._channel: _Channel | None = None

    @property
    def name(self) -> str:
        return self._name

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    async def start(self) -> float:
        loop = asyncio.get_running_loop()
        parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        env = {**REPLICA_ENV_DEFAULTS, **os.environ, **self._spec.env, **self._env,
               "TAILGUARD_REPLICA": self._name}
        try:
            self._proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "tailguard.serve.replicas.worker",
                "--fd", str(child.fileno()), "--spec", self._spec.model_dump_json(),
                pass_fds=(child.fileno(),), preexec_fn=os.setpgrp, env=env,
                stdin=asyncio.subprocess.DEVNULL,
            )
        finally:
            child.close()
        _, channel = await loop.create_unix_connection(_Channel, sock=parent)
        self._channel = channel
        try:
            ready = await asyncio.wait_for(asyncio.shield(channel.ready),
                                           self._spec.startup_timeout_s)
        except TimeoutError:
            await self.kill()
            raise ReplicaSetupFailed(
                f"{self._name}: setup() did not finish within {self._spec.startup_timeout_s} s"
            ) from None
        except BaseException:
            await self.kill()
            raise
        return ready.setup_s

    async def infer(self, batch_id: int, tensors: Tensors,
                    traceparent: str | None = None) -> BatchResult | BatchError:
        channel = self._channel
        if channel is None:
            raise ReplicaDied(f"{self._name} is not started")
        reply: asyncio.Future[BatchResult | BatchError] = (
            asyncio.get_running_loop().create_future()
        )
        channel.reply = reply
        channel.send(BatchRequest(batch_id, tensors, traceparent))
        return await reply

    async def wait_closed(self) -> None:
        if self._channel is not None:
            await self._channel.closed

    def alive(self) -> bool:
        return (
            self._proc is not None and self._proc.returncode is None
            and self._channel is not None and not self._channel.closed.done()
        )

    async def stop(self, timeout_s: float) -> None:
        if self._channel is not None:
            with contextlib.suppress(ReplicaDied):
                self._channel.send(Stop())
        if self._proc is None:
            return
        try:
            await asyncio.wait_for(self._proc.wait(), timeout_s)
        except TimeoutError:
            await self.kill()
        self._close_channel()

    async def kill(self) -> None:
        if self._proc is not None and self._proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self._proc.kill()
            await self._proc.wait()
        self._close_channel()

    def _close_channel(self) -> None:
        if self._channel is not None and self._channel.transport is not None:
            self._channel.transport.close()


class LocalBackend:
    """Replica processes on this machine; ``env`` is added to every replica's environment
    (the gateway's tracing spec)."""

    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        self._env = dict(env or {})

    def create(self, spec: DeploymentSpec, index: int) -> LocalReplica:
        return LocalReplica(spec, index, self._env)


