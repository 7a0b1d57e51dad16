"""Model parallelism end to end: real worker processes (gloo on CPU) on a tiny transformer.

Golden curves: tp=2, pp=2 (1F1B, 2 microbatches) and dp=2 with FSDP2 train the same model on
the same global batches as one process, so their per-step losses must equal the one-process
curve up to float rounding. Then a run trained at tp=2 resumes at dp=2 (FSDP2) from its DCP
checkpoint, and the exported artifact is the plain module whatever the layout.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from safetensors.torch import load_file
from torch.distributed.checkpoint.format_utils import dcp_to_torch_save

from tailguard.artifacts import Registry
from tailguard.data import ingest
from tailguard.models import load_model_class
from tailguard.tensors import TensorSpec
from tailguard.train import LocalEngine, TrainResult, parse_job, read_events
from tailguard.train.metrics import last_per_step
from tailguard.train.trainer import FAULT_ENV

pytestmark = pytest.mark.timeout(180)

STEPS = 6
# Tolerance of the golden curves. The layouts compute the same sums in other orders: TP adds
# each row-parallel projection as two half-sums (an all-reduce), the pipeline accumulates two
# microbatch gradients, FSDP2 averages two half-batch gradients. Each differs from the
# one-process result by float32 rounding (~1e-7 relative per op). SGD with momentum carries
# such a difference linearly (AdamW would not: near-zero gradients divided by sqrt(v) turn
# rounding into updates of up to lr, so its weights are not comparable element-wise); over
# 6 steps measured ≤ 1e-6 relative here. 1e-4 leaves room for other CPUs' kernels, while any
# real mistake (a wrong shard, a double-counted microbatch, another rank's rows) changes the
# loss in the second or third decimal within a step or two.
LOSS_RTOL = 1e-4
WEIGHT_ATOL = 1e-4  # lr 0.1 on gradients ~1e-2: a wrong update moves weights by ~1e-3


FEATURES = 16


@pytest.fixture(scope="module")
def digits(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Digits pooled to 4x4 pixels: 16 tokens a sample keep the transformer's steps cheap."""
    from sklearn.datasets import load_digits

    root = tmp_path_factory.mktemp("digits4")
    d = load_digits()
    order = np.random.default_rng(0).permutation(len(d.target))
    x = d.images[order].reshape(-1, 4, 2, 4, 2).mean(axis=(2, 4)).reshape(-1, FEATURES) / 16.0
    y = d.target[order]
    out = {}
    for name, rows in (("train", slice(0, 1400)), ("test", slice(1400, None))):
        csv = root / f"{name}.csv"
        header = ",".join([*(f"px{i}" for i in range(FEATURES)), "label"])
        lines = [",".join([*(f"{v:g}" for v in r), str(int(t))])
                 for r, t in zip(x[rows], y[rows], strict=True)]
        csv.write_text(header + "\n" + "\n".join(lines) + "\n")
        ingest([str(csv)], root / name, shard_rows=500)
        out[name] = root / name
    return out


def _job(digits: dict[str, Path], **over: Any) -> dict[str, Any]:
    job: dict[str, Any] = {
        "name": "mp-it",
        "model": {"builder": "transformer_classifier",
                  "kwargs": {"in_features": FEATURES, "out_features": 10, "dim": 16, "heads": 4,
                             "layers": 2}},
        "data": {"train": str(digits["train"]), "eval": str(digits["test"]),
                 "features": ["px*"], "label": "label"},
        "optimizer": {"name": "sgd", "lr": 0.1, "momentum": 0.9},
        "batch_size": 32, "max_steps": STEPS, "world_size": 1, "checkpoint_every_steps": 3,
        "heartbeat_timeout_s": 60, "max_restarts": 0, "register_artifact": False,
    }
    job.update(over)
    return job


def _run(home: Path, job: dict[str, Any], env: dict[str, str] | None = None,
         **kwargs: Any) -> TrainResult:
    engine = LocalEngine(home, env=env, progress=False, echo=lambda _msg: None)
    return engine.run(parse_job(job), **kwargs)


def _losses(result: TrainResult) -> dict[int, float]:
    return {s: e["loss"] for s, e in last_per_step(read_events(result.run_dir /
                                                               "metrics.jsonl")).items()}


def _weights(result: TrainResult) -> dict[str, torch.Tensor]:
    return load_file(str(result.run_dir / "artifact" / "weights.safetensors"))


@pytest.fixture(scope="module")
def single(digits: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> TrainResult:
    result = _run(tmp_path_factory.mktemp("single"), _job(digits))
    assert result.succeeded, result.message
    return result


LAYOUTS = {
    "tp2": {"parallel": {"dp": 1, "tp": 2}, "world_size": 2},
    "pp2": {"parallel": {"dp": 1, "pp": 2, "schedule": "1f1b", "microbatches": 2},
            "world_size": 2},
    "dp2-fsdp": {"parallel": {"dp": 2, "fsdp": True}, "world_size": 2, "batch_size": 16},
}


@pytest.mark.parametrize("name", sorted(LAYOUTS))
def test_layout_follows_the_single_process_loss_curve(
        name: str, digits: dict[str, Path], single: TrainResult, tmp_path: Path) -> None:
    result = _run(tmp_path, _job(digits, **LAYOUTS[name], register_artifact=True))
    assert result.succeeded, result.message
    reference, losses = _losses(single), _losses(result)
    assert sorted(losses) == list(range(1, STEPS + 1))
    worst = max(abs(losses[s] - reference[s]) / reference[s] for s in reference)
    assert worst <= LOSS_RTOL, (name, worst, losses, reference)
    # the artifact is the plain, whole module (gathered from shards and stages)
    weights, expected = _weights(result), _weights(single)
    assert set(weights) == set(expected)
    for key, tensor in weights.items():
        assert tensor.shape == expected[key].shape, key
        torch.testing.assert_close(tensor, expected[key], rtol=0, atol=WEIGHT_ATOL)
    events = read_events(result.run_dir / "metrics.jsonl")
    (memory,) = [e for e in events if e["event"] == "memory"]
    world = LAYOUTS[name]["world_size"]
    assert [r["rank"] for r in memory["ranks"]] == list(range(world))
    (single_memory,) = [e for e in read_events(single.run_dir / "metrics.jsonl")
                        if e["event"] == "memory"]
    whole = single_memory["ranks"][0]["param_bytes"]
    # every layout splits the parameters: each rank holds less than the whole model
    assert all(r["param_bytes"] < whole for r in memory["ranks"]), memory
    _check_servable(digits, result)


def _check_servable(digits: dict[str, Path], result: TrainResult) -> None:
    """What ``tailguard serve`` does with a registered artifact: rebuild the plain module
    from the manifest and load the weights; its accuracy is the run's."""
    assert result.artifact_ref is not None
    manifest, path = Registry(result.run_dir.parent.parent).get(result.artifact_ref)
    model = load_model_class(manifest.entrypoint)(artifact_dir=path, **manifest.options)
    model.input_specs = [TensorSpec(d.name, d.datatype, tuple(d.shape)) for d in manifest.inputs]
    model.output_specs = [TensorSpec(d.name, d.datatype, tuple(d.shape))
                          for d in manifest.outputs]
    model.setup()
    table = pq.read_table(digits["test"] / "shard-00000.parquet")
    x = np.stack([table[f"px{i}"].to_numpy() for i in range(FEATURES)], axis=1).astype(np.float32)
    out = model.predict({"features": x})
    accuracy = float((out["label"] == table["label"].to_numpy()).mean())
    assert accuracy == pytest.approx(manifest.metrics["accuracy"], abs=1e-9)


def test_trained_at_tp2_resumes_at_dp2_with_the_same_weights(
        digits: dict[str, Path], single: TrainResult, tmp_path: Path) -> None:
    """tp=2 crashes after step 5 (checkpoint at step 3); the run resumes at dp=2 + FSDP2."""
    tp = _job(digits, **LAYOUTS["tp2"])
    fault = {FAULT_ENV: json.dumps({"rank": 1, "step": 5, "attempt": 0})}
    crashed = _run(tmp_path, tp, fault)
    assert not crashed.succeeded
    checkpoint = crashed.run_dir / "checkpoints" / "step-00000003"
    dcp_to_torch_save(checkpoint, tmp_path / "step3.pt")
    saved = torch.load(tmp_path / "step3.pt", weights_only=False)["model"]
    # a finished run cannot be resumed again: the second resume below starts from a copy
    shutil.copytree(crashed.run_dir, crashed.run_dir.with_name(crashed.run_id + "-again"))

    # resumed at dp=2 and stopped at step 3: the exported weights are the checkpoint's, exactly
    # (DCP reshards TP's column/row shards into FSDP2's row shards, then gathers them)
    dp = _job(digits, **LAYOUTS["dp2-fsdp"])
    loaded = _run(tmp_path, {**dp, "max_steps": 3}, resume=True, run_id=crashed.run_id)
    assert loaded.succeeded, loaded.message
    for key, tensor in _weights(loaded).items():
        assert torch.equal(tensor, saved[key]), key

    # and training on at dp=2 continues the same curve (the optimiser state came along)
    resumed = _run(tmp_path, dp, resume=True, run_id=crashed.run_id + "-again")
    assert resumed.succeeded, resumed.message
    events = read_events(resumed.run_dir / "metrics.jsonl")
    starts = [(e["layout"], e["resumed_from_step"]) for e in events if e["event"] == "start"]
    assert starts == [("dp1.tp2.pp1", None), ("dp2.tp1.pp1.fsdp", 3)]
    reference, losses = _losses(single), _losses(resumed)
    assert sorted(losses) == list(range(1, STEPS + 1))
    for step in range(1, STEPS + 1):
        assert losses[step] == pytest.approx(reference[step], rel=LOSS_RTOL), step
    for key, tensor in _weights(resumed).items():
        torch.testing.assert_close(tensor, _weights(single)[key], rtol=0, atol=WEIGHT_ATOL)
