"""Fixtures that run a real ``tailguard serve`` process on a loopback port."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(predicate: Callable[[], bool], timeout_s: float, what: str) -> None:
    """Poll ``predicate`` until true; fail the test with ``what`` after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")


class ServerProcess:
    """A ``tailguard serve`` subprocess with its config, port and log."""

    def __init__(self, config: dict[str, Any], workdir: Path, home: Path | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.config_path = workdir / f"serve-{self.port}.yaml"
        self.config_path.write_text(yaml.safe_dump({**config, "port": self.port}))
        self.log_path = workdir / f"serve-{self.port}.log"
        env = {**os.environ, "TAILGUARD_HOME": str(home or workdir / "home")}
        self._log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tailguard", "serve", "--config", str(self.config_path)],
            stdout=self._log, stderr=subprocess.STDOUT, env=env,
        )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def get(self, path: str, **kw: Any) -> httpx.Response:
        return httpx.get(self.url + path, timeout=10, **kw)

    def post(self, path: str, **kw: Any) -> httpx.Response:
        return httpx.post(self.url + path, timeout=30, **kw)

    def ready(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(f"server exited with {self.proc.returncode}:\n{self.log()}")
        try:
            return self.get("/v2/health/ready").status_code == 200
        except httpx.HTTPError:
            return False

    def wait_ready(self, timeout_s: float = 120) -> ServerProcess:
        wait_for(self.ready, timeout_s, f"server ready on {self.url}")
        return self

    def deployment(self, name: str) -> dict[str, Any]:
        data = json.loads(self.get("/v1/deployments").content)
        return next(d for d in data["deployments"] if d["name"] == name)

    def replica_pids(self, name: str) -> list[int]:
        return [r["pid"] for r in self.deployment(name)["replicas"] if r["state"] == "ready"]

    def stop(self, sig: int = signal.SIGTERM, timeout_s: float = 30) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        return self.proc.returncode


@pytest.fixture
def start_server(tmp_path: Path) -> Iterator[Callable[..., ServerProcess]]:
    servers: list[ServerProcess] = []

    def start(config: dict[str, Any], home: Path | None = None) -> ServerProcess:
        server = ServerProcess(config, tmp_path, home)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop(signal.SIGKILL)


BUILTIN_CONFIG: dict[str, Any] = {
    "max_request_bytes": 65536,
    "deployments": [
        {"name": "echo", "model": "tailguard.models.echo:Echo", "max_wait_ms": 0,
         "max_batch_size": 64},
        {"name": "minilm", "model": "tailguard.models.minilm:MiniLM", "max_batch_size": 16,
         "options": {"threads": 1}},
    ],
}


@pytest.fixture(scope="session")
def builtin_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One server with the built-in models, shared by the read-mostly protocol tests."""
    server = ServerProcess(BUILTIN_CONFIG, tmp_path_factory.mktemp("builtin"))
    try:
        yield server.wait_ready()
    finally:
        server.stop(signal.SIGKILL)


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[Any]:
    """One real Ray cluster for the session's Ray tests: a head with no CPUs and two 2-CPU
    worker nodes, each its own raylet (tests that kill a node add a fresh one after)."""
    from tests.support.ray_cluster import RayTestCluster

    cluster = RayTestCluster(nodes=2, cpus_per_node=2)
    try:
        yield cluster
    finally:
        import ray

        if ray.is_initialized():  # the Ray engine's tests drive jobs from this process
            ray.shutdown()
        cluster.shutdown()
