"""``TorchModule``: serves any ``nn.Module`` trained by ``tailguard train``.

The artifact's manifest names this class as its entrypoint and passes, as options, how to
rebuild the module — ``builder`` (a built-in name or ``package.module:function``) and
``kwargs`` — plus the task and the input's name and type. ``setup()`` rebuilds the module and
loads ``weights.safetensors`` from the artifact directory; ``predict`` runs it in inference
mode. Loading one by hand::

    manifest, path = Registry().get("digits")
    cls = load_model_class(manifest.entrypoint)          # this class
    model = cls(artifact_dir=path, **manifest.options)
    model.input_specs = [TensorSpec(d.name, d.datatype, tuple(d.shape)) for d in manifest.inputs]
    model.setup()
    model.predict({"features": x})   # -> {"probabilities": (n, C) FP32, "label": (n,) INT64}

A numeric input (FP32) reaches the module as a float tensor; a ``BYTES`` input as a list of
``str`` (text models tokenise inside ``forward``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from tailguard.models.base import Model, ModelError
from tailguard.tensors import Tensors, TensorSpec


class TorchModule(Model):
    """A trained torch module rebuilt from its builder and loaded from safetensors."""

    def __init__(self, artifact_dir: Path | None = None, **options: Any) -> None:
        super().__init__(artifact_dir, **options)
        for key in ("builder", "task"):
            if key not in options:
                raise ModelError(f"TorchModule needs option {key!r} (written by tailguard train "
                                 "into the manifest's options)")
        self.task = str(options["task"])
        name = str(options.get("input_name", "features"))
        datatype = str(options.get("input_datatype", "FP32"))
        shape = tuple(int(d) for d in options.get("input_shape", [-1, -1]))
        width = int(options.get("output_width", -1))
        # Defaults for use without a manifest; the serving side overrides them from it.
        self.input_specs = [TensorSpec(name, datatype, shape)]
        if self.task == "classification":
            self.output_specs = [TensorSpec("probabilities", "FP32", (-1, width)),
                                 TensorSpec("label", "INT64", (-1,))]
        else:
            self.output_specs = [TensorSpec("prediction", "FP32", (-1, width))]
        self.module: Any = None

    def setup(self) -> None:
        import torch
        from safetensors.torch import load_file

        from tailguard.train.builtin_models import build_module

        if self.artifact_dir is None:
            raise ModelError("TorchModule needs artifact_dir (the artifact holding its weights)")
        weights = Path(self.artifact_dir) / "weights.safetensors"
        if not weights.is_file():
            raise ModelError(f"{weights} not found: not an artifact written by tailguard train")
        try:
            module = build_module(str(self.options["builder"]),
                                  dict(self.options.get("kwargs", {})))
        except (ValueError, TypeError) as exc:
            raise ModelError(f"cannot rebuild the trained module: {exc}") from exc
        missing, unexpected = module.load_state_dict(load_file(str(weights)), strict=False)
        if missing or unexpected:
            raise ModelError(f"weights do not fit the rebuilt module: missing {missing}, "
                             f"unexpected {unexpected}")
        module.eval()
        self.module = module
        self._torch = torch

    def predict(self, batch: Tensors) -> Tensors:
        if self.module is None:
            raise ModelError("TorchModule.predict called before setup()")
        torch = self._torch
        spec = self.input_specs[0]
        value = batch[spec.name]
        inputs: Any
        if spec.datatype == "BYTES":
            inputs = [v.decode() if isinstance(v, bytes) else str(v)
                      for v in np.asarray(value).reshape(-1)]
        else:
            inputs = torch.from_numpy(np.ascontiguousarray(value, dtype=np.float32))
        with torch.inference_mode():
            outputs = self.module(inputs).float()
        if self.task == "classification":
            probabilities = torch.softmax(outputs, dim=-1)
            return {"probabilities": probabilities.numpy().astype(np.float32),
                    "label": outputs.argmax(dim=-1).numpy().astype(np.int64)}
        return {"prediction": outputs.reshape(outputs.shape[0], -1).numpy().astype(np.float32)}
