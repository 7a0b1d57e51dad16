"""Grafana dashboards for tailguard's Prometheus metrics, generated from a serve config.

``tailguard dashboards render --config serve.yaml -o DIR`` writes two dashboards, to import in
Grafana (Dashboards → Import) or to provision from a folder:

- ``tailguard-serving.json``: per deployment — request rate, error and shed rates, P50/P99/P99.9
  of successful requests (with each deployment's ``p99_ms`` drawn as a line), queue depth and
  wait, batch size, ready and desired replicas, replica service time, error budget remaining;
  per tenant — requests by outcome, P99, rejections by reason, error budget remaining.
- ``tailguard-training.json``: loss, samples per second, step time (P50/P99), restarts, from
  the ``tailguard_train_*`` metrics a training job exports.

Every query names its data source through the ``${datasource}`` template variable (pick any
Prometheus data source at import), and the serving one filters by the ``deployment`` and
``tenant`` variables (multi-select, "All" by default). The error-budget panels read the
recording rules of :mod:`tailguard.observe.slo_rules`: load those into the same Prometheus
(``tailguard monitor`` does). Output is deterministic: the same config gives the same bytes.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from tailguard.serve.config import ServeConfig

__all__ = ["DASHBOARD_FILES", "Panel", "dashboards", "expressions", "render_dashboards"]

DASHBOARD_FILES = ("tailguard-serving.json", "tailguard-training.json")
_DS = {"type": "prometheus", "uid": "${datasource}"}
_RATE = "[$__rate_interval]"
_D = 'deployment=~"$deployment"'
_TD = 'tenant=~"$tenant",deployment=~"$deployment"'


@dataclass(frozen=True)
class Panel:
    """One time-series panel: a title, a unit and PromQL targets (expr, legend)."""

    title: str
    unit: str
    targets: tuple[tuple[str, str], ...]
    description: str = ""
    width: int = 12
    options: dict[str, Any] = field(default_factory=dict)


def _quantiles(metric: str, selector: str, by: str,
               qs: tuple[float, ...] = (0.5, 0.99, 0.999)) -> tuple[tuple[str, str], ...]:
    legend = " ".join("{{" + b.strip() + "}}" for b in by.split(","))
    series = f"{metric}_bucket" + (f"{{{selector}}}" if selector else "")
    return tuple(
        (f"histogram_quantile({q}, sum by ({by}, le) (rate({series}{_RATE})))",
         f"{legend} P{q * 100:g}") for q in qs)


def _serving_panels(config: ServeConfig) -> Iterator[Panel | str]:
    yield "Deployments"
    yield Panel("Request rate", "reqps", (
        (f"sum by (deployment) (rate(tailguard_requests_total{{{_D}}}{_RATE}))",
         "{{deployment}}"),))
    yield Panel("Errors (5xx) and sheds (429)", "reqps", tuple(
        (f"sum by (deployment) (rate(tailguard_request_duration_seconds_count"
         f'{{{_D},outcome="{o}"}}{_RATE}))', "{{deployment}} " + o)
        for o in ("error", "shed")),
        "Sheds are admission control at work; they do not count against availability.")
    # Each objective as a flat line, shown only while its deployment is selected.
    objectives = tuple(
        (f'0 * max by (deployment) (tailguard_replicas_ready{{deployment="{d.name}",{_D}}})'
         f" + {d.p99_ms / 1000:g}", "{{deployment}} p99_ms objective")
        for d in config.deployments if d.p99_ms is not None)
    yield Panel("Latency of successful requests (P50 / P99 / P99.9)", "s",
                _quantiles("tailguard_request_duration_seconds", f'{_D},outcome="ok"',
                           "deployment") + objectives,
                "End to end in the gateway; 429s and errors are left out (own outcome label).")
    yield Panel("Queue depth", "short", (
        (f"sum by (deployment) (tailguard_queue_depth{{{_D}}})", "{{deployment}} rows"),))
    yield Panel("Queue wait (P50 / P99)", "s",
                _quantiles("tailguard_queue_wait_seconds", _D, "deployment", (0.5, 0.99)))
    yield Panel("Batch size (mean rows)", "short", (
        (f"sum by (deployment) (rate(tailguard_batch_size_rows_sum{{{_D}}}{_RATE}))"
         f" / sum by (deployment) (rate(tailguard_batch_size_rows_count{{{_D}}}{_RATE}))",
         "{{deployment}}"),))
    yield Panel("Replicas: ready and desired", "short", (
        (f"sum by (deployment) (tailguard_replicas_ready{{{_D}}})", "{{deployment}} ready"),
        (f"sum by (deployment) (tailguard_replicas_desired{{{_D}}})",
         "{{deployment}} desired")))
    yield Panel("Replica service time (P50 / P99)", "s",
                _quantiles("tailguard_replica_service_seconds", _D, "deployment", (0.5, 0.99)),
                "Time a batch spends in the replica's predict.")
    yield Panel("Error budget remaining (30 days)", "percentunit", tuple(
        (f"tailguard_deployment_slo:{sli}_budget_remaining:ratio{{{_D}}}",
         "{{deployment}} " + sli) for sli in ("availability", "latency")),
        "From the `tailguard alerts render` recording rules: 1 - errors / budget.")
    yield "Tenants"
    yield Panel("Tenant requests by outcome", "reqps", (
        (f"sum by (tenant, outcome) (rate(tailguard_tenant_request_duration_seconds_count"
         f"{{{_TD}}}{_RATE}))", "{{tenant}} {{outcome}}"),))
    yield Panel("Tenant latency of successful requests (P99)", "s",
                _quantiles("tailguard_tenant_request_duration_seconds", f'{_TD},outcome="ok"',
                           "tenant, deployment", (0.99,)))
    yield Panel("Tenant rejections by reason", "reqps", (
        (f"sum by (tenant, reason) (rate(tailguard_tenant_rejections_total{{{_TD}}}{_RATE}))",
         "{{tenant}} {{reason}}"),))
    yield Panel("Tenant error budget remaining (30 days)", "percentunit", tuple(
        (f"tailguard_tenant_slo:{sli}_budget_remaining:ratio{{{_TD}}}",
         "{{tenant}} {{deployment}} " + sli) for sli in ("availability", "latency")))


def _training_panels() -> Iterator[Panel | str]:
    yield "Training"
    yield Panel("Loss", "short", (("tailguard_train_loss", "{{job}} {{instance}}"),))
    yield Panel("Throughput", "short", (
        ("tailguard_train_samples_per_second", "{{job}} {{instance}} samples/s"),))
    yield Panel("Step time (P50 / P99)", "s",
                _quantiles("tailguard_train_step_seconds", "", "job, instance", (0.5, 0.99)))
    yield Panel("Restarts", "short", (
        ("tailguard_train_restarts_total", "{{job}} {{instance}}"),),
        "Group restarts after a worker failed (a counter: each step up is one restart).")


def _variable_query(name: str, query: str) -> dict[str, Any]:
    return {"name": name, "label": name, "type": "query", "datasource": _DS,
            "definition": query, "query": {"query": query, "refId": f"{name}-values"},
            "refresh": 2, "multi": True, "includeAll": True, "allValue": ".*",
            "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
            "sort": 1}


def _dashboard(uid: str, title: str, items: Iterator[Panel | str],
               variables: list[dict[str, Any]]) -> dict[str, Any]:
    panels: list[dict[str, Any]] = []
    x = y = 0
    for item in items:
        panel_id = len(panels) + 1
        if isinstance(item, str):
            y += 8 if x else 0
            x = 0
            panels.append({"id": panel_id, "type": "row", "title": item, "collapsed": False,
                           "gridPos": {"h": 1, "w": 24, "x": 0, "y": y}, "panels": []})
            y += 1
            continue
        if x + item.width > 24:
            x, y = 0, y + 8
        panels.append({
            "id": panel_id, "type": "timeseries", "title": item.title,
            "description": item.description, "datasource": _DS,
            "gridPos": {"h": 8, "w": item.width, "x": x, "y": y},
            "fieldConfig": {"defaults": {"unit": item.unit}, "overrides": []},
            "options": {"legend": {"displayMode": "list", "placement": "bottom"},
                        "tooltip": {"mode": "multi"}, **item.options},
            "targets": [{"datasource": _DS, "expr": expr, "legendFormat": legend,
                         "refId": chr(ord("A") + i)}
                        for i, (expr, legend) in enumerate(item.targets)],
        })
        x += item.width
    datasource = {"name": "datasource", "label": "Data source", "type": "datasource",
                  "query": "prometheus", "current": {}, "hide": 0}
    return {
        "uid": uid, "title": title, "tags": ["tailguard"], "editable": True,
        "schemaVersion": 39, "version": 1, "refresh": "10s", "timezone": "",
        "time": {"from": "now-1h", "to": "now"},
        "templating": {"list": [datasource, *variables]},
        "annotations": {"list": []},
        "panels": panels,
    }


def dashboards(config: ServeConfig) -> dict[str, dict[str, Any]]:
    """File name -> Grafana dashboard JSON model, for every file of ``DASHBOARD_FILES``."""
    serving = _dashboard(
        "tailguard-serving", "tailguard: serving", _serving_panels(config),
        [_variable_query("deployment", "label_values(tailguard_requests_total, deployment)"),
         _variable_query("tenant",
                         "label_values(tailguard_tenant_requests_total, tenant)")])
    training = _dashboard("tailguard-training", "tailguard: training", _training_panels(), [])
    return dict(zip(DASHBOARD_FILES, (serving, training), strict=True))


def expressions(dashboard: dict[str, Any]) -> list[tuple[str, str]]:
    """(panel title, PromQL) of every target of ``dashboard``, template variables unreplaced."""
    return [(p["title"], t["expr"]) for p in dashboard["panels"] for t in p.get("targets", ())]


def render_dashboards(config: ServeConfig) -> dict[str, str]:
    """File name -> JSON text (indented, stable key order, newline at the end)."""
    return {name: json.dumps(board, indent=2, ensure_ascii=False) + "\n"
            for name, board in dashboards(config).items()}
