"""Registered artifacts: CLI, serving one through V2, refusing a tampered one at load."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tailguard.artifacts import Manifest, TensorDecl, build_artifact
from tailguard.cli import app
from tests.integration.conftest import ServerProcess, wait_for


def _make(path: Path) -> Path:
    manifest = Manifest(
        name="doubler", version="3", entrypoint="tailguard.models.sleep:Sleep", task="regression",
        inputs=[TensorDecl(name="x", datatype="FP32", shape=[-1, 2])],
        outputs=[TensorDecl(name="y", datatype="FP32", shape=[-1, 2])],
        options={"sleep_ms": 0},
    )
    (path / "README.txt").parent.mkdir(parents=True, exist_ok=True)
    (path / "README.txt").write_text("a test artifact")
    build_artifact(path, manifest)
    return path


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("TAILGUARD_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def test_models_cli_register_list_show(tmp_path: Path, home: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(app, ["models", "register", str(_make(tmp_path / "art"))])
    assert result.exit_code == 0, result.output
    assert "registered doubler:3" in result.output
    assert "doubler" in runner.invoke(app, ["models", "list"]).output
    shown = runner.invoke(app, ["models", "show", "doubler:3"])
    assert json.loads(shown.output)["inputs"][0]["shape"] == [-1, 2]
    missing = runner.invoke(app, ["models", "show", "doubler:4"])
    assert missing.exit_code == 1 and "not registered" in missing.output


def test_serve_registered_artifact_and_refuse_tampered(tmp_path: Path, home: Path,
                                                       start_server) -> None:  # type: ignore[no-untyped-def]
    assert CliRunner().invoke(app, ["models", "register", str(_make(tmp_path / "art"))]).exit_code == 0
    config = {"deployments": [{"name": "doubler", "artifact": "doubler:3"}]}
    server: ServerProcess = start_server(config, home=home).wait_ready()
    body = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 2], "data": [1, 2]}]}
    resp = server.post("/v2/models/doubler/infer", json=body)
    assert resp.status_code == 200 and resp.json()["outputs"][0]["data"] == [1.0, 2.0]
    assert server.get("/v2/models/doubler").json()["inputs"][0]["shape"] == [-1, 2]

    # Tamper with the stored copy, then kill the replica: its restart must refuse the artifact.
    stored = home / "artifacts" / "doubler" / "3" / "README.txt"
    stored.write_text("tampered")
    (pid,) = server.replica_pids("doubler")
    os.kill(pid, 9)
    wait_for(lambda: "README.txt fails its sha256 check" in server.log(), 60, "tamper refusal")
    resp = server.post("/v2/models/doubler/infer", json=body)
    assert resp.status_code == 503
    assert "README.txt" in resp.json()["error"]
