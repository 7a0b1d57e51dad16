"""The gateway's objects: config, pods, service, disruption budget, autoscaler, monitoring.

With ``backend: local`` a deployment's replicas are processes inside every gateway pod (the
pod's CPU request counts them), so scaling the gateway Deployment scales every local
deployment; Ray deployments' replicas run in a KubeRay RayCluster (:mod:`tailguard.k8s.ray`).

The autoscaler is one of: a KEDA ScaledObject on tailguard's own P99 (one Prometheus trigger per
deployment with ``p99_ms``; ``metricType: Value``, since a quantile must not be divided by the
pod count as ``AverageValue`` would), an HPA on CPU, or none — never two on one Deployment.
"""

from __future__ import annotations

import hashlib
import math
from typing import Any

import yaml

from tailguard.k8s.spec import K8sSpec, dns_label
from tailguard.k8s.tenancy import GATEWAY_PORT, gateway_labels
from tailguard.serve.config import DeploymentSpec, ServeConfig

__all__ = ["CONFIG_PATH", "gateway_objects", "rendered_config"]

CONFIG_PATH = "/etc/tailguard/serve.yaml"
_HOME = "/var/lib/tailguard"
_UID = 10001  # the Dockerfile's non-root user


def rendered_config(config: ServeConfig, k8s: K8sSpec, ray_address: str | None) -> str:
    """The serve YAML of the ConfigMap: all on one port in the pod, keys as sha256 digests
    only (they are already hashed at load), Ray deployments pointed at the RayCluster, and
    only the fields that differ from their defaults."""
    deployments = [d.model_copy(update={"ray_address": None}) for d in config.deployments]
    cfg = config.model_copy(update={"host": "0.0.0.0", "port": GATEWAY_PORT,
                                    "deployments": deployments,
                                    "ray_address": ray_address})
    # Defaults left out: the image's own tailguard fills them in, and a field added to the
    # config later does not change every rendered ConfigMap. The bind address is always said.
    data = {**cfg.model_dump(mode="json", exclude_defaults=True),
            "host": cfg.host, "port": cfg.port}
    return yaml.safe_dump(data, sort_keys=True)


def gateway_objects(config: ServeConfig, k8s: K8sSpec,
                    ray_address: str | None) -> list[dict[str, Any]]:
    ns, name, labels = k8s.namespace, f"{k8s.name}-gateway", gateway_labels(k8s)
    text = rendered_config(config, k8s, ray_address)
    objects: list[dict[str, Any]] = [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": _meta(name, ns, labels),
         "automountServiceAccountToken": False},
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": _meta(f"{name}-config", ns, labels),
         "data": {"serve.yaml": text}},
        _deployment(config, k8s, name, labels, hashlib.sha256(text.encode()).hexdigest()),
        _service(k8s, name, labels),
        {"apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
         "metadata": _meta(name, ns, labels),
         # One pod at a time: a drained pod finishes its requests (graceful_shutdown_s).
         "spec": {"maxUnavailable": 1, "selector": {"matchLabels": labels}}},
        {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
         "metadata": _meta(name, ns, labels),
         "spec": {"podSelector": {"matchLabels": labels}, "policyTypes": ["Ingress"],
                  # Any caller may knock on the API port; its key decides the rest.
                  "ingress": [{"ports": [{"port": GATEWAY_PORT, "protocol": "TCP"}]}]}},
    ]
    objects.extend(_autoscaler(config, k8s, name, labels))
    if k8s.monitoring == "servicemonitor":
        objects.append(_service_monitor(k8s, name, labels))
    return objects


def _meta(name: str, namespace: str, labels: dict[str, str]) -> dict[str, Any]:
    return {"name": name, "namespace": namespace, "labels": dict(labels)}


def _replica_cpu_m(config: ServeConfig, spec: DeploymentSpec) -> int:
    """Millicores of one local replica: ``num_cpus``, else its ``threads`` option, else 1."""
    if config.backend_of(spec) != "local":
        return 0
    threads = spec.options.get("threads", 1)
    cpus = spec.num_cpus if spec.num_cpus is not None else float(threads)
    return math.ceil(cpus * 1000)


def _local_replicas(config: ServeConfig, spec: DeploymentSpec) -> int:
    if config.backend_of(spec) != "local":
        return 0
    auto = spec.autoscaling
    return max(spec.replicas, auto.max_replicas if auto is not None else 0)


def _deployment(config: ServeConfig, k8s: K8sSpec, name: str, labels: dict[str, str],
                config_sha: str) -> dict[str, Any]:
    cpu_m = k8s.gateway_cpu_m + sum(
        _local_replicas(config, d) * _replica_cpu_m(config, d) for d in config.deployments)
    memory = k8s.gateway_memory_mib + k8s.replica_memory_mib * sum(
        _local_replicas(config, d) for d in config.deployments)
    annotations = {"tailguard.io/config-sha256": config_sha}  # a new config rolls the pods
    if k8s.monitoring == "annotations":
        annotations.update({"prometheus.io/scrape": "true", "prometheus.io/path": "/metrics",
                            "prometheus.io/port": str(GATEWAY_PORT)})
    probe = {"httpGet": {"path": "/v2/health/live", "port": "http"},
             "periodSeconds": 10, "timeoutSeconds": 5, "failureThreshold": 3}
    container = {
        "name": "gateway", "image": k8s.image, "imagePullPolicy": "IfNotPresent",
        "args": ["serve", "--config", CONFIG_PATH],
        "ports": [{"name": "http", "containerPort": GATEWAY_PORT, "protocol": "TCP"}],
        "env": [{"name": "TAILGUARD_HOME", "value": _HOME},
                {"name": "TAILGUARD_ADMIN_KEY", "valueFrom": {"secretKeyRef": {
                    "name": k8s.admin_key_secret, "key": "admin-key", "optional": True}}}],
        "resources": {"requests": {"cpu": f"{cpu_m}m", "memory": f"{memory}Mi"},
                      "limits": {"cpu": f"{cpu_m}m", "memory": f"{memory}Mi"}},
        # Ready when every deployment has a ready replica; live while the process answers.
        "readinessProbe": {**probe, "httpGet": {"path": "/v2/health/ready", "port": "http"},
                           "periodSeconds": 5, "failureThreshold": 2},
        "livenessProbe": probe,
        # Replicas load their models at start: liveness waits for the first answer.
        "startupProbe": {**probe, "periodSeconds": 5, "failureThreshold": 60},
        "securityContext": {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                            "capabilities": {"drop": ["ALL"]}},
        "volumeMounts": [{"name": "config", "mountPath": "/etc/tailguard", "readOnly": True},
                         {"name": "home", "mountPath": _HOME},
                         {"name": "tmp", "mountPath": "/tmp"}],
    }
    return {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": _meta(name, k8s.namespace,
                                                                          labels),
        "spec": {
            "replicas": k8s.gateway_replicas,
            "selector": {"matchLabels": labels},
            "strategy": {"type": "RollingUpdate",
                         "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
            "template": {
                "metadata": {"labels": dict(labels), "annotations": annotations},
                "spec": {
                    "serviceAccountName": name,
                    "automountServiceAccountToken": False,
                    "terminationGracePeriodSeconds": math.ceil(config.graceful_shutdown_s) + 5,
                    "securityContext": {"runAsNonRoot": True, "runAsUser": _UID,
                                        "runAsGroup": _UID, "fsGroup": _UID,
                                        "seccompProfile": {"type": "RuntimeDefault"}},
                    "containers": [container],
                    "volumes": [{"name": "config", "configMap": {"name": f"{name}-config"}},
                                {"name": "home", "emptyDir": {}},
                                {"name": "tmp", "emptyDir": {}}],
                },
            },
        },
    }


def _service(k8s: K8sSpec, name: str, labels: dict[str, str]) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Service", "metadata": _meta(name, k8s.namespace, labels),
            "spec": {"selector": labels, "type": "ClusterIP",
                     "ports": [{"name": "http", "port": GATEWAY_PORT, "targetPort": "http",
                                "protocol": "TCP"}]}}


def _p99_query(deployment: str, window: str) -> str:
    return ("histogram_quantile(0.99, sum by (le) (rate(tailguard_request_duration_seconds_"
            f'bucket{{deployment="{deployment}",outcome="ok"}}[{window}])))')


def _autoscaler(config: ServeConfig, k8s: K8sSpec, name: str,
                labels: dict[str, str]) -> list[dict[str, Any]]:
    target = {"apiVersion": "apps/v1", "kind": "Deployment", "name": name}
    if k8s.autoscaler == "none":
        return []
    if k8s.autoscaler == "hpa":
        return [{"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
                 "metadata": _meta(name, k8s.namespace, labels),
                 "spec": {"scaleTargetRef": target, "minReplicas": k8s.gateway_replicas,
                          "maxReplicas": k8s.gateway_max_replicas,
                          "metrics": [{"type": "Resource", "resource": {
                              "name": "cpu", "target": {
                                  "type": "Utilization",
                                  "averageUtilization": k8s.hpa_cpu_utilization}}}]}}]
    slo = [d for d in config.deployments if d.p99_ms is not None]
    if not slo:
        raise ValueError("autoscaler keda scales on the P99 objective: give a deployment "
                         "p99_ms, or use autoscaler hpa or none")
    triggers = [{"type": "prometheus", "name": dns_label(f"p99-{d.name}"),
                 "metricType": "Value",
                 "metadata": {"serverAddress": k8s.prometheus_url,
                              "query": _p99_query(d.name, k8s.p99_window),
                              # KEDA adds a pod while the P99 is above this many seconds.
                              "threshold": f"{(d.p99_ms or 0) / 1000:g}",
                              "ignoreNullValues": "true"}}
                for d in slo]
    return [{"apiVersion": "keda.sh/v1alpha1", "kind": "ScaledObject",
             "metadata": _meta(name, k8s.namespace, labels),
             "spec": {"scaleTargetRef": target, "minReplicaCount": k8s.gateway_replicas,
                      "maxReplicaCount": k8s.gateway_max_replicas, "pollingInterval": 15,
                      "cooldownPeriod": 300, "triggers": triggers}}]


def _service_monitor(k8s: K8sSpec, name: str, labels: dict[str, str]) -> dict[str, Any]:
    # /metrics needs a key once tenants are configured: the admin key's Secret is the token.
    return {"apiVersion": "monitoring.coreos.com/v1", "kind": "ServiceMonitor",
            "metadata": _meta(name, k8s.namespace, labels),
            "spec": {"selector": {"matchLabels": labels},
                     "endpoints": [{"port": "http", "path": "/metrics", "interval": "15s",
                                    "bearerTokenSecret": {"name": k8s.admin_key_secret,
                                                          "key": "admin-key"}}]}}
