"""The load generator against real server processes on 127.0.0.1 (a bare uvicorn echo target)."""

from __future__ import annotations

import asyncio
import gc
import json
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from tailguard.commands import load as load_command
from tailguard.load import (
    LoadProgress,
    LoadResult,
    LoadSpec,
    run_load,
    run_load_async,
    run_load_recording,
)
from tests.support import ECHO_SERVER


def _start(*args: str) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, str(ECHO_SERVER), *args],
        stdout=subprocess.PIPE, text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()  # the port, printed once the socket listens
    if not line.strip():
        proc.kill()
        proc.stdout.close()
        raise RuntimeError(f"echo target did not start (exit {proc.wait()})")
    return proc, f"http://127.0.0.1:{int(line)}"


def _stop(proc: subprocess.Popen[str]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    if proc.stdout is not None:
        proc.stdout.close()


@pytest.fixture(scope="module")
def echo_url() -> Iterator[str]:
    proc, url = _start("--validate", "--delay-ms", "50")
    try:
        deadline = time.monotonic() + 15.0
        while True:  # poll readiness with a deadline: uvicorn starts after the bind
            try:
                with urllib.request.urlopen(f"{url}/v2/health/ready", timeout=1) as r:
                    if r.status == 200:
                        break
            except OSError:
                if time.monotonic() > deadline:
                    raise
            time.sleep(0.02)
        # Collect what earlier tests left behind now, not in a timed run: finalisers of
        # leaked objects can block for seconds (a DataLoader iterator with live workers
        # joins each one with a 5 s timeout when it is finally collected).
        gc.collect()
        yield url
    finally:
        _stop(proc)


@pytest.fixture(scope="module")
def drop_url() -> Iterator[str]:
    proc, url = _start("--drop")
    try:
        yield url
    finally:
        _stop(proc)


def _timed(spec: LoadSpec) -> tuple[float, LoadResult]:
    start = time.monotonic()
    result = run_load(spec)
    return time.monotonic() - start, result


def test_closed_loop_gets_only_200s_at_a_plausible_rate(echo_url: str) -> None:
    spec = LoadSpec(echo_url, model="echo", concurrency=8, duration_s=1.0, warmup_s=0.2)
    snapshots: list[LoadProgress] = []
    start = time.monotonic()
    result = run_load(spec, snapshots.append)
    wall = time.monotonic() - start
    assert wall < 1.2 + 2.0  # stops by itself at the duration
    assert result.errors == {}
    assert result.ok == result.requests > 200
    assert 200 < result.rps < 200_000
    assert result.connections_opened == 8
    assert result.p50_ms is not None and result.p99_ms is not None and result.max_ms is not None
    assert 0 < result.p50_ms <= result.p99_ms <= result.max_ms
    assert not result.fell_behind
    # Progress about every 0.25 s, then a last snapshot once everything is in.
    assert len(snapshots) >= 4
    assert [s.elapsed_s for s in snapshots] == sorted(s.elapsed_s for s in snapshots)
    assert snapshots[-1].in_flight == 0
    assert snapshots[-1].completed == snapshots[-1].sent >= result.requests


class _Cycle:
    """Garbage someone else left: a reference cycle whose finaliser notes when it ran."""

    def __init__(self, ran_at: list[float]) -> None:
        self.me = self
        self.ran_at = ran_at

    def __del__(self) -> None:
        self.ran_at.append(time.perf_counter())


def test_a_run_leaves_the_rest_of_the_process_garbage_alone(echo_url: str) -> None:
    # Regression: run_load began with gc.collect(), which ran the finalisers of any garbage
    # left by earlier code inside the run. In a full test run a leaked DataLoader iterator
    # (it joins 2 workers with a 5 s timeout each) turned a 1.2 s run into 11.6 s.
    ran_at: list[float] = []
    keep = [_Cycle(ran_at)]
    gc.collect()  # now in the oldest generation, like a leak from an earlier test
    del keep
    start = time.perf_counter()
    result = run_load(LoadSpec(echo_url, model="echo", concurrency=2, duration_s=0.2))
    end = time.perf_counter()
    assert result.ok > 0
    assert not [t for t in ran_at if start <= t <= end]
    assert gc.isenabled()
    gc.collect()
    assert ran_at  # it was garbage all along, collected once the run was over


def test_open_loop_latency_includes_the_server_delay(echo_url: str) -> None:
    spec = LoadSpec(echo_url, model="slow", rate_rps=100, duration_s=1.0)
    result = run_load(spec)
    assert result.errors == {}
    assert 50 <= result.requests <= 150  # Poisson count around 100
    assert result.p50_ms is not None and result.p50_ms >= 50.0
    assert result.send_error_p99_ms is not None


def test_open_loop_measures_from_the_intended_send_time(echo_url: str) -> None:
    # One connection, 50 ms per request: at most 20 req/s, but 40 req/s are offered. Requests
    # queue behind each other; measured from their intended time, the last ones wait ~0.5 s.
    # A generator with coordinated omission would report ~50 ms for all of them.
    spec = LoadSpec(echo_url, model="slow", rate_rps=40, arrival="constant", duration_s=0.5,
                    max_connections=1)
    result = run_load(spec)
    assert result.ok == result.requests == 20
    assert result.p99_ms is not None and result.p99_ms > 300.0
    assert result.p50_ms is not None and result.p50_ms > 150.0
    assert result.fell_behind
    assert any("ran out of connections" in w for w in result.warnings)


@pytest.mark.parametrize(
    ("model", "protocol"),
    [("echo", "v2"), ("minilm", "v2"), ("custom", "v2"), ("minilm", "openai")],
)
def test_bodies_are_what_the_server_expects(echo_url: str, model: str, protocol: str) -> None:
    # The target runs with --validate: a body that does not fit the model's declared inputs
    # gets 400. "custom" is known only from its metadata (GET /v2/models/custom).
    result = run_load(LoadSpec(echo_url, model=model, protocol=protocol, rate_rps=100,
                               duration_s=0.3))
    assert result.errors == {}
    assert result.ok == result.requests > 0


def test_unknown_model_is_classified_as_404(echo_url: str) -> None:
    spec = LoadSpec(echo_url, model="nope", inputs=("INPUT0:FP32=[[1.0]]",), concurrency=2,
                    duration_s=0.3)
    result = run_load(spec)
    assert result.ok == 0
    assert set(result.errors) == {"http_404"}
    assert result.errors["http_404"] == result.requests > 0
    assert result.p50_ms is None  # no success, no latency


def test_missing_metrics_is_skipped_and_404s_have_their_latency(echo_url: str) -> None:
    # This target has no /metrics: the run goes on, and says why nothing was scraped.
    result, rec = run_load_recording(LoadSpec(
        echo_url, model="nope", inputs=("INPUT0:FP32=[[1.0]]",), concurrency=2,
        duration_s=0.3, scrape_metrics=True))
    assert rec.server is not None and rec.server.scrapes == 0
    assert rec.server.error == "GET /metrics answered 404"
    assert result.server_metrics is not None and result.server_metrics.startswith(
        "not available (GET /metrics answered 404)")
    s = result.status_latency_ms["404"]
    assert s["count"] == result.requests > 0
    assert s["p50"] is not None and s["p99"] is not None and 0 < s["p50"] <= s["p99"]


def test_timeouts_are_classified(echo_url: str) -> None:
    wall, result = _timed(LoadSpec(echo_url, model="slow", concurrency=2, duration_s=0.3,
                                   timeout_s=0.02))
    assert wall < 0.3 + 0.02 + 2.0
    assert result.ok == 0
    assert set(result.errors) == {"timeout"}


@pytest.mark.parametrize("mode", [{"concurrency": 4}, {"rate_rps": 200.0}])
def test_server_closing_after_each_answer_costs_reconnects_not_errors(
    echo_url: str, mode: dict[str, Any]
) -> None:
    result = run_load(LoadSpec(echo_url, model="closing", duration_s=0.4, **mode))
    assert result.errors == {}
    assert result.ok > 10
    assert result.connections_opened >= result.ok  # one connection per answer


@pytest.mark.parametrize("mode", [{"concurrency": 2}, {"rate_rps": 200.0}])
def test_dropped_connections_are_classified(drop_url: str, mode: dict[str, Any]) -> None:
    wall, result = _timed(LoadSpec(drop_url, model="echo", duration_s=0.3, timeout_s=2.0,
                                   **mode))
    assert wall < 0.3 + 2.0 + 1.0
    assert result.ok == 0
    assert set(result.errors) == {"closed"}


def test_refused_connections_are_classified() -> None:
    with socket.socket() as sock:  # a port that nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    modes: list[dict[str, Any]] = [{"concurrency": 2}, {"rate_rps": 100.0}]
    for mode in modes:
        result = run_load(LoadSpec(f"http://127.0.0.1:{port}", model="echo", duration_s=0.2,
                                   **mode))
        assert result.ok == 0
        assert set(result.errors) == {"connect"}


def test_async_api_on_plain_asyncio(echo_url: str) -> None:
    async def main() -> int:
        result = await run_load_async(LoadSpec(echo_url, model="echo", rate_rps=200,
                                               duration_s=0.3))
        return result.ok

    assert asyncio.run(main()) > 20


def _cli() -> typer.Typer:
    app = typer.Typer()
    load_command.register(app)

    @app.command("noop")
    def _noop() -> None:  # a second command keeps "load" a named subcommand
        """Nothing."""

    return app


def test_cli_json_output_parses(echo_url: str) -> None:
    result = CliRunner().invoke(_cli(), ["load", echo_url, "--model", "echo", "--rate", "200",
                                         "--duration", "0.3", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    for key in ("requests", "ok", "errors", "rps", "p50_ms", "p90_ms", "p99_ms", "p999_ms",
                "send_error_p99_ms", "duration_s", "fell_behind"):
        assert key in data
    assert data["ok"] == data["requests"] > 0
    assert data["errors"] == {}


def test_cli_text_output_and_payloads_file(echo_url: str, tmp_path: Path) -> None:
    payloads = tmp_path / "bodies.jsonl"
    payloads.write_text(
        '{"inputs":[{"name":"INPUT0","datatype":"FP32","shape":[1,2],"data":[[1,2]]}]}\n'
        '{"inputs":[{"name":"INPUT0","datatype":"FP32","shape":[1,1],"data":[[3]]}]}\n'
    )
    result = CliRunner().invoke(_cli(), ["load", echo_url, "-m", "echo", "-c", "2", "-d", "0.3",
                                         "--payloads", str(payloads)])
    assert result.exit_code == 0, result.output
    assert "closed loop, concurrency 2" in result.stdout
    assert "p99.9" in result.stdout
    assert "errors  none" in result.stdout


def test_cli_exit_codes(echo_url: str) -> None:
    all_failed = CliRunner().invoke(_cli(), ["load", echo_url, "-m", "nope", "--input",
                                             "INPUT0=[[1.0]]", "-c", "1", "-d", "0.2"])
    assert all_failed.exit_code == 1
    assert "http_404" in all_failed.stdout
    both = CliRunner().invoke(_cli(), ["load", echo_url, "-m", "echo", "-c", "1", "-r", "5"])
    assert both.exit_code == 2
    assert "--concurrency" in both.stderr and "--rate" in both.stderr
    no_meta = CliRunner().invoke(_cli(), ["load", echo_url, "-m", "nope", "-c", "1"])
    assert no_meta.exit_code == 2
    assert "no payload for model 'nope'" in no_meta.stderr
