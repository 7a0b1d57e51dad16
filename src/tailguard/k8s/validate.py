"""Offline validation of rendered manifests: no cluster needed.

Built-in kinds go through ``kubernetes-validate`` in strict mode (an unknown field is an
error); custom resources (KEDA ScaledObject, KubeRay RayCluster and RayJob) through
``jsonschema`` against the CRD schemas vendored in ``schemas/`` (from the projects' own CRD
files; ``schemas/README.md`` names the releases), tightened as CRD schemas need:
``x-kubernetes-int-or-string`` fields accept an integer or a string, and an object that lists
``properties`` without ``additionalProperties`` rejects any other key (else a typo such as
``workerGroupSpec`` passes). Both packages are in the ``dev`` extra.
"""

from __future__ import annotations

import copy
import json
from functools import cache
from pathlib import Path
from typing import Any

__all__ = ["CRD_SCHEMAS", "KUBERNETES_VERSION", "ManifestInvalid", "validate_object"]

KUBERNETES_VERSION = "1.33"
SCHEMA_DIR = Path(__file__).parent / "schemas"
CRD_SCHEMAS = {
    ("keda.sh/v1alpha1", "ScaledObject"): "scaledobject-keda-v1alpha1.json",
    ("ray.io/v1", "RayCluster"): "raycluster-ray-v1.json",
    ("ray.io/v1", "RayJob"): "rayjob-ray-v1.json",
}
# Kinds of operators whose schemas are not vendored: checked for shape only.
# A PrometheusRule's spec is a Prometheus rules file: the suite checks it with promtool.
UNCHECKED = {("monitoring.coreos.com/v1", "ServiceMonitor"),
             ("monitoring.coreos.com/v1", "PrometheusRule")}


class ManifestInvalid(ValueError):
    """A manifest its schema refuses; the message names the object and the field."""


def validate_object(obj: dict[str, Any]) -> None:
    """Raise :class:`ManifestInvalid` unless ``obj`` is valid for its kind."""
    key = (obj.get("apiVersion"), obj.get("kind"))
    where = f"{key[1]} {obj.get('metadata', {}).get('name')!r}"
    if key in UNCHECKED:
        if not isinstance(obj.get("spec"), dict):
            raise ManifestInvalid(f"{where}: no spec")
        return
    if key in CRD_SCHEMAS:
        _validate_custom(obj, key, where)
        return
    import kubernetes_validate

    try:
        kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
    except kubernetes_validate.ValidationError as exc:
        path = ".".join(str(p) for p in exc.path)
        raise ManifestInvalid(f"{where}: {path or '(top)'}: {exc.message}") from None


def _validate_custom(obj: dict[str, Any], key: tuple[Any, Any], where: str) -> None:
    import jsonschema

    validator = jsonschema.Draft7Validator(_strict_schema(CRD_SCHEMAS[key]))
    errors = sorted(validator.iter_errors(obj), key=lambda e: list(e.absolute_path))
    if errors:
        first = errors[0]
        path = ".".join(str(p) for p in first.absolute_path)
        raise ManifestInvalid(f"{where}: {path or '(top)'}: {first.message}")


@cache
def _strict_schema(file: str) -> dict[str, Any]:
    crd = json.loads((SCHEMA_DIR / file).read_text())
    schema = copy.deepcopy(crd["openAPIV3Schema"])
    # apiVersion/kind/metadata are the API server's: the CRD leaves metadata open.
    schema.setdefault("properties", {}).setdefault("metadata", {"type": "object"})
    tightened: dict[str, Any] = _tighten(schema)
    return tightened


def _tighten(node: Any) -> Any:
    if isinstance(node, list):
        return [_tighten(n) for n in node]
    if not isinstance(node, dict):
        return node
    node = {k: _tighten(v) for k, v in node.items()}
    if node.pop("x-kubernetes-int-or-string", False):
        node.pop("type", None)
        node["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    if ("properties" in node and "additionalProperties" not in node
            and not node.get("x-kubernetes-preserve-unknown-fields")):
        node["additionalProperties"] = False
    return node
