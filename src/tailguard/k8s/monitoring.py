"""The monitoring issue's output as cluster objects: SLO alert rules and Grafana dashboards.

Both come from the same functions as ``tailguard alerts render`` and ``tailguard dashboards
render``, so a cluster alerts and draws exactly what the local tools do:

- with ``monitoring: servicemonitor`` (prometheus-operator) the rules are a
  ``PrometheusRule`` beside the ServiceMonitor, labelled ``role: alert-rules`` for the
  operator's ``ruleSelector``;
- with ``monitoring: annotations`` (a plain Prometheus) they are a ConfigMap holding
  ``tailguard-slo.rules.yaml``, to mount into Prometheus' ``rule_files`` directory;
- the dashboards are one ConfigMap labelled ``grafana_dashboard: "1"``, the label Grafana's
  dashboard sidecar (the kube-prometheus-stack chart's) watches.

Every deployment has an availability SLO (``availability``, default 99.9%), so every config
with a deployment gets rules.
"""

from __future__ import annotations

from typing import Any

from tailguard.k8s.spec import K8sSpec
from tailguard.observe.grafana import render_dashboards
from tailguard.observe.slo_rules import render_rules, rules_document
from tailguard.serve.config import ServeConfig

__all__ = ["RULES_FILE", "monitoring_objects"]

RULES_FILE = "tailguard-slo.rules.yaml"


def monitoring_objects(config: ServeConfig, k8s: K8sSpec) -> list[dict[str, Any]]:
    """The rules object (if there are SLOs) and the dashboards ConfigMap, in ``namespace``."""
    labels = {"app.kubernetes.io/name": k8s.name, "app.kubernetes.io/component": "monitoring",
              "app.kubernetes.io/part-of": k8s.name}
    objects: list[dict[str, Any]] = []
    rules = rules_document(config)
    if rules["groups"]:
        name = f"{k8s.name}-slo-rules"
        meta = {"name": name, "namespace": k8s.namespace,
                "labels": {**labels, "role": "alert-rules"}}
        if k8s.monitoring == "servicemonitor":
            objects.append({"apiVersion": "monitoring.coreos.com/v1", "kind": "PrometheusRule",
                            "metadata": meta, "spec": rules})
        else:
            objects.append({"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta,
                            "data": {RULES_FILE: render_rules(config)}})
    objects.append({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": f"{k8s.name}-dashboards", "namespace": k8s.namespace,
                     "labels": {**labels, "grafana_dashboard": "1"}},
        "data": render_dashboards(config)})
    return objects
