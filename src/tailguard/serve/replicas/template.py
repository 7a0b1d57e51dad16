"""The replica template: a pre-imported process that forks new replicas (a forkserver).

A replica started as a fresh interpreter pays for Python, numpy, torch and transformers
before its ``setup()`` even begins: seconds on a small machine, and what a burst waits
for before a new replica helps. The template pays them once: it imports the modules the
deployments' models declare (``Model.preload``) and then waits; asked for a replica, it
forks, and the child runs :func:`~tailguard.serve.replicas.worker.serve_replica` with the
imports already done (pages shared copy-on-write, not copied).

Forking is safe only from a single-threaded process (a lock held by another thread stays
held forever in the child), so the template imports nothing that starts a thread — no torch
op has run (its pools start lazily), and a model whose imports start threads (onnxruntime's)
does not list them — and checks it: with a second thread after the imports it reports itself
unusable and the backend spawns fresh interpreters as before.

Protocol (a Unix stream socket to the gateway): the gateway sends a JSON line
``{"spec": ..., "env": {...}}`` with the replica's socket attached (``SCM_RIGHTS``); the
template answers ``{"pid": N}`` (or ``{"error": ...}``). The template's first line is
``{"ready": true, "threads": 1}`` or ``{"ready": false, "why": ...}``. It exits when the
gateway closes the socket; SIGCHLD is ignored, so exited replicas are reaped by the kernel
(the gateway watches each through a pidfd, not as its child).
"""

from __future__ import annotations

import argparse
import array
import contextlib
import importlib
import json
import os
import signal
import socket
import sys
from typing import Any

_MAX_LINE = 1 << 20


def thread_count() -> int:
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:
        return 1


def _recv_request(sock: socket.socket) -> tuple[dict[str, Any], int] | None:
    """One JSON line and the socket fd attached to it, or ``None`` at EOF."""
    fds = array.array("i")
    data = b""
    while not data.endswith(b"\n"):
        msg, ancdata, _, _ = sock.recvmsg(_MAX_LINE, socket.CMSG_SPACE(fds.itemsize))
        if not msg:
            return None
        data += msg
        for level, kind, payload in ancdata:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                fds.frombytes(payload[: len(payload) - len(payload) % fds.itemsize])
    if len(fds) != 1:
        raise ValueError(f"expected one socket with the request, got {len(fds)}")
    return json.loads(data), fds[0]


def _send(sock: socket.socket, doc: dict[str, Any]) -> None:
    sock.sendall(json.dumps(doc).encode() + b"\n")


def _fork_replica(control: socket.socket, request: dict[str, Any], fd: int) -> int:
    pid = os.fork()
    if pid:
        return pid
    # The child: a replica. It must not hold the template's control socket, or the gateway
    # closing it would not end the template while this replica lives.
    code = 1
    try:
        control.close()
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        os.setpgrp()  # as a spawned replica: Ctrl-C at the terminal is the gateway's
        os.environ.update(request.get("env") or {})
        os.environ["TAILGUARD_REPLICA_FORKED"] = "1"
        from tailguard.serve.replicas.worker import serve_replica

        code = serve_replica(fd, request["spec"])
    except BaseException as exc:  # never return into the template's loop
        print(f"replica from template failed: {type(exc).__name__}: {exc}", file=sys.stderr)
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="tailguard replica template")
    parser.add_argument("--fd", type=int, required=True)
    parser.add_argument("--preload", default="", help="comma-separated modules to import")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # the kernel reaps exited replicas
    control = socket.socket(fileno=args.fd)
    import tailguard.serve.replicas.worker  # noqa: F401  (what every replica runs)

    failed: list[str] = []
    for name in filter(None, args.preload.split(",")):
        try:
            importlib.import_module(name)
        except Exception as exc:  # the replica will import it itself, and fail there
            failed.append(f"{name}: {exc}")
    threads = thread_count()
    if threads != 1:
        _send(control, {"ready": False, "why": f"{threads} threads after the imports: "
                                               "forking would be unsafe"})
        return 1
    _send(control, {"ready": True, "threads": threads, "failed": failed})
    while True:
        try:
            got = _recv_request(control)
        except (OSError, ValueError) as exc:
            print(f"replica template: bad request: {exc}", file=sys.stderr)
            return 1
        if got is None:
            return 0
        request, fd = got
        try:
            pid = _fork_replica(control, request, fd)
        except OSError as exc:
            _send(control, {"error": f"fork failed: {exc}"})
        else:
            _send(control, {"pid": pid})
        finally:
            with contextlib.suppress(OSError):
                os.close(fd)


if __name__ == "__main__":
    sys.exit(main())
