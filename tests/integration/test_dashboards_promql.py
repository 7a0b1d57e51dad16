"""Every dashboard query, its template variables given concrete values, parsed by the real
PromQL engine (``promtool check rules`` on a file recording each one), and some evaluated over
series shaped like the gateway's with their results pinned (``promtool test rules``). Every
serving query is also run against a live Prometheus scraping a real gateway in
test_monitor.py."""

from __future__ import annotations

import subprocess
from pathlib import Path

import yaml

from tailguard.observe.grafana import dashboards, expressions
from tailguard.observe.slo_rules import render_rules
from tailguard.serve.config import ServeConfig
from tests.support.prometheus import require_tool

CONFIG = ServeConfig.model_validate({
    "deployments": [{"name": "m", "model": "tailguard.models.echo:Echo", "p99_ms": 100}],
    "tenants": [{"id": "t", "api_keys": ["k"], "p99_ms": 50}],
})
VALUES = {"$__rate_interval": "5m", "$deployment": "m", "$tenant": "t"}


def _concrete(expr: str) -> str:
    for name, value in VALUES.items():
        expr = expr.replace(name, value)
    assert "$" not in expr, expr
    return expr


def _recording_rules(tmp_path: Path) -> tuple[Path, list[tuple[str, str]]]:
    rules = []
    for board in dashboards(CONFIG).values():
        for i, (title, expr) in enumerate(expressions(board)):
            rules.append((f"dashboard_check:{board['uid'].replace('-', '_')}_{i}",
                          _concrete(expr), title))
    path = tmp_path / "dashboard-queries.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboards", "rules": [
        {"record": name, "expr": expr} for name, expr, _ in rules]}]}))
    return path, [(name, title) for name, _, title in rules]


def _promtool(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(require_tool("promtool")), *map(str, args)],
                          capture_output=True, text=True, timeout=120)


def test_every_panel_query_parses(tmp_path: Path) -> None:
    path, rules = _recording_rules(tmp_path)
    result = _promtool("check", "rules", path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(rules)} rules found" in result.stdout


def test_panel_queries_evaluate_over_gateway_series(tmp_path: Path) -> None:
    queries, rules = _recording_rules(tmp_path)
    slo = tmp_path / "slo.yml"
    slo.write_text(render_rules(CONFIG))
    names = dict((title, name) for name, title in reversed(rules))  # first target per panel
    hist = "tailguard_request_duration_seconds"
    series = {
        'tailguard_requests_total{deployment="m",protocol="v2",status="200"}': "0+600x20",
        f'{hist}_count{{deployment="m",protocol="v2",outcome="ok"}}': "0+600x20",
        f'{hist}_bucket{{deployment="m",protocol="v2",outcome="ok",le="0.1"}}': "0+600x20",
        f'{hist}_bucket{{deployment="m",protocol="v2",outcome="ok",le="+Inf"}}': "0+600x20",
        'tailguard_batch_size_rows_sum{deployment="m"}': "0+2400x20",
        'tailguard_batch_size_rows_count{deployment="m"}': "0+600x20",
        'tailguard_replicas_ready{deployment="m"}': "2x20",
        'tailguard_replicas_desired{deployment="m"}': "3x20",
        'tailguard_train_loss{job="train",instance="a"}': "0.5x20",
    }
    test = {"rule_files": [queries.name, slo.name], "evaluation_interval": "1m", "tests": [{
        "interval": "1m",
        "input_series": [{"series": s, "values": v} for s, v in series.items()],
        "promql_expr_test": [
            {"expr": names["Request rate"], "eval_time": "10m",
             "exp_samples": [{"labels": f'{names["Request rate"]}{{deployment="m"}}',
                              "value": 10}]},
            {"expr": names["Batch size (mean rows)"], "eval_time": "10m",
             "exp_samples": [{"labels": f'{names["Batch size (mean rows)"]}{{deployment="m"}}',
                              "value": 4}]},
            {"expr": names["Replicas: ready and desired"], "eval_time": "10m",
             "exp_samples": [{"labels":
                              f'{names["Replicas: ready and desired"]}{{deployment="m"}}',
                              "value": 2}]},
            {"expr": names["Loss"], "eval_time": "10m",
             "exp_samples": [{"labels": f'{names["Loss"]}{{job="train",instance="a"}}',
                              "value": 0.5}]},
            # Read through the SLO recording rules: no errors, nothing slow -> all left.
            {"expr": names["Error budget remaining (30 days)"], "eval_time": "10m",
             "exp_samples": [{"labels": f'{names["Error budget remaining (30 days)"]}'
                                        '{deployment="m",slo="availability"}', "value": 1}]},
        ],
    }]}
    path = tmp_path / "test.yml"
    path.write_text(yaml.safe_dump(test, sort_keys=False))
    result = _promtool("test", "rules", path)
    assert result.returncode == 0, result.stdout + result.stderr
