"""The profile -> plan -> cost commands end to end: real processes, real files, a real server."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from click.testing import Result
from typer.testing import CliRunner

from tailguard.autoscale.snapshot import ServiceProfile
from tailguard.cli import app

from .conftest import ServerProcess

SLEEP = {"name": "sleep", "model": "tailguard.models.sleep:Sleep", "replicas": 2,
         "options": {"sleep_ms": 4, "per_row_ms": 1}, "max_batch_size": 8, "max_wait_ms": 1,
         "p99_ms": 100}


def _cli(*args: str, home: Path) -> Result:
    """The command line in-process (no interpreter start-up), with its own TAILGUARD_HOME."""
    return CliRunner().invoke(app, list(args), env={"TAILGUARD_HOME": str(home)})


def test_profile_then_plan_from_the_stored_profile(tmp_path: Path) -> None:
    config = tmp_path / "serve.yaml"
    config.write_text(yaml.safe_dump({"deployments": [SLEEP]}))
    home = tmp_path / "home"
    out = _cli("profile", "sleep", "--config", str(config), "--seconds", "0.1", "--json",
               home=home)
    assert out.exit_code == 0, out.output
    prof: dict[str, Any] = json.loads(out.stdout)
    assert [b["batch_size"] for b in prof["batches"]] == [1, 2, 4, 8]
    assert prof["stored"] == [str(home / "profiles" / "sleep.json")]
    fit = ServiceProfile.fit(prof["service_s"])
    assert 0.9e-3 < fit.per_row_s < 1.5e-3  # the model's per_row_ms is 1

    out = _cli("plan", "--deployment", "sleep", "--config", str(config), "--rate", "400",
               "--slo-ms", "60", "--json", "--duration", "30", home=home)
    assert out.exit_code == 0, out.output
    plan = json.loads(out.stdout)
    cheapest = [c for c in plan["choices"] if c["cheapest"]]
    assert len(cheapest) == 1 and cheapest[0]["instance"] == plan["cheapest"]
    cpu = next(c for c in plan["choices"] if c["instance"] == "cpu-4")
    # 400 req/s of 4 ms + 1 ms/row at batches of <= 8: one replica tops out at ~670 rows/s.
    assert cpu["meets_slo"] and 1 <= cpu["replicas"] <= 3
    assert cpu["predicted_p99_ms"] <= 60 and cpu["max_batch_size"] == 8

    text = _cli("plan", "--profile", str(home / "profiles" / "sleep.json"), "--rate", "400",
                "--slo-ms", "60", "--duration", "30", home=home)
    assert text.exit_code == 0 and "* " in text.stdout and "$/hour" in text.stdout
    missing = _cli("plan", "--deployment", "nope", "--rate", "1", "--slo-ms", "10", home=home)
    assert missing.exit_code == 2 and "tailguard profile nope" in missing.stderr


def test_cost_report_from_a_live_server(start_server: Callable[..., ServerProcess],
                                        tmp_path: Path) -> None:
    server = start_server({
        "admin_api_keys": ["admin-key"],
        "tenants": [{"id": "acme", "api_keys": ["acme-key"]},
                    {"id": "beta", "api_keys": ["beta-key"]}],
        "deployments": [SLEEP],
    }).wait_ready()
    body = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [2, 2],
                        "data": [0.5, 0.5, 0.5, 0.5]}]}
    for key, n in (("acme-key", 6), ("beta-key", 2)):
        for _ in range(n):
            r = httpx.post(server.url + "/v2/models/sleep/infer", json=body, timeout=30,
                           headers={"Authorization": f"Bearer {key}"})
            assert r.status_code == 200, r.text
    out = _cli("cost", "--since", "1h", "--url", server.url, "--api-key", "admin-key",
               "--format", "json", home=tmp_path / "home")
    assert out.exit_code == 0, out.output
    report = json.loads(out.stdout)
    lines = {(ln["deployment"], ln["tenant"]): ln for ln in report["lines"]}
    assert lines["sleep", "acme"]["requests"] == 6 and lines["sleep", "acme"]["rows"] == 12
    assert lines["sleep", "beta"]["requests"] == 2
    assert lines["sleep", "acme"]["replica_seconds"] > lines["sleep", "beta"]["replica_seconds"]
    (dep,) = report["deployments"]
    # Two replicas reserved for the whole window, barely used: billed = reserved, mostly idle.
    assert dep["reserved_replica_seconds"] == pytest.approx(2 * report["window_s"], rel=1e-6)
    assert dep["billed_replica_seconds"] == dep["reserved_replica_seconds"]
    assert lines["sleep", "(idle)"]["replica_seconds"] == pytest.approx(
        dep["reserved_replica_seconds"] - dep["used_replica_seconds"])
    assert any("after --since" in w for w in report["warnings"])
    csv_out = _cli("cost", "--since", "1h", "--url", server.url, "--api-key", "admin-key",
                   "--format", "csv", home=tmp_path / "home")
    assert csv_out.stdout.splitlines()[0].startswith("deployment,tenant,requests")
    assert (tmp_path / "home" / "usage").is_dir()  # snapshots for later windows
