"""Resolve a deployment spec to a Model instance and its declared inputs/outputs.

Used twice: by the gateway (metadata and validation, no ``setup()``) and inside each replica
process (where ``setup()`` then runs). Artifacts are verified file by file on every load.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from tailguard.artifacts import Registry
from tailguard.artifacts.manifest import ArtifactError
from tailguard.models.base import Model, ModelError, load_model_class
from tailguard.serve.config import DeploymentSpec
from tailguard.tensors import TensorSpec


@dataclass(frozen=True)
class ModelSignature:
    """What a deployment declares: the V2 metadata of its model."""

    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    platform: str


class DeploymentLoadError(ValueError):
    """A deployment's model or artifact cannot be loaded: one line naming the field."""


def import_roots(config_path: Path | None) -> list[Path]:
    """Where a deployment's ``model: package.module:Class`` is looked for, before
    PYTHONPATH: the config file's directory, then the working directory (as ``python -m``
    would; the ``tailguard`` script alone would look in neither)."""
    roots = [] if config_path is None else [Path(config_path).resolve().parent]
    cwd = Path.cwd().resolve()
    return roots if cwd in roots else [*roots, cwd]


def extend_import_path(roots: Sequence[Path]) -> None:
    """Put ``roots`` on this process's import path and, through PYTHONPATH, on that of the
    replica processes it starts (they inherit the environment)."""
    for root in reversed(roots):
        if str(root) not in sys.path:
            sys.path.insert(0, str(root))
    inherited = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    os.environ["PYTHONPATH"] = os.pathsep.join(
        [*(str(r) for r in roots if str(r) not in inherited), *inherited])


def _search_hint() -> str:
    roots = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    where = ", ".join(roots) if roots else "PYTHONPATH (empty)"
    return (f"looked in {where} and the installed packages; put the package beside the "
            "config file or in the working directory, add its directory to PYTHONPATH, "
            "or pip install it")


def instantiate(spec: DeploymentSpec) -> Model:
    """Build (without ``setup()``) the model a deployment serves; a model or artifact that
    cannot be loaded is a :class:`DeploymentLoadError` naming the deployment and field."""
    field = "artifact" if spec.artifact is not None else "model"
    try:
        return _instantiate(spec)
    except ArtifactError as exc:
        raise DeploymentLoadError(f"deployment {spec.name!r}, field {field!r}: {exc}") from exc
    except ModelError as exc:
        hint = f"; {_search_hint()}" if isinstance(exc.__cause__, ImportError) else ""
        raise DeploymentLoadError(
            f"deployment {spec.name!r}, field {field!r}: {exc}{hint}") from exc


def _instantiate(spec: DeploymentSpec) -> Model:
    if spec.artifact is not None:
        manifest, path = Registry().get(spec.artifact)
        cls = load_model_class(manifest.entrypoint)
        model = cls(artifact_dir=path, **{**manifest.options, **spec.options})
        if manifest.inputs:
            model.input_specs = [TensorSpec.from_dict(t.model_dump()) for t in manifest.inputs]
        if manifest.outputs:
            model.output_specs = [TensorSpec.from_dict(t.model_dump()) for t in manifest.outputs]
    else:
        assert spec.model is not None
        model = load_model_class(spec.model)(**spec.options)
    model.validate_declaration()
    return model


def signature(model: Model) -> ModelSignature:
    cls = type(model)
    return ModelSignature(
        inputs=tuple(model.input_specs),
        outputs=tuple(model.output_specs),
        platform=f"tailguard_{cls.__module__}.{cls.__qualname__}",
    )
