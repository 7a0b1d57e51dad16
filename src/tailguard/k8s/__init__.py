"""Kubernetes manifests from a serve config or a training job (``tailguard k8s``)."""

from tailguard.k8s.render import render_job, render_serve, write_manifests
from tailguard.k8s.spec import K8sSpec, Quota

__all__ = ["K8sSpec", "Quota", "render_job", "render_serve", "write_manifests"]
