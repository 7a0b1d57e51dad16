"""The gateway's end of the replica template (:mod:`.template`): start it, ask it for replicas.

:class:`TemplateClient` runs the template process and turns a replica request into a pid;
:class:`ForkedProcess` is that replica as the gateway sees it — not its child (the
template's), so it is watched through a pidfd (Linux >= 5.3) and signalled by pid, with the
same ``pid`` / ``returncode`` / ``wait()`` / ``kill()`` as an ``asyncio.subprocess.Process``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import socket
import sys
from collections.abc import Iterable, Mapping
from typing import Any

log = logging.getLogger("tailguard.serve")

__all__ = ["ForkedProcess", "TemplateClient", "template_enabled"]


def template_enabled() -> bool:
    """On unless ``TAILGUARD_REPLICA_TEMPLATE=0``, where pidfds exist (Linux)."""
    return (os.environ.get("TAILGUARD_REPLICA_TEMPLATE", "1") != "0"
            and sys.platform.startswith("linux") and hasattr(os, "pidfd_open"))


class ForkedProcess:
    """A replica forked by the template, watched through a pidfd."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.returncode: int | None = None
        loop = asyncio.get_running_loop()
        self._exited: asyncio.Future[None] = loop.create_future()
        self._fd: int | None = None
        try:
            self._fd = os.pidfd_open(pid)
        except ProcessLookupError:  # gone already
            self._mark_exited()
            return
        loop.add_reader(self._fd, self._mark_exited)

    def _mark_exited(self) -> None:
        # Not our child: its exit status is the template's (reaped by the kernel). A replica
        # that exits is dead whatever its code; -1 says "exited, status unknown".
        if self.returncode is None:
            self.returncode = -1
        if self._fd is not None:
            with contextlib.suppress(Exception):
                asyncio.get_running_loop().remove_reader(self._fd)
            os.close(self._fd)
            self._fd = None
        if not self._exited.done():
            self._exited.set_result(None)

    async def wait(self) -> int:
        await self._exited
        assert self.returncode is not None
        return self.returncode

    def kill(self) -> None:
        if self._fd is not None:
            signal.pidfd_send_signal(self._fd, signal.SIGKILL)  # never a reused pid
        elif self.returncode is None:
            raise ProcessLookupError(self.pid)


class TemplateClient:
    """One template process, started by :meth:`start` with the modules to import."""

    def __init__(self) -> None:
        self._proc: asyncio.subprocess.Process | None = None
        self._sock: socket.socket | None = None
        self._buffer = b""
        self._lock = asyncio.Lock()
        self.usable = False
        self.why: str | None = None

    async def start(self, preload: Iterable[str], env: Mapping[str, str],
                    timeout_s: float) -> bool:
        """Start the template and wait for its imports; ``False`` if it is not usable."""
        parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            self._proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "tailguard.serve.replicas.template",
                "--fd", str(child.fileno()), "--preload", ",".join(sorted(set(preload))),
                pass_fds=(child.fileno(),), preexec_fn=os.setpgrp, env=dict(env),
                stdin=asyncio.subprocess.DEVNULL,
            )
        finally:
            child.close()
        parent.setblocking(False)
        self._sock = parent
        try:
            hello = await asyncio.wait_for(self._read(), timeout_s)
        except (TimeoutError, OSError, ValueError) as exc:
            hello = {"ready": False, "why": f"no answer: {exc or type(exc).__name__}"}
        self.usable = bool(hello.get("ready"))
        self.why = None if self.usable else str(hello.get("why"))
        if not self.usable:
            log.warning("replica template unusable (%s): replicas start as fresh "
                        "interpreters", self.why)
            await self.close()
        return self.usable

    async def _read(self) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        assert self._sock is not None
        while b"\n" not in self._buffer:
            chunk = await loop.sock_recv(self._sock, 65536)
            if not chunk:
                raise OSError("the replica template exited")
            self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        doc = json.loads(line)
        if not isinstance(doc, dict):
            raise ValueError(f"bad answer from the template: {line!r}")
        return doc

    async def fork(self, fd: int, spec_json: str, env: Mapping[str, str]) -> ForkedProcess:
        """A new replica on socket ``fd`` (the template gets its own copy of the fd)."""
        async with self._lock:  # one request, one answer
            if self._sock is None or not self.usable:
                raise OSError("the replica template is not running")
            body = json.dumps({"spec": spec_json, "env": dict(env)}).encode() + b"\n"
            # A small message into an empty socket buffer: sendmsg does not block.
            self._sock.sendmsg([body], [(socket.SOL_SOCKET, socket.SCM_RIGHTS,
                                         memoryview(bytes(_int_array(fd))))])
            answer = await self._read()
        if "pid" not in answer:
            raise OSError(str(answer.get("error", answer)))
        return ForkedProcess(int(answer["pid"]))

    async def close(self) -> None:
        self.usable = False
        if self._sock is not None:
            self._sock.close()  # EOF: the template exits
            self._sock = None
        if self._proc is not None and self._proc.returncode is None:
            try:
                await asyncio.wait_for(self._proc.wait(), 5.0)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    self._proc.kill()
                await self._proc.wait()


def _int_array(fd: int) -> Any:
    import array

    return array.array("i", [fd])
