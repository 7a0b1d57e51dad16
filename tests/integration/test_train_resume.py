"""Real worker processes: determinism across a crash + ``--resume``, FSDP, train -> registry.

Small digits jobs (2 workers, gloo on CPU, a few dozen steps) keep this file to ~30 s.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
import typer
import yaml
from safetensors.torch import load_file
from typer.testing import CliRunner

from tailguard.artifacts import Registry
from tailguard.commands import train as train_commands
from tailguard.models import load_model_class
from tailguard.tensors import TensorSpec
from tailguard.train import LocalEngine, TrainResult, parse_job, read_events
from tailguard.train.metrics import last_per_step
from tailguard.train.trainer import FAULT_ENV
from tests.integration.digits_data import make_digits

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def digits(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return make_digits(tmp_path_factory.mktemp("digits"), shard_rows=500)


def _job(digits: dict[str, Path], **over: Any) -> dict[str, Any]:
    job: dict[str, Any] = {
        "name": "digits-it",
        "model": {"builder": "mlp", "kwargs": {"in_features": 64, "hidden": [32],
                                               "out_features": 10}},
        "data": {"train": str(digits["train"]), "eval": str(digits["test"]),
                 "features": ["px*"], "label": "label"},
        "optimizer": {"name": "adamw", "lr": 0.01},
        "schedule": {"name": "cosine", "warmup_steps": 4},
        "batch_size": 16, "max_steps": 24, "world_size": 2, "checkpoint_every_steps": 4,
        "heartbeat_timeout_s": 30, "max_restarts": 0,
    }
    job.update(over)
    return job


def _engine(home: Path, env: dict[str, str] | None = None) -> LocalEngine:
    return LocalEngine(home, env=env, progress=False, echo=lambda _msg: None)


def _weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return load_file(str(run_dir / "artifact" / "weights.safetensors"))


@pytest.fixture(scope="module")
def straight(digits: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
             ) -> tuple[Path, TrainResult]:
    home = tmp_path_factory.mktemp("home")
    result = _engine(home).run(parse_job(_job(digits)))
    assert result.succeeded, result.message
    return home, result


def _dropout_job(digits: dict[str, Path]) -> dict[str, Any]:
    """With dropout every step draws from the RNGs: a resume must restore their states."""
    return _job(digits, model={"builder": "mlp", "kwargs": {
        "in_features": 64, "hidden": [32], "out_features": 10, "dropout": 0.2}})


@pytest.fixture(scope="module")
def straight_dropout(digits: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
                     ) -> tuple[Path, TrainResult]:
    home = tmp_path_factory.mktemp("home-dropout")
    result = _engine(home).run(parse_job(_dropout_job(digits)))
    assert result.succeeded, result.message
    return home, result


def test_crash_then_resume_replays_the_same_loss_curve_and_weights(
        digits: dict[str, Path], straight_dropout: tuple[Path, TrainResult],
        tmp_path: Path) -> None:
    home, reference = straight_dropout
    crash = {FAULT_ENV: json.dumps({"rank": 1, "step": 14, "attempt": 0})}
    failed = _engine(home, crash).run(parse_job(_dropout_job(digits)))
    assert not failed.succeeded and "rank 1 exited with code 3" in failed.message

    job_file = tmp_path / "job.yaml"
    job_file.write_text(yaml.safe_dump(_dropout_job(digits)))
    env = {**os.environ, "TAILGUARD_HOME": str(home)}
    env.pop(FAULT_ENV, None)
    cli = subprocess.run([sys.executable, "-m", "tailguard.cli", "train", str(job_file),
                          "--resume"], env=env, capture_output=True, text=True, timeout=100,
                         check=False)
    assert cli.returncode == 0, cli.stderr
    assert json.loads(cli.stdout.splitlines()[-1])["run_id"] == failed.run_id

    events = read_events(failed.run_dir / "metrics.jsonl")
    starts = [e for e in events if e["event"] == "start"]
    assert [s["resumed_from_step"] for s in starts] == [None, 12]  # latest complete checkpoint
    # Exact equality, not a tolerance: on CPU the same ops run on the same inputs in the same
    # order (data order from (seed, epoch, consumed), each rank's RNG states — dropout's masks —
    # restored from the checkpoint, LR a function of the step, optimiser state restored bit
    # for bit by DCP), and gloo's allreduce of two ranks is a single commutative addition.
    # Steps 13-14 ran twice here and must agree too.
    ref_loss = {s: e["loss"] for s, e in last_per_step(read_events(reference.run_dir /
                                                                   "metrics.jsonl")).items()}
    assert sorted(ref_loss) == list(range(1, 25))
    for e in events:
        if e["event"] == "step":
            assert e["loss"] == ref_loss[e["step"]], f"step {e['step']} diverged"
    straight_weights = _weights(reference.run_dir)
    for name, tensor in _weights(failed.run_dir).items():
        assert torch.equal(tensor, straight_weights[name]), name

    app = typer.Typer()
    train_commands.register(app)
    shown = CliRunner().invoke(app, ["runs", "show", failed.run_id, "--json"],
                               env={"TAILGUARD_HOME": str(home)})
    assert shown.exit_code == 0, shown.output
    summary = json.loads(shown.output)
    assert summary["status"] == "succeeded" and summary["attempts"] == 2
    assert summary["last_step"] == 24 and summary["artifact_ref"].startswith("digits-it:")


def test_elastic_shrink_continues_the_same_trajectory_on_fewer_workers(
        digits: dict[str, Path], straight: tuple[Path, TrainResult], tmp_path: Path) -> None:
    """Rank 1 fails at step 14 in every attempt: the restart at 2 workers fails again without a
    new checkpoint, so the next runs on 1 worker (min_world_size) from step 12 — with the same
    global batch and the same data order, i.e. the same training as the straight 2-worker run."""
    _, reference = straight
    fault = {FAULT_ENV: json.dumps({"rank": 1, "step": 14})}
    job = parse_job(_job(digits, min_world_size=1, max_restarts=2, register_artifact=False))
    result = _engine(tmp_path, fault).run(job)
    assert result.succeeded, result.message
    assert (result.restarts, result.world_size, result.final_step) == (2, 1, 24)
    events = read_events(result.run_dir / "metrics.jsonl")
    starts = [e for e in events if e["event"] == "start"]
    assert [(s["world_size"], s["resumed_from_step"]) for s in starts] == [
        (2, None), (2, 12), (1, 12)]
    assert starts[-1]["per_rank_batch"] == 32 and starts[-1]["global_batch"] == 32
    # Not bit-exact: one worker sums the 32 rows' gradients in one reduction where two
    # workers add two 16-row sums, a different float summation order (~1e-7 relative per
    # step); over 12 AdamW steps that stays far below 1e-5.
    ref = last_per_step(read_events(reference.run_dir / "metrics.jsonl"))
    for step, e in last_per_step(events).items():
        assert e["loss"] == pytest.approx(ref[step]["loss"], rel=1e-5), step
    straight_weights = _weights(reference.run_dir)
    for name, tensor in _weights(result.run_dir).items():
        torch.testing.assert_close(tensor, straight_weights[name], rtol=1e-5, atol=1e-6)


def test_registered_artifact_serves_the_trained_module(
        digits: dict[str, Path], straight: tuple[Path, TrainResult]) -> None:
    from torch.distributed.checkpoint.format_utils import dcp_to_torch_save

    home, result = straight
    assert result.artifact_ref is not None
    manifest, path = Registry(home).get(result.artifact_ref)
    assert manifest.entrypoint == "tailguard.models.torch_module:TorchModule"
    assert manifest.lineage["data"]["train"] and manifest.lineage["job_config_hash"]
    assert manifest.metrics["steps"] == 24.0 and "accuracy" in manifest.metrics
    model = load_model_class(manifest.entrypoint)(artifact_dir=path, **manifest.options)
    model.input_specs = [TensorSpec(d.name, d.datatype, tuple(d.shape)) for d in manifest.inputs]
    model.output_specs = [TensorSpec(d.name, d.datatype, tuple(d.shape))
                          for d in manifest.outputs]
    model.validate_declaration()
    model.setup()

    table = pq.read_table(digits["test"] / "shard-00000.parquet")
    x = np.stack([table[f"px{i}"].to_numpy() for i in range(64)], axis=1).astype(np.float32)
    out = model.predict({"features": x})
    assert out["probabilities"].shape == (len(x), 10) and out["label"].dtype == np.int64

    # the trained module, straight from the run's final DCP checkpoint
    checkpoint = Path(manifest.lineage["checkpoint"])
    dcp_to_torch_save(checkpoint, path.parent / "final.pt")
    state = torch.load(path.parent / "final.pt", weights_only=False)["model"]
    trained = torch.nn.Sequential(torch.nn.Linear(64, 32), torch.nn.ReLU(),
                                  torch.nn.Linear(32, 10))
    trained.load_state_dict(state)
    with torch.no_grad():
        logits = trained(torch.from_numpy(x))
    np.testing.assert_array_equal(out["label"], logits.argmax(1).numpy())
    np.testing.assert_allclose(out["probabilities"], torch.softmax(logits, 1).numpy(), rtol=1e-6)
    accuracy = float((out["label"] == table["label"].to_numpy()).mean())
    assert accuracy == pytest.approx(manifest.metrics["accuracy"])


def test_fsdp_two_workers_checkpoint_and_resume(digits: dict[str, Path], tmp_path: Path) -> None:
    job = parse_job(_job(digits, parallel="fsdp", max_steps=8, max_restarts=1,
                         register_artifact=False))
    fault = {FAULT_ENV: json.dumps({"rank": 0, "step": 6, "attempt": 0})}
    result = _engine(tmp_path, fault).run(job)
    assert result.succeeded, result.message
    assert result.restarts == 1 and result.final_step == 8
    events = read_events(result.run_dir / "metrics.jsonl")
    assert [e["resumed_from_step"] for e in events if e["event"] == "start"] == [None, 4]
    by_step: dict[int, set[float]] = {}
    for e in events:
        if e["event"] == "step":
            by_step.setdefault(e["step"], set()).add(e["loss"])
    assert sorted(by_step) == list(range(1, 9))
    assert all(len(losses) == 1 for losses in by_step.values()), by_step  # replay is exact
    weights = _weights(result.run_dir)
    assert weights["0.weight"].shape == (32, 64)  # gathered whole, not a shard


def test_trained_artifact_serves_over_v2_without_extra_code(
        digits: dict[str, Path], straight: tuple[Path, TrainResult], start_server) -> None:  # type: ignore[no-untyped-def]
    """train -> registry -> `tailguard serve` -> tritonclient: the same labels as in-process."""
    import tritonclient.http as httpclient

    home, result = straight
    assert result.artifact_ref is not None
    manifest, _ = Registry(home).get(result.artifact_ref)
    server = start_server({"deployments": [{"name": "digits", "artifact": result.artifact_ref}]},
                          home=home).wait_ready()
    table = pq.read_table(digits["test"] / "shard-00000.parquet")
    x = np.stack([table[f"px{i}"].to_numpy() for i in range(64)], axis=1).astype(np.float32)
    client = httpclient.InferenceServerClient(url=f"127.0.0.1:{server.port}")
    try:
        meta = client.get_model_metadata("digits")
        (decl,) = meta["inputs"]
        inp = httpclient.InferInput(decl["name"], list(x.shape), "FP32")
        inp.set_data_from_numpy(x, binary_data=False)
        out = client.infer("digits", [inp], outputs=[
            httpclient.InferRequestedOutput("label", binary_data=False)])
    finally:
        client.close()
    labels = out.as_numpy("label")
    accuracy = float((labels == table["label"].to_numpy()).mean())
    assert accuracy == pytest.approx(manifest.metrics["accuracy"])
