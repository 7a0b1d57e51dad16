"""Grafana dashboards: the JSON model's shape (the PromQL itself is checked by promtool in
tests/integration/test_dashboards_promql.py and against a live Prometheus in test_monitor)."""

from __future__ import annotations

import json
from pathlib import Path

import yaml
from typer.testing import CliRunner

from tailguard.cli import app
from tailguard.observe.grafana import DASHBOARD_FILES, dashboards, expressions, render_dashboards
from tailguard.serve.config import ServeConfig

CONFIG = ServeConfig.model_validate({
    "deployments": [
        {"name": "m", "model": "tailguard.models.echo:Echo", "p99_ms": 100},
        {"name": "n", "model": "tailguard.models.echo:Echo", "p99_ms": 250},
        {"name": "plain", "model": "tailguard.models.echo:Echo"},
    ],
    "tenants": [{"id": "t", "api_keys": ["k"]}],
})


def test_output_is_the_same_bytes_twice() -> None:
    assert render_dashboards(CONFIG) == render_dashboards(CONFIG)
    assert set(render_dashboards(CONFIG)) == set(DASHBOARD_FILES)


def test_every_query_names_the_datasource_variable() -> None:
    for board in dashboards(CONFIG).values():
        variables = {v["name"]: v for v in board["templating"]["list"]}
        assert variables["datasource"]["type"] == "datasource"
        assert variables["datasource"]["query"] == "prometheus"
        for panel in board["panels"]:
            if panel["type"] == "row":
                continue
            assert panel["datasource"]["uid"] == "${datasource}"
            assert all(t["datasource"]["uid"] == "${datasource}" for t in panel["targets"])
            assert len({t["refId"] for t in panel["targets"]}) == len(panel["targets"])


def test_serving_filters_by_deployment_and_tenant() -> None:
    board = dashboards(CONFIG)["tailguard-serving.json"]
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["deployment"]["query"]["query"] == \
        "label_values(tailguard_requests_total, deployment)"
    assert variables["tenant"]["query"]["query"] == \
        "label_values(tailguard_tenant_requests_total, tenant)"
    for title, expr in expressions(board):
        assert 'deployment=~"$deployment"' in expr, title
        if title.startswith("Tenant"):
            assert 'tenant=~"$tenant"' in expr, title


def test_the_panels_the_issue_asks_for() -> None:
    board = dashboards(CONFIG)["tailguard-serving.json"]
    exprs = "\n".join(e for _, e in expressions(board))
    for metric in ("tailguard_requests_total", 'outcome="error"', 'outcome="shed"',
                   "histogram_quantile(0.5,", "histogram_quantile(0.99,",
                   "histogram_quantile(0.999,", "tailguard_queue_depth",
                   "tailguard_batch_size_rows", "tailguard_replicas_ready",
                   "tailguard_replicas_desired", "tailguard_replica_service_seconds",
                   "_budget_remaining:ratio", "tailguard_tenant_rejections_total"):
        assert metric in exprs, metric
    # Each deployment's objective is a line on the latency panel, in seconds.
    assert 'deployment="m",deployment=~"$deployment"}) + 0.1' in exprs
    assert 'deployment="n",deployment=~"$deployment"}) + 0.25' in exprs
    assert 'deployment="plain"' not in exprs
    training = "\n".join(e for _, e in expressions(dashboards(CONFIG)["tailguard-training.json"]))
    for metric in ("tailguard_train_loss", "tailguard_train_samples_per_second",
                   "tailguard_train_step_seconds_bucket", "tailguard_train_restarts_total"):
        assert metric in training, metric


def test_panels_do_not_overlap() -> None:
    for board in dashboards(CONFIG).values():
        cells: set[tuple[int, int]] = set()
        for panel in board["panels"]:
            g = panel["gridPos"]
            assert g["x"] + g["w"] <= 24
            mine = {(x, y) for x in range(g["x"], g["x"] + g["w"])
                    for y in range(g["y"], g["y"] + g["h"])}
            assert not mine & cells, panel["title"]
            cells |= mine


def test_cli_writes_both_dashboards(tmp_path: Path) -> None:
    config = tmp_path / "serve.yaml"
    config.write_text(yaml.safe_dump(CONFIG.model_dump(mode="json", exclude_defaults=True)))
    result = CliRunner().invoke(app, ["dashboards", "render", "--config", str(config),
                                      "-o", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    files = render_dashboards(ServeConfig.model_validate(yaml.safe_load(config.read_text())))
    for name, text in files.items():
        assert (tmp_path / "out" / name).read_text() == text
        assert json.loads(text)["uid"].startswith("tailguard-")
