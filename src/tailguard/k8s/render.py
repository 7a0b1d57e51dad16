"""``tailguard k8s render``: Kubernetes manifests from a serve config, byte-for-byte stable.

Rendering is a pure function of (serve config, :class:`~tailguard.k8s.spec.K8sSpec`): the same
inputs give the same bytes (keys sorted, objects in a fixed order, no timestamps), so a
re-render is a no-op diff and ``kubectl apply -f DIR`` twice changes nothing. One object per
file, ``NN-kind-name.yaml``, numbered in apply order (namespaces first)::

    objects = render_serve(config, K8sSpec(autoscaler="hpa"))
    write_manifests(objects, Path("out"))
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from tailguard.k8s.gateway import gateway_objects
from tailguard.k8s.monitoring import monitoring_objects
from tailguard.k8s.ray import ray_address, ray_cluster_objects, ray_job_objects
from tailguard.k8s.spec import K8sSpec, dns_label
from tailguard.k8s.tenancy import tenancy_objects
from tailguard.serve.config import ServeConfig
from tailguard.train.job import TrainJob

__all__ = ["dump", "render_job", "render_serve", "write_manifests"]

_HEADER = "# Rendered by `tailguard k8s render`: edit the serve config, not this file.\n"


def render_serve(config: ServeConfig, k8s: K8sSpec) -> list[dict[str, Any]]:
    """Every object for serving ``config``, in apply order."""
    on_ray = any(config.backend_of(d) == "ray" for d in config.deployments)
    return [*tenancy_objects(config, k8s),
            *ray_cluster_objects(config, k8s),
            *gateway_objects(config, k8s, ray_address(k8s) if on_ray else None),
            *monitoring_objects(config, k8s)]


def render_job(job: TrainJob, raw: dict[str, Any], k8s: K8sSpec) -> list[dict[str, Any]]:
    """The objects of one training run on KubeRay."""
    return ray_job_objects(job, raw, k8s)


class _Dumper(yaml.SafeDumper):
    """Multi-line strings (the ConfigMap's serve.yaml) as literal blocks, readable in a diff;
    no anchors and aliases where two fields hold equal values."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)


def dump(obj: dict[str, Any]) -> str:
    return _HEADER + yaml.dump(obj, Dumper=_Dumper, sort_keys=True, default_flow_style=False,
                               width=100)


def file_name(index: int, obj: dict[str, Any]) -> str:
    return f"{index:02d}-{obj['kind'].lower()}-{dns_label(obj['metadata']['name'])}.yaml"


def write_manifests(objects: list[dict[str, Any]], out: Path) -> list[Path]:
    """Write one file per object into ``out``; files of an earlier render that this one no
    longer makes are removed (so a removed tenant's objects do not linger)."""
    out.mkdir(parents=True, exist_ok=True)
    names = [file_name(i, o) for i, o in enumerate(objects)]
    for stale in out.glob("[0-9][0-9]-*.yaml"):
        if stale.name not in names and stale.read_text().startswith(_HEADER):
            stale.unlink()
    paths = []
    for name, obj in zip(names, objects, strict=True):
        path = out / name
        text = dump(obj)
        if not path.exists() or path.read_text() != text:  # untouched files keep their mtime
            path.write_text(text)
        paths.append(path)
    return paths
