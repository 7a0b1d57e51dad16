"""Chaos against a real server: a replica SIGKILLed every 10 s under 60 s of load loses nothing."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from typer.testing import CliRunner

from tailguard.cli import app
from tailguard.load import LoadSpec
from tailguard.ops.chaos import ChaosConfig, FaultKind, run_chaos

from .conftest import ServerProcess

SLEEP = {
    "deployments": [
        {"name": "sleep", "model": "tailguard.models.sleep:Sleep", "replicas": 3,
         "options": {"sleep_ms": 5, "per_row_ms": 0.5}, "max_batch_size": 8,
         "max_wait_ms": 1, "p99_ms": 250},
    ],
}
INPUT = ("x:FP32:1x2=[0.5,0.5]",)  # the sleep model refuses negative values


@pytest.mark.slow
def test_replica_killed_every_10s_loses_no_request(
    start_server: Callable[..., ServerProcess],
) -> None:
    server = start_server(SLEEP).wait_ready()
    spec = LoadSpec(url=server.url, model="sleep", rate_rps=60.0, duration_s=60.0,
                    inputs=INPUT, timeout_s=30.0, seed=1)
    report = run_chaos(spec, ChaosConfig(faults=(FaultKind.KILL,), every_s=10.0))

    kills = [f for f in report.faults if f.error is None]
    assert len(kills) == 5, report.faults
    assert [round(f.at_s) for f in kills] == [10, 20, 30, 40, 50]
    assert all(f.kind == "kill" and f.pid is not None for f in kills)
    # Every request sent got an answer, and with the gateway's retry every answer is a 200.
    assert report.lost == 0 and report.not_sent == 0
    assert report.answered == report.sent >= 3000
    assert report.errors == {}, report.errors
    assert report.load.ok == report.load.requests
    # The SLO (250 ms) came back after every kill, well before the next one.
    assert len(report.recovery_s) == 5
    assert all(r is not None and r < 10.0 for r in report.recovery_s), report.recovery_s
    # The killed replicas really died and were replaced.
    deployment = server.deployment("sleep")
    assert sum(r["restarts"] for r in deployment["replicas"]) >= 5
    assert not {f.pid for f in kills} & set(server.replica_pids("sleep"))


def test_chaos_cli_stop_and_restart_report_json(
    start_server: Callable[..., ServerProcess],
) -> None:
    server = start_server(SLEEP).wait_ready()
    out = CliRunner().invoke(app, [
        "chaos", server.url, "--deployment", "sleep", "--duration", "4", "--rate", "40",
        "--every", "1.5", "--fault", "stop", "--fault", "restart", "--stop-hold", "0.5",
        "--input", INPUT[0], "--json"])
    assert out.exit_code == 0, out.output
    report: dict[str, Any] = json.loads(out.stdout)
    kinds = [f["kind"] for f in report["faults"]]
    assert kinds == ["stop", "restart"], report["faults"]
    assert report["faults"][0]["pid"] and "SIGCONT" in report["faults"][0]["detail"]
    assert "rolling restart of 3" in report["faults"][1]["detail"]
    assert report["lost"] == 0 and report["errors"] == {}
    # Nothing is left stopped: every replica answers after the run.
    assert all(r["state"] == "ready" for r in server.deployment("sleep")["replicas"])


def test_chaos_refuses_a_remote_url() -> None:
    out = CliRunner().invoke(app, ["chaos", "http://10.1.2.3:8000", "--deployment", "x",
                                   "--duration", "1", "--rate", "1"])
    assert out.exit_code == 2 and "loopback" in out.stderr
