"""KubeRay objects: a ``RayCluster`` for the Ray deployments' replicas, a ``RayJob`` for training.

The RayCluster has a head with no CPUs of its own (nothing is scheduled there) and one worker
group per Ray deployment, sized by its replicas (or autoscaling bounds) and ``num_cpus`` /
``num_gpus``; the gateway connects to it through the head's client port. A NetworkPolicy lets
only the gateway and the cluster's own pods reach Ray's pods.
"""

from __future__ import annotations

import math
from typing import Any

import yaml

from tailguard.k8s.spec import K8sSpec, dns_label
from tailguard.k8s.tenancy import gateway_labels
from tailguard.serve.config import DeploymentSpec, ServeConfig
from tailguard.train.job import TrainJob

__all__ = ["ray_address", "ray_cluster_objects", "ray_job_objects"]

_CLIENT_PORT = 10001
_JOB_PATH = "/etc/tailguard/job.yaml"
_RAY_CLUSTER_LABEL = "ray.io/cluster"


def _cluster_name(k8s: K8sSpec) -> str:
    return f"{k8s.name}-ray"


def ray_address(k8s: K8sSpec) -> str:
    """The Ray client address of the rendered RayCluster (KubeRay's head service)."""
    return f"ray://{_cluster_name(k8s)}-head-svc.{k8s.namespace}.svc:{_CLIENT_PORT}"


def _container(k8s: K8sSpec, name: str, cpus: float, gpus: float,
               memory_mib: int) -> dict[str, Any]:
    resources: dict[str, Any] = {"cpu": f"{math.ceil(max(cpus, 0.5) * 1000)}m",
                                 "memory": f"{memory_mib}Mi"}
    if gpus:
        resources["nvidia.com/gpu"] = str(math.ceil(gpus))
    return {"name": name, "image": k8s.ray_image or k8s.image,
            "resources": {"requests": dict(resources), "limits": dict(resources)},
            "securityContext": {"allowPrivilegeEscalation": False,
                                "capabilities": {"drop": ["ALL"]}}}


def _template(container: dict[str, Any], volumes: list[dict[str, Any]] | None = None
              ) -> dict[str, Any]:
    spec: dict[str, Any] = {"containers": [container], "automountServiceAccountToken": False,
                            "securityContext": {"runAsNonRoot": True, "runAsUser": 10001}}
    if volumes:
        spec["volumes"] = volumes
    return {"spec": spec}


def _head(k8s: K8sSpec, volumes: list[dict[str, Any]] | None = None,
          mounts: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    container = _container(k8s, "ray-head", 1, 0, 2048)
    container["ports"] = [{"name": "gcs", "containerPort": 6379},
                          {"name": "dashboard", "containerPort": 8265},
                          {"name": "client", "containerPort": _CLIENT_PORT}]
    if mounts:
        container["volumeMounts"] = mounts
    # num-cpus 0: replicas and ranks go to workers, the head only coordinates.
    return {"rayStartParams": {"num-cpus": "0", "dashboard-host": "0.0.0.0"},
            "template": _template(container, volumes)}


def _worker_group(k8s: K8sSpec, group: str, replicas: int, low: int, high: int,
                  cpus: float, gpus: float) -> dict[str, Any]:
    params = {"num-cpus": f"{cpus:g}"}
    if gpus:
        params["num-gpus"] = f"{gpus:g}"
    return {"groupName": group, "replicas": replicas, "minReplicas": low, "maxReplicas": high,
            "rayStartParams": params,
            "template": _template(_container(k8s, "ray-worker", cpus, gpus,
                                             k8s.replica_memory_mib))}


def _deployment_group(k8s: K8sSpec, spec: DeploymentSpec) -> dict[str, Any]:
    cpus = spec.num_cpus if spec.num_cpus is not None else float(spec.options.get("threads", 1))
    auto = spec.autoscaling
    low = auto.min_replicas if auto is not None else spec.replicas
    high = auto.max_replicas if auto is not None else spec.replicas
    return _worker_group(k8s, dns_label(spec.name), spec.replicas, low, high, cpus,
                         spec.num_gpus)


def ray_cluster_objects(config: ServeConfig, k8s: K8sSpec) -> list[dict[str, Any]]:
    """The RayCluster and its NetworkPolicy, or nothing when no deployment runs on Ray."""
    on_ray = [d for d in config.deployments if config.backend_of(d) == "ray"]
    if not on_ray:
        return []
    name = _cluster_name(k8s)
    labels = {"app.kubernetes.io/part-of": k8s.name, "app.kubernetes.io/component": "replicas"}
    cluster = {
        "apiVersion": "ray.io/v1", "kind": "RayCluster",
        "metadata": {"name": name, "namespace": k8s.namespace, "labels": labels},
        "spec": {"rayVersion": k8s.ray_version,
                 "enableInTreeAutoscaling": any(d.autoscaling is not None for d in on_ray),
                 "headGroupSpec": _head(k8s),
                 "workerGroupSpecs": [_deployment_group(k8s, d) for d in on_ray]},
    }
    # Only the gateway, and the cluster's own pods, reach Ray's ports.
    policy = {
        "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
        "metadata": {"name": name, "namespace": k8s.namespace, "labels": labels},
        "spec": {"podSelector": {"matchLabels": {_RAY_CLUSTER_LABEL: name}},
                 "policyTypes": ["Ingress"],
                 "ingress": [{"from": [
                     {"podSelector": {"matchLabels": gateway_labels(k8s)}},
                     {"podSelector": {"matchLabels": {_RAY_CLUSTER_LABEL: name}}}]}]},
    }
    return [cluster, policy]


def ray_job_objects(job: TrainJob, raw: dict[str, Any], k8s: K8sSpec) -> list[dict[str, Any]]:
    """A RayJob that runs ``tailguard train`` with the Ray engine on a cluster of its own
    (one worker per rank), and the ConfigMap holding the job file. ``raw`` is the job file's
    mapping, written as given (its data paths must be reachable from the pods: s3:// or a
    mounted volume)."""
    name = dns_label(f"{k8s.name}-train-{job.name}")
    labels = {"app.kubernetes.io/part-of": k8s.name, "app.kubernetes.io/component": "training"}
    volumes = [{"name": "job", "configMap": {"name": name}}]
    mounts = [{"name": "job", "mountPath": "/etc/tailguard", "readOnly": True}]
    cpus = float(job.threads_per_worker or 1)
    gpus = 1.0 if job.device == "cuda" else 0.0
    low = job.min_world_size or job.world_size
    config_map = {"apiVersion": "v1", "kind": "ConfigMap",
                  "metadata": {"name": name, "namespace": k8s.namespace, "labels": labels},
                  "data": {"job.yaml": yaml.safe_dump(raw, sort_keys=True)}}
    ray_job = {
        "apiVersion": "ray.io/v1", "kind": "RayJob",
        "metadata": {"name": name, "namespace": k8s.namespace, "labels": labels},
        "spec": {
            "entrypoint": f"tailguard train {_JOB_PATH} --engine ray --ray-address auto",
            "shutdownAfterJobFinishes": True,
            "ttlSecondsAfterFinished": 3600,
            # tailguard restarts a failed group itself (max_restarts) from its checkpoint.
            "backoffLimit": 0,
            "rayClusterSpec": {
                "rayVersion": k8s.ray_version,
                "headGroupSpec": _head(k8s, volumes, mounts),
                "workerGroupSpecs": [_worker_group(k8s, "ranks", job.world_size, low,
                                                   job.world_size, cpus, gpus)],
            },
        },
    }
    return [config_map, ray_job]
