"""The rendered SLO rules against the real rule engine: ``promtool check rules`` and
``promtool test rules`` (input series -> the alerts that fire, and those that must not).

Series are written the way the gateway exports them (prometheus_client's text: ``le="0.1"``),
one sample a minute; promtool replays them and evaluates every rule each minute.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import yaml

from tailguard.observe.slo_rules import render_rules
from tailguard.serve.config import ServeConfig
from tests.support.prometheus import require_tool

CONFIG = ServeConfig.model_validate({
    "deployments": [
        {"name": "m", "model": "tailguard.models.echo:Echo", "p99_ms": 100, "availability": 0.99},
        {"name": "plain", "model": "tailguard.models.echo:Echo"},
    ],
    "tenants": [{"id": "t", "api_keys": ["k"], "deployments": ["m"], "p99_ms": 50}],
})
HIST = "tailguard_request_duration_seconds"
TENANT_HIST = "tailguard_tenant_request_duration_seconds"


def _promtool(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(require_tool("promtool")), *map(str, args)],
                          capture_output=True, text=True, timeout=120)


def _rules(tmp_path: Path) -> Path:
    path = tmp_path / "rules.yml"
    path.write_text(render_rules(CONFIG))
    return path


def _without_annotations(rules: Path) -> Path:
    # promtool compares annotations too, and these carry the live value ($value); firing is
    # decided by expr and labels alone, which is what these tests pin down.
    doc = yaml.safe_load(rules.read_text())
    for group in doc["groups"]:
        for rule in group["rules"]:
            rule.pop("annotations", None)
    path = rules.with_name("rules-for-test.yml")
    path.write_text(yaml.safe_dump(doc))
    return path


def _burn(severity: str, factor: str, long_w: str, short_w: str, slo: str,
          **subject: str) -> dict[str, Any]:
    return {"exp_labels": {**subject, "slo": slo, "severity": severity, "burn_rate": factor,
                           "long_window": long_w, "short_window": short_w}}


def fast_page(slo: str, **subject: str) -> dict[str, Any]:
    return _burn("page", "14.4", "1h", "5m", slo, **subject)


def slow_page(slo: str, **subject: str) -> dict[str, Any]:
    return _burn("page", "6", "6h", "30m", slo, **subject)


def ticket(slo: str, **subject: str) -> dict[str, Any]:
    return _burn("ticket", "1", "3d", "6h", slo, **subject)


def _expect(eval_time: str, alertname: str, *alerts: dict[str, Any]) -> dict[str, Any]:
    return {"eval_time": eval_time, "alertname": alertname, "exp_alerts": list(alerts)}


def _run_case(tmp_path: Path, series: dict[str, str], checks: list[dict[str, Any]],
              evaluation_interval: str = "1m") -> None:
    # Samples stay a minute apart; a coarser evaluation only spares promtool work where no
    # check needs the exact minute an alert starts.
    rules = _without_annotations(_rules(tmp_path))
    test = {"rule_files": [rules.name], "evaluation_interval": evaluation_interval, "tests": [{
        "interval": "1m",
        "input_series": [{"series": s, "values": v} for s, v in series.items()],
        "alert_rule_test": checks,
    }]}
    path = tmp_path / "test.yml"
    path.write_text(yaml.safe_dump(test, sort_keys=False))
    result = _promtool("test", "rules", path)
    assert result.returncode == 0, result.stdout + result.stderr


AVAIL = "TailguardAvailabilityBurnRate"
LATENCY = "TailguardLatencyBurnRate"
SHED = "TailguardTenantShed"


def test_rendered_rules_pass_promtool_check(tmp_path: Path) -> None:
    result = _promtool("check", "rules", _rules(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_the_k8s_prometheusrule_is_a_rules_file_promtool_accepts(tmp_path: Path) -> None:
    """What ``tailguard k8s render`` ships to prometheus-operator (issue 15)."""
    from tailguard.k8s import K8sSpec, render_serve

    objects = render_serve(CONFIG, K8sSpec(monitoring="servicemonitor", autoscaler="hpa"))
    (rule,) = [o for o in objects if o["kind"] == "PrometheusRule"]
    path = tmp_path / "operator.yml"
    path.write_text(yaml.safe_dump(rule["spec"], sort_keys=False))
    result = _promtool("check", "rules", path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_window_scaled_rules_pass_promtool_check(tmp_path: Path) -> None:
    path = tmp_path / "scaled.yml"
    path.write_text(render_rules(CONFIG, window_scale=0.01))
    result = _promtool("check", "rules", path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_20_percent_error_step_fires_the_fast_page_within_its_window(tmp_path: Path) -> None:
    # 6 h healthy at 100 req/min, then 20% errors for an hour, then healthy again. Budget 1%:
    # the 1 h ratio passes 14.4% after 43 min of the step; the 6 h one reaches 6% only after
    # 108 min, so the slow page stays quiet; the ticket (1%: 6 h ratio after 18 min) fires.
    step = 360  # minutes of health before the step
    ok = f"0+100x{step - 1} {step * 100}+80x59 {step * 100 + 60 * 80}+100x60"
    errors = f"0x{step - 1} 0+20x59 1200x60"
    series = {f'{HIST}_count{{deployment="m",protocol="v2",outcome="ok"}}': ok,
              f'{HIST}_count{{deployment="m",protocol="v2",outcome="error"}}': errors}
    m = {"deployment": "m"}
    _run_case(tmp_path, series, [
        _expect(f"{step - 1}m", AVAIL),                                 # healthy: nothing
        _expect(f"{step + 10}m", AVAIL),                                # too early for any
        _expect(f"{step + 38}m", AVAIL, ticket("availability", **m)),   # 1 h ratio ~12.7%
        _expect(f"{step + 50}m", AVAIL, fast_page("availability", **m),
                ticket("availability", **m)),
        # Errors stop at step + 60: the 5 m window clears the fast page though the 1 h ratio
        # is still 20%; the ticket's 6 h window keeps it up.
        _expect(f"{step + 67}m", AVAIL, ticket("availability", **m)),
        _expect(f"{step + 50}m", LATENCY),  # errors are no latency breach
    ])


def test_a_slow_2_percent_burn_fires_only_the_ticket(tmp_path: Path) -> None:
    series = {f'{HIST}_count{{deployment="m",protocol="v2",outcome="ok"}}': "0+98x420",
              f'{HIST}_count{{deployment="m",protocol="v2",outcome="error"}}': "0+2x420"}
    _run_case(tmp_path, series, [
        _expect("30m", AVAIL, ticket("availability", deployment="m")),
        _expect("3h", AVAIL, ticket("availability", deployment="m")),
        _expect("7h", AVAIL, ticket("availability", deployment="m")),
    ], evaluation_interval="5m")


def test_a_healthy_series_fires_nothing(tmp_path: Path) -> None:
    # 0.5% errors against a 1% budget, 99.5% within the latency objective, sheds galore (not
    # errors), and a deployment with no traffic at all.
    series = {
        f'{HIST}_count{{deployment="m",protocol="v2",outcome="ok"}}': "0+1000x420",
        f'{HIST}_bucket{{deployment="m",protocol="v2",outcome="ok",le="0.1"}}': "0+995x420",
        f'{HIST}_count{{deployment="m",protocol="v2",outcome="error"}}': "0+5x420",
        f'{HIST}_count{{deployment="m",protocol="v2",outcome="shed"}}': "0+500x420",
        f'{HIST}_count{{deployment="plain",protocol="v2",outcome="ok"}}': "0x420",
    }
    _run_case(tmp_path, series, [
        check for t in ("10m", "2h", "7h")
        for check in (_expect(t, AVAIL), _expect(t, LATENCY), _expect(t, SHED))],
        evaluation_interval="5m")


def test_a_latency_breach_fires_the_latency_alerts(tmp_path: Path) -> None:
    # 20% of successful requests slower than 100 ms, for the deployment and its tenant (whose
    # own objective, 50 ms, is the le="0.05" edge); availability is perfect.
    series = {
        f'{HIST}_count{{deployment="m",protocol="v2",outcome="ok"}}': "0+100x60",
        f'{HIST}_bucket{{deployment="m",protocol="v2",outcome="ok",le="0.1"}}': "0+80x60",
        f'{TENANT_HIST}_count{{tenant="t",deployment="m",outcome="ok"}}': "0+100x60",
        f'{TENANT_HIST}_bucket{{tenant="t",deployment="m",outcome="ok",le="0.05"}}': "0+80x60",
        # Within the deployment's 100 ms but not the tenant's 50 ms: not the tenant's edge.
        f'{TENANT_HIST}_bucket{{tenant="t",deployment="m",outcome="ok",le="0.1"}}': "0+100x60",
    }
    m, tm = {"deployment": "m"}, {"tenant": "t", "deployment": "m"}
    _run_case(tmp_path, series, [
        _expect("10m", LATENCY, fast_page("latency", **m), slow_page("latency", **m),
                ticket("latency", **m), fast_page("latency", **tm), slow_page("latency", **tm),
                ticket("latency", **tm)),
        _expect("10m", AVAIL),
    ])


def test_a_tenant_shed_persistently_gets_a_ticket_not_an_availability_alert(
        tmp_path: Path) -> None:
    series = {
        f'{TENANT_HIST}_count{{tenant="t",deployment="m",outcome="ok"}}': "0+70x480",
        f'{TENANT_HIST}_count{{tenant="t",deployment="m",outcome="shed"}}': "0+30x480",
        'tailguard_tenant_rejections_total{tenant="t",deployment="m",reason="shed"}':
            "0+30x480",
        'tailguard_tenant_rejections_total{tenant="t",deployment="m",reason="rate_limited"}':
            "0+500x480",
    }
    shed = {"exp_labels": {"tenant": "t", "deployment": "m", "severity": "ticket",
                           "long_window": "6h", "short_window": "30m"}}
    _run_case(tmp_path, series, [
        _expect("7h", SHED, shed),
        _expect("7h", AVAIL),
    ], evaluation_interval="5m")
