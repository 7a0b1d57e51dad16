"""``sleep``: a stand-in model with a controllable service time, for tests and capacity work.

Service time per batch is ``sleep_ms + per_row_ms * rows`` (options). It returns ``x`` as ``y``.
A row whose first value is negative makes ``predict`` raise ``ValueError`` (a model-level bad
input), which lets tests check that one bad request does not fail its batch-mates.
"""

from __future__ import annotations

import time

import numpy as np

from tailguard.models.base import Model
from tailguard.tensors import Tensors, TensorSpec


class Sleep(Model):
    inputs = (TensorSpec("x", "FP32", (-1, -1)),)
    outputs = (TensorSpec("y", "FP32", (-1, -1)),)

    def setup(self) -> None:
        self._sleep_s = float(self.options.get("sleep_ms", 10)) / 1000.0
        self._per_row_s = float(self.options.get("per_row_ms", 0)) / 1000.0

    def predict(self, batch: Tensors) -> Tensors:
        x = batch["x"]
        if x.size and bool(np.any(x.reshape(len(x), -1)[:, 0] < 0)):
            raise ValueError("negative first value: this model refuses it")
        time.sleep(self._sleep_s + self._per_row_s * len(x))
        return {"y": x}
