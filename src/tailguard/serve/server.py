"""Run the gateway under uvicorn (uvloop + httptools) with graceful shutdown.

SIGHUP re-reads ``--config`` and applies it live (as ``tailguard apply`` does).
SIGTERM or Ctrl-C: uvicorn stops accepting connections and waits for in-flight requests; the
app's lifespan shutdown then drains the queues and stops the replica processes; exit status 0.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import socket
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import uvicorn

from tailguard.sched import request_short_slice
from tailguard.serve.app import Gateway
from tailguard.serve.config import ServeConfig
from tailguard.serve.live_apply import ConfigApplier

log = logging.getLogger("tailguard.serve")


class PortInUse(OSError):
    """The configured address cannot be bound: said before any replica starts."""


def _bind(host: str, port: int) -> socket.socket:
    """Bind the listening socket now: uvicorn binds only after the lifespan has started
    every replica, so a port in use would surface after minutes of model loading."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        why = "is already in use" if exc.errno == errno.EADDRINUSE else f"cannot be bound ({exc})"
        raise PortInUse(f"{host}:{port} {why}; pass --port or set 'port' in the config "
                        "(0 picks a free one)") from None
    sock.set_inheritable(True)
    return sock


class _Server(uvicorn.Server):
    """uvicorn re-raises a captured SIGTERM/SIGINT after shutdown; a drained stop exits 0."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        with super().capture_signals():
            yield
            if self._captured_signals:
                log.info("stopped cleanly after signal %s", self._captured_signals[-1])
            self._captured_signals.clear()


def serve(config: ServeConfig, config_path: Path | None = None,
          overrides: Mapping[str, Any] | None = None) -> None:
    """Serve ``config`` until SIGTERM/SIGINT; SIGHUP re-reads ``config_path`` (read from it,
    with the command line's ``overrides`` on top) and applies it live."""
    logging.basicConfig(level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if config.host not in ("127.0.0.1", "localhost", "::1"):
        log.warning("binding to %s: the server is reachable from other machines", config.host)
    sock = _bind(config.host, config.port)
    app = Gateway(config)
    app.applier = ConfigApplier(app, config_path, overrides)
    uv_config = uvicorn.Config(
        app,
        host=config.host,
        port=config.port,
        loop="uvloop",
        http="httptools",
        lifespan="on",
        access_log=False,
        log_level="info",
        timeout_graceful_shutdown=int(config.graceful_shutdown_s),
        backlog=4096,
        proxy_headers=False,  # nothing proxies to us by default; saves a middleware per call
        server_header=False,
    )
    log.info("serving %s on http://%s:%d", ", ".join(app.deployments), config.host,
             sock.getsockname()[1])
    # The gateway wakes for every request and sleeps between: a short scheduler slice lets it
    # preempt a replica's batch at once (replicas are spawned later and ask for none).
    if not request_short_slice():
        log.debug("the kernel took no short scheduler slice for the gateway")
    _Server(uv_config).run(sockets=[sock])
