"""Shared helpers for the benchmark scripts: start servers, run `tailguard load`, wait."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import yaml

PY = sys.executable


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_ready(url: str, proc: subprocess.Popen[bytes], timeout_s: float = 180) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url + "/v2/health/ready", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} not ready after {timeout_s} s")


class Server:
    """A server subprocess (stopped with SIGTERM, then SIGKILL) on a free loopback port."""

    def __init__(self, argv: list[str], port: int, log_name: str) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.log = Path(tempfile.gettempdir()) / f"tailguard-bench-{log_name}-{port}.log"
        self.proc = subprocess.Popen(argv, stdout=self.log.open("wb"), stderr=subprocess.STDOUT,
                                     env={**os.environ, "PYTHONUNBUFFERED": "1"})

    def __enter__(self) -> Server:
        try:
            wait_ready(self.url, self.proc)
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def tailguard_server(deployments: list[dict[str, Any]], name: str) -> Server:
    port = free_port()
    cfg = Path(tempfile.gettempdir()) / f"tailguard-bench-{name}-{port}.yaml"
    cfg.write_text(yaml.safe_dump({"port": port, "deployments": deployments}))
    return Server([PY, "-m", "tailguard", "serve", "--config", str(cfg)], port, name)


def load(url: str, model: str, *args: str, protocol: str = "v2") -> dict[str, Any]:
    """Run `tailguard load ... --json` in its own process and return its JSON result. Exit
    status 1 (some requests failed: a 429 under overload is the point) is a result too."""
    out = subprocess.run(
        [PY, "-m", "tailguard", "load", url, "--model", model, "--protocol", protocol,
         "--json", *args],
        capture_output=True, text=True,
    )
    if out.returncode not in (0, 1) or not out.stdout.strip():
        raise RuntimeError(f"tailguard load exited with {out.returncode}: {out.stderr[-2000:]}")
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def start_load(url: str, model: str, *args: str) -> subprocess.Popen[str]:
    """Start `tailguard load ... --json` in its own process, in the background (several run
    at once, or beside a measurement); :func:`load_result` waits for its JSON result. Exit
    status 1 (some requests failed, the point of an overload) is a result like any other."""
    return subprocess.Popen([PY, "-m", "tailguard", "load", url, "--model", model, "--json",
                             *args],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)


def load_result(proc: subprocess.Popen[str]) -> dict[str, Any]:
    out, _ = proc.communicate()
    return dict(json.loads(out.strip().splitlines()[-1]))
