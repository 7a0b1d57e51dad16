"""How a serve config becomes Kubernetes objects: the settings only a cluster needs.

The serve config says *what* runs (deployments, tenants, SLOs); this says *where*: the image,
the namespaces, the autoscaler and the quotas. Every field has a default, so ``tailguard k8s
render serve.yaml -o out/`` works without one; ``--k8s k8s.yaml`` gives them::

    name: tailguard
    image: registry.example.com/tailguard:0.1.0
    namespace: tailguard             # the gateway's (and a RayCluster's) namespace
    tenant_namespaces: per-tenant    # or "shared": every tenant's workloads in `namespace`
    autoscaler: keda                 # KEDA on tailguard's own P99, "hpa" on CPU, or "none"
    prometheus_url: http://prometheus-operated.monitoring:9090
    tenant_quota: {cpu: "4", memory: 8Gi, pods: 20}
    tenant_quotas: {search: {cpu: "16", memory: 32Gi, pods: 50}}
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = ["K8sSpec", "Quota", "dns_label"]

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")


def dns_label(name: str) -> str:
    """``name`` as a Kubernetes DNS label: lower case, '_' and '.' as '-', at most 63."""
    label = re.sub(r"[^a-z0-9-]", "-", name.lower()).strip("-")[:63].strip("-")
    return label or "x"


class Quota(BaseModel):
    """A tenant namespace's ResourceQuota (Kubernetes quantities, e.g. ``"4"``, ``8Gi``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    cpu: str = "4"
    memory: str = "8Gi"
    pods: int = Field(20, ge=1)


class K8sSpec(BaseModel):
    """Cluster-side settings of ``tailguard k8s render`` (see the module docstring)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field("tailguard", description="prefix of every object's name")
    image: str = Field("tailguard:0.1.0", description="the image `make image` builds")
    namespace: str = Field("tailguard", description="the gateway's namespace")
    tenant_namespaces: Literal["per-tenant", "shared"] = Field(
        "per-tenant", description="a Namespace per tenant, or all in `namespace`")
    gateway_replicas: int = Field(2, ge=1, description="gateway pods (initial, with KEDA/HPA)")
    gateway_max_replicas: int = Field(8, ge=1, description="KEDA/HPA upper bound")
    gateway_cpu_m: int = Field(1000, ge=100, description="CPU request of the gateway itself, "
                                                          "millicores (replicas add theirs)")
    gateway_memory_mib: int = Field(1024, ge=128, description="memory of the gateway itself")
    replica_memory_mib: int = Field(1024, ge=64, description="memory per local replica")
    autoscaler: Literal["keda", "hpa", "none"] = Field(
        "keda", description="KEDA ScaledObject on the P99 objective, an HPA on CPU, or none: "
                            "never both on one target")
    hpa_cpu_utilization: int = Field(70, ge=1, le=100)
    prometheus_url: str = "http://prometheus-operated.monitoring:9090"
    p99_window: str = Field("1m", description="rate() window of the P99 query")
    monitoring: Literal["annotations", "servicemonitor"] = Field(
        "annotations", description="prometheus.io scrape annotations, or a ServiceMonitor "
                                   "(prometheus-operator)")
    admin_key_secret: str = Field(
        "tailguard-admin-key", description="Secret (created by you) with key `admin-key`: the "
                                           "plaintext admin key, for `tailguard apply` in-pod")
    ray_version: str = "2.60.0"
    ray_image: str | None = Field(None, description="image of Ray pods (default: `image`)")
    tenant_quota: Quota = Field(default_factory=Quota)
    tenant_quotas: dict[str, Quota] = Field(default_factory=dict, description="per tenant id")

    @model_validator(mode="after")
    def _check(self) -> K8sSpec:
        for value, what in ((self.name, "name"), (self.namespace, "namespace")):
            if not _DNS_LABEL.match(value):
                raise ValueError(f"{what} {value!r}: a DNS label (lower-case letters, digits, "
                                 "'-', at most 63)")
        if self.gateway_max_replicas < self.gateway_replicas:
            raise ValueError("gateway_max_replicas must be >= gateway_replicas")
        return self

