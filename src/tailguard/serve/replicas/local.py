"""Local backend: each replica is a process talking over a socketpair.

The replica is never a fork of the gateway: it is a fork of the pre-imported replica template
(:mod:`.template`: Python, numpy, torch and transformers already imported, so a cold start
is ``setup()`` alone), or — a deployment with its own ``env``, which must be set before the
imports, the template unusable or ``TAILGUARD_REPLICA_TEMPLATE=0`` — a fresh interpreter
(``python -m tailguard.serve.replicas.worker``). Either way it holds one end of a Unix
socketpair. Its own process group keeps the
terminal's Ctrl-C away from it: the gateway decides when replicas stop. Not its own session:
with the kernel's autogroup scheduling (on by default on desktop and many server kernels) each
session is a scheduling group with a full share of the CPU, so a replica in a session of its
own would compete with the gateway as an equal, whatever its niceness or SCHED_IDLE say.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import sys
from collections.abc import Iterable, Mapping
from typing import Any, cast

from tailguard.serve.config import DeploymentSpec
from tailguard.serve.replicas.backend import ReplicaDied, ReplicaSetupFailed
from tailguard.serve.replicas.codec import FrameReader, decode, encode
from tailguard.serve.replicas.forked import TemplateClient, template_enabled
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

log = logging.getLogger("tailguard.serve")

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
                 env: Mapping[str, str] | None = None,
                 backend: LocalBackend | None = None) -> None:
        self._spec = spec
        self._env = dict(env or {})
        self._name = f"{spec.name}-{index}"
        self._backend = backend
        self._proc: Any = None  # asyncio.subprocess.Process, or a ForkedProcess
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
        template = None
        if self._backend is not None and not self._spec.env:
            template = await self._backend.template([self._spec])
        try:
            if template is not None:
                self._proc = await template.fork(child.fileno(), self._spec.model_dump_json(),
                                                 {**self._env, "TAILGUARD_REPLICA": self._name})
            else:
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
    """Replica processes on this machine, forked from one replica template when it can.

    :meth:`warm` starts the template early (the gateway does, with every local deployment,
    before their replicas); otherwise the first replica starts it."""

    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        self._env = dict(env or {})  # added to every replica's environment (tracing)
        self._template: asyncio.Task[TemplateClient | None] | None = None

    def create(self, spec: DeploymentSpec, index: int) -> LocalReplica:
        return LocalReplica(spec, index, self._env, self)

    def warm(self, specs: Iterable[DeploymentSpec]) -> None:
        """Start the template, importing what ``specs``' models declare (``preload``)."""
        if self._template is None and template_enabled():
            self._template = asyncio.create_task(self._start_template(list(specs)))

    async def template(self, specs: Iterable[DeploymentSpec]) -> TemplateClient | None:
        """The running template, or ``None`` (disabled, unusable, or it died)."""
        self.warm(specs)
        if self._template is None:
            return None
        client = await asyncio.shield(self._template)
        return client if client is not None and client.usable else None

    async def _start_template(self, specs: list[DeploymentSpec]) -> TemplateClient | None:
        client = TemplateClient()
        env = {**REPLICA_ENV_DEFAULTS, **os.environ}
        timeout = max((s.startup_timeout_s for s in specs), default=300.0)
        try:
            ok = await client.start(preloads(specs), env, timeout)
        except Exception:  # the template is an optimisation: never fail a start over it
            log.exception("replica template failed to start")
            return None
        return client if ok else None

    async def close(self) -> None:
        task, self._template = self._template, None
        if task is None:
            return
        client = await task
        if client is not None:
            await client.close()


def preloads(specs: Iterable[DeploymentSpec]) -> set[str]:
    """Modules the specs' model classes declare in ``preload`` (an unloadable one: none)."""
    from tailguard.serve.loader import instantiate

    modules: set[str] = set()
    for spec in specs:
        try:
            modules.update(type(instantiate(spec)).preload)
        except Exception:  # the replica's own start reports what is wrong with it
            continue
    return modules


