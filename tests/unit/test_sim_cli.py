"""``tailguard sim``: JSON output, YAML config, policy options, plot, and clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from tailguard.commands import sim as sim_command


@pytest.fixture()
def app() -> typer.Typer:
    root = typer.Typer()
    sim_command.register(root)

    @root.command("noop")
    def _noop() -> None:  # a second command keeps typer from collapsing to one
        pass

    return root


def test_json_output_and_policy_option(app: typer.Typer) -> None:
    args = ["sim", "--policy", "hpa", "--trace", "poisson:rate=100", "--duration", "60"]
    result = CliRunner().invoke(app, [*args, "--json", "--opt", "target_utilization=0.5"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.output.strip().splitlines()[-1])
    assert out["policy"] == "hpa" and out["trace"] == "poisson:rate=100"
    assert 5000 < out["n_requests"] < 7000
    assert 0.0 <= out["slo_attainment"] <= 1.0 and out["replica_seconds"] > 0


def test_yaml_config_and_plot(app: typer.Typer, tmp_path: Path) -> None:
    config = tmp_path / "sim.yaml"
    config.write_text(
        "service: {table_ms: {1: 10, 16: 40}}\n"
        "sim: {cold_start_s: 2, initial_replicas: 2}\n"
        "bounds: {max_replicas: 5}\n"
        "policies: {concurrency: {target_ongoing_requests: 4, panic: true}}\n"
    )
    png = tmp_path / "run.png"
    result = CliRunner().invoke(
        app,
        [
            "sim",
            "--policy",
            "concurrency",
            "--trace",
            "step:rates=50/300,every=30",
            "--duration",
            "60",
            "--config",
            str(config),
            "--plot",
            str(png),
            "--slo-ms",
            "150",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "within SLO (150 ms)" in result.output
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--trace", "nope:rate=1"], "unknown trace"),
        (["--policy", "magic"], "unknown policy"),
        (["--opt", "headroom=0.5"], "unknown slo option"),
        (["--opt", "rate_headroom"], "not key=value"),
    ],
)
def test_errors_say_what_is_wrong(app: typer.Typer, args: list[str], message: str) -> None:
    result = CliRunner().invoke(app, ["sim", "--duration", "10", *args])
    assert result.exit_code == 2
    assert message in result.output
