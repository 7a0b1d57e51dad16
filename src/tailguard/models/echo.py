"""``echo``: returns its input unchanged — measures the serving overhead alone."""

from __future__ import annotations

from tailguard.models.base import Model
from tailguard.tensors import Tensors, TensorSpec


class Echo(Model):
    """Echoes the ``INPUT0`` tensor (FP32, any width) as ``OUTPUT0``."""

    inputs = (TensorSpec("INPUT0", "FP32", (-1, -1)),)
    outputs = (TensorSpec("OUTPUT0", "FP32", (-1, -1)),)

    def predict(self, batch: Tensors) -> Tensors:
        return {"OUTPUT0": batch["INPUT0"]}
