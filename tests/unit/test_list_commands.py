"""``runs list`` and ``models list`` at 80 columns and as JSON (issue 19, item 5)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tailguard.cli import app
from tailguard.train.metrics import MetricsWriter
from tailguard.train.runs import run_paths

RUN_ID = "digits-mlp-classifier-20261207-210000-4f2a9c"


@pytest.fixture()
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("TAILGUARD_HOME", str(tmp_path))
    monkeypatch.setenv("COLUMNS", "80")
    paths = run_paths(RUN_ID, tmp_path)
    paths.root.mkdir(parents=True)
    paths.job.write_text(json.dumps({"name": "digits"}))
    w = MetricsWriter(paths.metrics)
    w.write("start", attempt=0, world_size=2)
    w.write("eval", step=40, metrics={"accuracy": 0.9731, "loss": 0.0912, "rows": 360.0})
    w.write("finished", step=40, metrics={})
    w.write("registered", ref="digits-mlp-classifier:20261207-210000-4f2a9c")
    return tmp_path


def test_runs_list_never_cuts_the_run_id_at_80_columns(home: Path) -> None:
    result = CliRunner().invoke(app, ["runs", "list"])
    assert result.exit_code == 0, result.output
    assert RUN_ID in result.output
    assert max(len(line) for line in result.output.splitlines()) <= 80


def test_runs_list_json(home: Path) -> None:
    result = CliRunner().invoke(app, ["runs", "list", "--json"])
    assert result.exit_code == 0, result.output
    (row,) = [json.loads(line) for line in result.output.splitlines()]
    assert row["run_id"] == RUN_ID and row["status"] == "succeeded"
    assert row["eval_metrics"]["accuracy"] == 0.9731


def test_models_list_json_of_an_empty_registry(home: Path) -> None:
    result = CliRunner().invoke(app, ["models", "list", "--json"])
    assert result.exit_code == 0 and result.output == ""
