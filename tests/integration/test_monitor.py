"""``tailguard monitor`` end to end: a real gateway, a real Prometheus with the window-scaled
SLO rules, an SLO breach that fires the fast page through Prometheus's HTTP API, then resolves;
a real Alertmanager posts both to a webhook of the test's.

The ``sleep`` model takes 2 ms plus 8 ms a row: one-row requests answer well within the 100 ms
objective, 30-row ones (≈ 240 ms) never do. Admission is off so the slow ones are served, not
shed. Windows scaled by 0.02 (5 m -> 6 s, 1 h -> 72 s), scrapes and evaluations every second.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tailguard.observe.grafana import dashboards, expressions
from tailguard.serve.config import ServeConfig
from tests.integration.conftest import ServerProcess, wait_for
from tests.support.prometheus import require_tool

ADMIN_KEY = "admin-secret-key"
CONFIG: dict[str, Any] = {
    "admin_api_keys": [ADMIN_KEY],
    "admission": {"enabled": False},
    "deployments": [{
        "name": "sleepy", "model": "tailguard.models.sleep:Sleep", "replicas": 1,
        "max_batch_size": 1, "max_wait_ms": 0, "p99_ms": 100,
        "options": {"sleep_ms": 2, "per_row_ms": 8},
    }],
}


class _Traffic:
    """A background client sending ``rows``-row requests back to back (changeable live)."""

    def __init__(self, url: str) -> None:
        self.rows = 1
        self.sent = 0
        self._url = url + "/v2/models/sleepy/infer"
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        with httpx.Client(timeout=10, headers={"Authorization": f"Bearer {ADMIN_KEY}"}) as c:
            while not self._stop.is_set():
                rows = self.rows
                body = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [rows, 1],
                                    "data": [1.0] * rows}]}
                c.post(self._url, json=body).raise_for_status()
                self.sent += 1

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(15)


def _fast_pages(prometheus_url: str) -> list[dict[str, Any]]:
    try:
        data = httpx.get(prometheus_url + "/api/v1/alerts", timeout=5).json()
    except httpx.HTTPError:
        return []
    return [a for a in data["data"]["alerts"]
            if a["labels"]["alertname"] == "TailguardLatencyBurnRate"
            and a["labels"]["burn_rate"] == "14.4" and a["state"] in ("pending", "firing")]


def _dashboard_queries_answer(prometheus_url: str) -> None:
    """Every serving dashboard query, its variables made concrete, answers on the live
    Prometheus; those about this deployment with data (the admin's requests are the tenant
    ``admin``'s; there are no tenant SLOs here, and nothing was shed or rejected)."""
    config = ServeConfig.model_validate(CONFIG)
    board = dashboards(config)["tailguard-serving.json"]
    empty_ok = ("Errors (5xx) and sheds (429)", "Tenant rejections by reason",
                "Tenant error budget remaining (30 days)")
    for title, expr in expressions(board):
        query = (expr.replace("$__rate_interval", "10s").replace("$deployment", "sleepy")
                 .replace("$tenant", "admin"))
        answer = httpx.get(prometheus_url + "/api/v1/query", params={"query": query},
                           timeout=10).json()
        assert answer["status"] == "success", (title, query, answer)
        if title not in empty_ok:
            assert answer["data"]["result"], (title, query)


class _Webhook:
    """An HTTP endpoint on 127.0.0.1 keeping every JSON body Alertmanager posts."""

    def __init__(self) -> None:
        self.posts: list[dict[str, Any]] = []
        posts = self.posts

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                posts.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_port}/hook"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def fast_page_states(self) -> set[str]:
        return {a["status"] for post in list(self.posts) for a in post["alerts"]
                if a["labels"].get("alertname") == "TailguardLatencyBurnRate"
                and a["labels"].get("burn_rate") == "14.4"}

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def webhook() -> Iterator[_Webhook]:
    hook = _Webhook()
    yield hook
    hook.close()


@pytest.fixture
def monitor(tmp_path: Path) -> Iterator[Callable[[str, Path], tuple[subprocess.Popen[str], str]]]:
    procs: list[subprocess.Popen[str]] = []

    def start(gateway: str, config: Path, hook: str) -> tuple[subprocess.Popen[str], str]:
        proc = subprocess.Popen(
            [sys.executable, "-m", "tailguard", "monitor", "--config", str(config),
             "--gateway", gateway, "--data-dir", str(tmp_path / "monitor"),
             "--scrape-interval-s", "1", "--eval-interval-s", "1", "--window-scale", "0.02",
             "--alertmanager-webhook", hook, "--group-wait-s", "1", "--group-interval-s", "1"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            env={**os.environ, "TAILGUARD_API_KEY": ADMIN_KEY})
        procs.append(proc)
        assert proc.stdout is not None
        line = proc.stdout.readline()  # the first line names the URL, once it is ready
        assert line.startswith("prometheus http://"), line + proc.stdout.read()
        return proc, line.split()[1]

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        assert proc.stdout is not None
        proc.stdout.close()


def test_a_latency_breach_fires_through_prometheus_and_resolves(
        start_server: Callable[..., ServerProcess], monitor: Callable[..., Any],
        webhook: _Webhook, tmp_path: Path) -> None:
    require_tool("prometheus")
    require_tool("alertmanager-local")
    server = start_server(CONFIG).wait_ready()
    proc, url = monitor(server.url, server.config_path, webhook.url)
    # The gateway is a healthy target, scraped with the admin key.
    wait_for(lambda: any(t["health"] == "up" for t in httpx.get(
        url + "/api/v1/targets", timeout=5).json()["data"]["activeTargets"]), 30,
        "the gateway target up")
    rules = httpx.get(url + "/api/v1/rules", timeout=5).json()["data"]["groups"]
    assert {g["name"] for g in rules} == {"tailguard-slo:sleepy"}

    traffic = _Traffic(server.url)
    try:
        wait_for(lambda: traffic.sent >= 20, 30, "healthy traffic flowing")
        assert _fast_pages(url) == []
        traffic.rows = 30  # every request now ~240 ms against a 100 ms objective
        wait_for(lambda: any(a["state"] == "firing" for a in _fast_pages(url)), 40,
                 "the fast latency page firing")
        alert = _fast_pages(url)[0]
        assert alert["labels"]["deployment"] == "sleepy"
        assert alert["labels"]["severity"] == "page"
        wait_for(lambda: "firing" in webhook.fast_page_states(), 30,
                 "Alertmanager posting the fast page")
        traffic.rows = 1  # breach over: the 6 s short window clears the page
        wait_for(lambda: _fast_pages(url) == [], 40, "the fast latency page resolved")
    finally:
        traffic.stop()
    wait_for(lambda: "resolved" in webhook.fast_page_states(), 30,
             "Alertmanager posting the fast page resolved")

    _dashboard_queries_answer(url)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(30) == 0
    with pytest.raises(httpx.HTTPError):
        httpx.get(url + "/-/ready", timeout=2)
    config = yaml.safe_load((tmp_path / "monitor" / "prometheus.yml").read_text())
    assert ADMIN_KEY not in str(config)  # the key sits in a 0600 file, not in the config
    assert (tmp_path / "monitor" / "gateway.key").stat().st_mode & 0o777 == 0o600
