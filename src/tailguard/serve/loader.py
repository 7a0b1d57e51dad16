"""Resolve a deployment spec to a Model instance and its declared inputs/outputs.

Used twice: by the gateway (metadata and validation, no ``setup()``) and inside each replica
process (where ``setup()`` then runs). Artifacts are verified file by file on every load.
"""

from __future__ import annotations

from dataclasses import dataclass

from tailguard.artifacts import Registry
from tailguard.models.base import Model, load_model_class
from tailguard.serve.config import DeploymentSpec
from tailguard.tensors import TensorSpec


@dataclass(frozen=True)
class ModelSignature:
    """What a deployment declares: the V2 metadata of its model."""

    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    platform: str


def instantiate(spec: DeploymentSpec) -> Model:
    """Build (without ``setup()``) the model a deployment serves."""
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
