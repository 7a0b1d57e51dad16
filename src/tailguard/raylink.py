"""This process's one connection to a Ray cluster, shared by serving and training.

Ray is an optional extra (``pip install 'tailguard[ray]'``): nothing imports it until a
deployment or a job asks for it, and then a missing install or an unreachable cluster is one
clear error naming the address, not a traceback from inside Ray.
"""

from __future__ import annotations

import os
import socket
import threading
from typing import Any, NamedTuple

__all__ = ["NAMESPACE", "NodeInfo", "RayUnavailable", "alive_nodes", "check_reachable", "connect",
           "require_ray"]

NAMESPACE = "tailguard"
_lock = threading.Lock()
_connected: str | None = None  # the address this process connected to ('' for a local Ray)


class RayUnavailable(RuntimeError):
    """Ray is not installed, or the cluster cannot be reached."""


def require_ray() -> Any:
    """The ``ray`` module, or :class:`RayUnavailable` saying how to install it."""
    try:
        import ray
    except ImportError as exc:
        raise RayUnavailable("Ray is not installed: pip install 'tailguard[ray]'") from exc
    return ray


def connect(address: str | None) -> None:
    """Connect this process to the cluster at ``address`` ('auto', 'HOST:PORT', 'ray://…'),
    or, with None, to $RAY_ADDRESS or a Ray started on this machine. Idempotent; a second,
    different address is an error (Ray allows one cluster per process)."""
    global _connected
    ray = require_ray()
    address = address or os.environ.get("RAY_ADDRESS") or None
    with _lock:
        wanted = address or ""
        if ray.is_initialized():
            if _connected is not None and wanted and wanted != _connected:
                raise RayUnavailable(f"this process is connected to the Ray cluster at "
                                     f"{_connected or 'a local Ray'}; cannot also use {address}")
            _connected = _connected if _connected is not None else wanted
            return
        if address:
            check_reachable(address)
        try:
            ray.init(address=address, namespace=NAMESPACE, logging_level="WARNING",
                     configure_logging=True, log_to_driver=True)
        except (ConnectionError, TimeoutError, RuntimeError, ValueError) as exc:
            where = address or "a local Ray"
            raise RayUnavailable(f"cannot reach the Ray cluster at {where}: "
                                 f"{type(exc).__name__}: {str(exc).splitlines()[0]}") from exc
        _connected = wanted


REACH_TIMEOUT_S = 3.0


def check_reachable(address: str) -> None:
    """A GCS address that refuses connections fails here in seconds: ``ray.init`` would
    retry it for minutes. 'auto' and 'ray://' addresses are left to Ray."""
    if address == "auto" or "://" in address:
        return
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise RayUnavailable(f"Ray address {address!r}: expected 'auto', HOST:PORT or "
                             "ray://HOST:PORT")
    try:
        socket.create_connection((host, int(port)), timeout=REACH_TIMEOUT_S).close()
    except OSError as exc:
        raise RayUnavailable(f"cannot reach the Ray cluster at {address}: {exc} (is the head "
                             "running? `ray start --head` prints its address)") from exc


class NodeInfo(NamedTuple):
    node_id: str
    address: str
    resources: dict[str, float]  # the node's totals


def alive_nodes() -> list[NodeInfo]:
    """The cluster's live nodes as the GCS sees them (its node table)."""
    ray = require_ray()
    return [NodeInfo(n["NodeID"], n.get("NodeManagerAddress", ""), dict(n.get("Resources", {})))
            for n in ray.nodes() if n.get("Alive")]
