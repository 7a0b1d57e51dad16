"""SLO rules rendering: which SLOs a config has, thresholds, windows, determinism, the CLI.
(The rules' behaviour is tested against promtool in tests/integration/test_promtool_rules.py.)"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError
from typer.testing import CliRunner

from tailguard.cli import app
from tailguard.observe.metrics import ServeMetrics, latency_buckets
from tailguard.observe.slo_rules import (
    BURN_ALERTS,
    prom_duration,
    render_rules,
    rules_document,
    slos_of,
)
from tailguard.serve.config import ServeConfig

RAW = {
    "deployments": [
        {"name": "m", "model": "tailguard.models.echo:Echo", "p99_ms": 42, "availability": 0.995},
        {"name": "plain", "model": "tailguard.models.echo:Echo"},
    ],
    "tenants": [
        {"id": "t", "api_keys": ["k1"], "p99_ms": 23.75, "availability": 0.9999},
        {"id": "u", "api_keys": ["k2"], "deployments": ["plain"]},
    ],
}
CONFIG = ServeConfig.model_validate(RAW)


def _rules(doc: dict) -> list[dict]:
    return [r for g in doc["groups"] for r in g["rules"]]


def test_slos_per_deployment_and_tenant_with_fallbacks() -> None:
    got = {(s.sli, s.labels, s.objective, s.threshold_s) for s in slos_of(CONFIG)}
    assert got == {
        ("availability", (("deployment", "m"),), 0.995, None),
        ("latency", (("deployment", "m"),), 0.99, 0.042),
        ("availability", (("deployment", "plain"),), 0.999, None),  # the default
        ("availability", (("tenant", "t"), ("deployment", "m")), 0.9999, None),
        ("latency", (("tenant", "t"), ("deployment", "m")), 0.99, 0.02375),
        ("availability", (("tenant", "t"), ("deployment", "plain")), 0.9999, None),
        # t's own p99_ms applies on a deployment that has none
        ("latency", (("tenant", "t"), ("deployment", "plain")), 0.99, 0.02375),
        # u: only "plain", no objectives of its own: the deployment's
        ("availability", (("tenant", "u"), ("deployment", "plain")), 0.999, None),
    }


def test_the_latency_sli_reads_a_bucket_edge_the_histogram_has() -> None:
    metrics = ServeMetrics(objectives_s=[0.042, 0.02375])
    metrics.latency.labels("m", "v2", "ok").observe(0.01)
    text = metrics.render().decode()
    exprs = [r["expr"] for r in _rules(rules_document(CONFIG)) if "record" in r]
    assert any('le="0.042"' in e for e in exprs) and 'le="0.042"' in text
    assert any('le="0.02375"' in e for e in exprs)
    assert {0.042, 0.02375} <= set(latency_buckets([0.042, 0.02375]))


def test_burn_thresholds_are_factor_times_budget() -> None:
    alerts = [r for r in _rules(rules_document(CONFIG))
              if r.get("alert") == "TailguardAvailabilityBurnRate"
              and r["labels"].get("deployment") == "m" and "tenant" not in r["labels"]]
    assert [(a["labels"]["severity"], a["labels"]["long_window"], a["labels"]["short_window"],
             a["expr"].split(" > ")[-1]) for a in alerts] == [
        ("page", "1h", "5m", "0.072"),      # 14.4 x 0.5%
        ("page", "6h", "30m", "0.03"),      # 6 x 0.5%
        ("ticket", "3d", "6h", "0.005"),    # 1 x 0.5%
    ]
    assert [(a.factor, a.long_s, a.short_s) for a in BURN_ALERTS] == [
        (14.4, 3600, 300), (6.0, 21600, 1800), (1.0, 259200, 21600)]


def test_sheds_are_not_availability_errors_but_a_tenant_ticket() -> None:
    rules = _rules(rules_document(CONFIG))
    availability = [r["expr"] for r in rules
                    if r.get("record", "").endswith("availability_errors:ratio_rate1h")]
    assert availability and all('outcome!="shed"' in e and 'outcome="error"' in e
                                for e in availability)
    sheds = [r for r in rules if r.get("alert") == "TailguardTenantShed"]
    assert {(r["labels"]["tenant"], r["labels"]["deployment"]) for r in sheds} == {
        ("t", "m"), ("t", "plain"), ("u", "plain")}
    assert all(r["labels"]["severity"] == "ticket" for r in sheds)


def test_window_scale_scales_every_window() -> None:
    doc = rules_document(CONFIG, window_scale=0.01)
    windows = {r["labels"]["long_window"] for r in _rules(doc) if "alert" in r}
    assert windows == {"36s", "3m36s", "43m12s"}
    assert "[3s]" in "\n".join(r["expr"] for r in _rules(doc) if "record" in r)


@pytest.mark.parametrize(("seconds", "text"), [
    (3600, "1h"), (300, "5m"), (259200, "3d"), (216, "3m36s"), (0.3, "300ms"),
    (2592000 * 0.01, "7h12m")])
def test_prom_duration(seconds: float, text: str) -> None:
    assert prom_duration(seconds) == text


def test_bad_options_are_refused() -> None:
    with pytest.raises(ValueError, match="window_scale"):
        rules_document(CONFIG, window_scale=0)
    with pytest.raises(ValueError, match="shed_ratio"):
        rules_document(CONFIG, shed_ratio=1.5)
    with pytest.raises(ValidationError):
        ServeConfig.model_validate({"deployments": [
            {"name": "m", "model": "tailguard.models.echo:Echo", "availability": 1.0}]})


def test_cli_renders_the_same_bytes_twice(tmp_path: Path) -> None:
    config = tmp_path / "serve.yaml"
    config.write_text(yaml.safe_dump(RAW))
    outputs = []
    for out in ("a", "b"):
        result = CliRunner().invoke(app, ["alerts", "render", "--config", str(config),
                                          "-o", str(tmp_path / out)])
        assert result.exit_code == 0, result.output
        outputs.append((tmp_path / out / "tailguard-slo.rules.yml").read_bytes())
    assert outputs[0] == outputs[1] == render_rules(CONFIG).encode()
    result = CliRunner().invoke(app, ["alerts", "render", "--config", str(config),
                                      "-o", str(tmp_path / "c"), "--window-scale", "-1"])
    assert result.exit_code == 2 and "window_scale" in result.output
