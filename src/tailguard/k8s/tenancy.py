"""Tenant isolation objects: namespaces, quotas, limits, service accounts, network policies.

Isolation has three layers, each enforced by something other than tailguard:

- *who may call what*: the gateway's API keys (hashed in its ConfigMap) and per-tenant quotas;
- *what a tenant's own workloads may use*: a Namespace per tenant (or a shared one) with a
  ResourceQuota and a LimitRange, and a ServiceAccount of its own;
- *who may reach whom*: NetworkPolicies — a tenant's pods take traffic only from their own
  tenant and send it only to their own tenant, the gateway and DNS; so one tenant's workloads
  cannot reach another's, and none reaches a replica except through the gateway.
"""

from __future__ import annotations

from typing import Any

from tailguard.k8s.spec import K8sSpec, dns_label
from tailguard.serve.config import ServeConfig

__all__ = [
    "GATEWAY_PORT",
    "TENANT_LABEL",
    "gateway_labels",
    "tenancy_objects",
    "tenant_namespace",
]

GATEWAY_PORT = 8000
TENANT_LABEL = "tailguard.io/tenant"
_PART = "app.kubernetes.io/part-of"
_COMPONENT = "app.kubernetes.io/component"


def gateway_labels(k8s: K8sSpec) -> dict[str, str]:
    return {"app.kubernetes.io/name": k8s.name, _COMPONENT: "gateway", _PART: k8s.name}


def tenant_namespace(k8s: K8sSpec, tenant_id: str) -> str:
    if k8s.tenant_namespaces == "shared":
        return k8s.namespace
    return dns_label(f"{k8s.name}-tenant-{tenant_id}")


def tenancy_objects(config: ServeConfig, k8s: K8sSpec) -> list[dict[str, Any]]:
    """The gateway's Namespace, then per tenant: its Namespace (per-tenant mode), quota,
    limits, ServiceAccount and NetworkPolicy."""
    objects = [_namespace(k8s.namespace, {_PART: k8s.name, _COMPONENT: "gateway"})]
    shared = k8s.tenant_namespaces == "shared"
    if shared and config.tenants:
        objects += [_quota(k8s, k8s.namespace, f"{k8s.name}-tenants", None),
                    _limits(k8s, k8s.namespace, f"{k8s.name}-tenants")]
    for tenant in config.tenants:
        ns = tenant_namespace(k8s, tenant.id)
        name = dns_label(f"{k8s.name}-tenant-{tenant.id}")
        labels = {_PART: k8s.name, TENANT_LABEL: dns_label(tenant.id)}
        if not shared:
            objects += [_namespace(ns, labels), _quota(k8s, ns, name, tenant.id),
                        _limits(k8s, ns, name)]
        objects.append({"apiVersion": "v1", "kind": "ServiceAccount",
                        "metadata": _meta(name, ns, labels),
                        "automountServiceAccountToken": False})
        objects.append(_tenant_policy(k8s, ns, name, dns_label(tenant.id), shared))
    return objects


def _meta(name: str, namespace: str | None, labels: dict[str, str]) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "labels": dict(labels)}
    if namespace is not None:
        meta["namespace"] = namespace
    return meta


def _namespace(name: str, labels: dict[str, str]) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": _meta(name, None, labels)}


def _quota(k8s: K8sSpec, ns: str, name: str, tenant_id: str | None) -> dict[str, Any]:
    quota = k8s.tenant_quotas.get(tenant_id or "", k8s.tenant_quota)
    return {"apiVersion": "v1", "kind": "ResourceQuota",
            "metadata": _meta(name, ns, {_PART: k8s.name}),
            "spec": {"hard": {"requests.cpu": quota.cpu, "limits.cpu": quota.cpu,
                              "requests.memory": quota.memory, "limits.memory": quota.memory,
                              "pods": str(quota.pods)}}}


def _limits(k8s: K8sSpec, ns: str, name: str) -> dict[str, Any]:
    # Defaults for containers that set none: a ResourceQuota on cpu/memory refuses pods
    # without requests and limits, so every tenant pod needs them.
    return {"apiVersion": "v1", "kind": "LimitRange",
            "metadata": _meta(name, ns, {_PART: k8s.name}),
            "spec": {"limits": [{"type": "Container",
                                 "default": {"cpu": "500m", "memory": "512Mi"},
                                 "defaultRequest": {"cpu": "100m", "memory": "128Mi"}}]}}


def _tenant_policy(k8s: K8sSpec, ns: str, name: str, tenant: str,
                   shared: bool) -> dict[str, Any]:
    """The tenant's pods: ingress from their own tenant only; egress to their own tenant,
    the gateway's port and DNS only."""
    own: dict[str, Any] = ({"podSelector": {"matchLabels": {TENANT_LABEL: tenant}}} if shared
                           else {"podSelector": {}})
    gateway = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name":
                                                     k8s.namespace}},
               "podSelector": {"matchLabels": gateway_labels(k8s)}}
    dns = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name":
                                                 "kube-system"}},
           "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}}}
    return {
        "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
        "metadata": _meta(name, ns, {_PART: k8s.name, TENANT_LABEL: tenant}),
        "spec": {
            "podSelector": {"matchLabels": {TENANT_LABEL: tenant}} if shared else {},
            "policyTypes": ["Ingress", "Egress"],
            "ingress": [{"from": [own]}],
            "egress": [
                {"to": [own]},
                {"to": [gateway], "ports": [{"port": GATEWAY_PORT, "protocol": "TCP"}]},
                {"to": [dns], "ports": [{"port": 53, "protocol": "UDP"},
                                        {"port": 53, "protocol": "TCP"}]},
            ],
        },
    }
