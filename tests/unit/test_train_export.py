"""Export -> artifact -> TorchModule, without training processes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from tailguard.artifacts import Registry, verify_artifact
from tailguard.models import ModelError, load_model_class
from tailguard.tensors import TensorSpec
from tailguard.train.builtin_models import build_module
from tailguard.train.export import ENTRYPOINT, export_artifact
from tailguard.train.job import parse_job


def _job(tmp_path: Path, **over: Any) -> Any:
    data = {"name": "tiny", "model": {"builder": "mlp", "kwargs": {"in_features": 4,
                                                                   "out_features": 3}},
            "data": {"train": str(tmp_path), "features": ["x"], "label": "y"},
            "batch_size": 4, "max_steps": 1}
    data.update(over)
    return parse_job(data)


def _export(tmp_path: Path, job: Any, module: torch.nn.Module, width: int) -> Path:
    out = tmp_path / "artifact"
    export_artifact(out, job=job, run_id="tiny-20250101-000000-abcd",
                    weights=module.state_dict(), input_spec=TensorSpec("features", "FP32",
                                                                       (-1, 4)),
                    output_width=width, metrics={"accuracy": 0.5}, checkpoint=None, step=1,
                    world_size=2)
    return out


def _load(path: Path) -> Any:
    manifest = verify_artifact(path)
    model = load_model_class(manifest.entrypoint)(artifact_dir=path, **manifest.options)
    model.input_specs = [TensorSpec(d.name, d.datatype, tuple(d.shape)) for d in manifest.inputs]
    model.setup()
    return model


def test_classifier_round_trip_matches_the_module(tmp_path: Path) -> None:
    job = _job(tmp_path)
    torch.manual_seed(0)
    module = build_module("mlp", {"in_features": 4, "out_features": 3})
    path = _export(tmp_path, job, module, 3)
    manifest = verify_artifact(path)
    assert manifest.entrypoint == ENTRYPOINT and manifest.name == "tiny"
    assert manifest.version == "20250101-000000-abcd" and manifest.task == "classification"
    assert [o.name for o in manifest.outputs] == ["probabilities", "label"]
    assert manifest.lineage["job_config_hash"] == job.config_hash()
    assert manifest.lineage["code"]["tailguard"]

    model = _load(path)
    x = np.random.default_rng(0).normal(size=(5, 4)).astype(np.float32)
    out = model.predict({"features": x})
    with torch.no_grad():
        logits = module(torch.from_numpy(x))
    np.testing.assert_allclose(out["probabilities"], torch.softmax(logits, 1).numpy(), rtol=1e-6)
    assert out["label"].tolist() == logits.argmax(1).tolist()

    registered = Registry(tmp_path / "home").register(path)
    assert Registry(tmp_path / "home").get(registered.ref)[0].options == manifest.options


def test_regression_outputs_prediction(tmp_path: Path) -> None:
    job = _job(tmp_path, objective={"loss": "mse", "metric": "mse"},
               model={"builder": "mlp", "kwargs": {"in_features": 4, "out_features": 1}})
    module = build_module("mlp", {"in_features": 4, "out_features": 1})
    out = _load(_export(tmp_path, job, module, 1)).predict({"features": np.ones((2, 4),
                                                                                 np.float32)})
    assert set(out) == {"prediction"} and out["prediction"].shape == (2, 1)


def test_torch_module_says_what_is_missing(tmp_path: Path) -> None:
    cls = load_model_class(ENTRYPOINT)
    with pytest.raises(ModelError, match="option 'builder'"):
        cls(artifact_dir=tmp_path, task="classification")
    with pytest.raises(ModelError, match="weights.safetensors"):
        cls(artifact_dir=tmp_path, builder="mlp", task="classification",
            kwargs={"in_features": 4, "out_features": 3}).setup()
