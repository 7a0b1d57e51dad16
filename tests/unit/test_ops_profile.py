"""Profiling in-process: generated inputs, the sleep model's table matches its per-row cost,
and stored profiles round-trip into the autoscaler's ServiceProfile."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from tailguard.artifacts import Manifest, Registry, build_artifact
from tailguard.autoscale.snapshot import ServiceProfile
from tailguard.models.echo import Echo
from tailguard.models.sleep import Sleep
from tailguard.ops.profile import (
    default_batch_sizes,
    find_profile,
    generate_inputs,
    profile_deployment,
    profile_model,
    service_profile_from_dict,
    store_profile,
)
from tailguard.serve.config import DeploymentSpec
from tailguard.tensors import TensorSpec


def test_generated_inputs_follow_the_declared_specs() -> None:
    specs = [TensorSpec("x", "FP32", (-1, -1)), TensorSpec("text", "BYTES", (-1,)),
             TensorSpec("ids", "INT64", (-1, 3)), TensorSpec("mask", "BOOL", (-1, 2))]
    batch = generate_inputs(specs, 5, np.random.default_rng(0), variable_dim=4)
    assert batch["x"].shape == (5, 4) and batch["x"].dtype == np.float32
    assert float(batch["x"].min()) >= 0.0  # the sleep model refuses negatives
    assert batch["text"].shape == (5,) and isinstance(batch["text"][0], bytes)
    assert len(batch["text"][0].split()) >= 4
    assert batch["ids"].shape == (5, 3) and batch["ids"].dtype == np.int64
    assert batch["mask"].dtype == np.bool_


def test_default_batch_sizes() -> None:
    assert default_batch_sizes(1) == (1,)
    assert default_batch_sizes(16) == (1, 2, 4, 8, 16)
    assert default_batch_sizes(24) == (1, 2, 4, 8, 16, 24)


def test_sleep_model_profile_slope_matches_per_row_ms() -> None:
    model = Sleep(sleep_ms=2, per_row_ms=1)
    prof = profile_model(model, "sleep", (1, 8, 16), seconds=0.1)
    assert [t.batch_size for t in prof.timings] == [1, 8, 16]
    assert all(t.repetitions >= 5 for t in prof.timings)
    fit = ServiceProfile.fit(prof.service_table())
    # time.sleep overshoots a little per call, never undershoots: loose above, tight below.
    assert 0.95e-3 <= fit.per_row_s <= 1.3e-3
    assert 1.5e-3 <= fit.fixed_s <= 4.0e-3
    assert prof.best_batch_size == 16  # the fixed cost amortises: biggest batch is best
    assert prof.max_rows_per_s == pytest.approx(prof.timings[-1].rows_per_s)
    assert prof.memory_mb >= 0


def test_stored_profile_round_trips_to_the_autoscaler_profile(tmp_path: Path) -> None:
    spec = DeploymentSpec(name="e", model="tailguard.models.echo:Echo", max_batch_size=4)
    prof = profile_deployment(spec, seconds=0.02)
    assert [t.batch_size for t in prof.timings] == [1, 2, 4]
    stored = store_profile(prof, spec, home=tmp_path)
    path = tmp_path / "profiles" / "e.json"
    assert stored == [str(path)]
    data = json.loads(path.read_text())
    # The form ServiceProfile.from_table reads: batch size -> seconds.
    sp = ServiceProfile.from_table(data["service_s"])
    assert sp.table == tuple(sorted(prof.service_table().items()))
    assert find_profile("e", spec, home=tmp_path) == data
    assert service_profile_from_dict(data, max_batch_size=64).max_batch_size == 64
    with pytest.raises(ValueError, match="tailguard profile nope"):
        find_profile("nope", None, home=tmp_path)


def test_artifact_deployment_stores_the_profile_in_its_manifest(tmp_path: Path) -> None:
    src = tmp_path / "src"
    build_artifact(src, Manifest(name="toy", version="1", entrypoint="tailguard.models.echo:Echo"),
                   tensors={"w": torch.ones(2)})
    Registry(tmp_path).register(src)
    spec = DeploymentSpec(name="toy", artifact="toy:1", max_batch_size=2)
    prof = profile_model(Echo(), "toy", (1, 2), seconds=0.01, model_ref="toy:1")
    stored = store_profile(prof, spec, home=tmp_path)
    assert stored[-1] == "artifact toy:1"
    manifest, _ = Registry(tmp_path).get("toy:1")
    assert manifest.profile["service_s"].keys() == {"1", "2"}
    assert find_profile("toy", spec, home=tmp_path)["model"] == "toy:1"


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="batch sizes"):
        profile_model(Echo(), "e", (0,), seconds=0.1)
    with pytest.raises(ValueError, match="service_s"):
        service_profile_from_dict({})
