"""The Model API: what a user writes to serve a model with tailguard.

A model is a small class::

    class Doubler(Model):
        inputs = (TensorSpec("x", "FP32", (-1, 4)),)
        outputs = (TensorSpec("y", "FP32", (-1, 4)),)

        def setup(self) -> None:          # runs once, inside the replica process
            self.factor = 2.0

        def predict(self, batch):         # dict of numpy arrays, leading row dimension
            return {"y": batch["x"] * self.factor}

``predict`` receives the rows of several requests concatenated and must return arrays with the
same number of rows; tailguard splits them back per request. ``artifact_dir`` is set when the
model is loaded from a registered artifact (weights and manifest live there).
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

from tailguard.tensors import Tensors, TensorSpec


class ModelError(Exception):
    """A model could not be loaded or declared itself wrongly."""


class Model:
    """Base class of every servable model. Override ``predict``; ``setup`` is optional."""

    inputs: ClassVar[Sequence[TensorSpec]] = ()
    outputs: ClassVar[Sequence[TensorSpec]] = ()
    # Modules the replica template imports once so that a new replica starts with them
    # loaded (tailguard.serve.replicas.template). Only modules whose import starts no
    # thread: the template forks, and checks.
    preload: ClassVar[tuple[str, ...]] = ()

    def __init__(self, artifact_dir: Path | None = None, **options: Any) -> None:
        self.artifact_dir = artifact_dir
        self.options = options
        # Instance copies so an artifact manifest can override the class declaration.
        self.input_specs: list[TensorSpec] = list(type(self).inputs)
        self.output_specs: list[TensorSpec] = list(type(self).outputs)

    def setup(self) -> None:
        """Load weights and warm up. Runs in the replica process, never in the gateway."""

    def predict(self, batch: Tensors) -> Tensors:
        raise NotImplementedError(f"{type(self).__name__} must implement predict(batch)")

    def validate_declaration(self) -> None:
        """Fail early, with a message saying what to fix, on a wrong model declaration."""
        name = type(self).__name__
        if not self.input_specs:
            raise ModelError(f"{name} declares no inputs: set `inputs = [TensorSpec(...)]`")
        if not self.output_specs:
            raise ModelError(f"{name} declares no outputs: set `outputs = [TensorSpec(...)]`")
        for kind, specs in (("input", self.input_specs), ("output", self.output_specs)):
            names = [s.name for s in specs]
            if len(set(names)) != len(names):
                raise ModelError(f"{name}: duplicate {kind} names in {names}")


def load_model_class(entrypoint: str) -> type[Model]:
    """Import ``module:Class`` and check it is a Model subclass."""
    module_name, sep, attr = entrypoint.partition(":")
    if not sep or not module_name or not attr:
        raise ModelError(f"entrypoint {entrypoint!r} must look like 'package.module:ClassName'")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ModelError(
            f"cannot import {module_name!r} for entrypoint {entrypoint!r}: {exc}"
        ) from exc
    cls = getattr(module, attr, None)
    if cls is None:
        raise ModelError(f"module {module_name!r} has no attribute {attr!r}")
    if not (isinstance(cls, type) and issubclass(cls, Model)):
        raise ModelError(f"{entrypoint!r} is not a subclass of tailguard.models.Model")
    return cls
