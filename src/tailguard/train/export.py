"""Write a trained module as a servable artifact (``tailguard.artifacts`` format).

The manifest's entrypoint is :class:`tailguard.models.torch_module.TorchModule`; its ``options``
say how to rebuild the module (builder + kwargs) and the weights are ``weights.safetensors``.
Lineage records the data fingerprints, the job's config hash, the code version and the
checkpoint the weights came from, so any served prediction traces back to its training run.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import torch

import tailguard
from tailguard.artifacts import Manifest, TensorDecl, build_artifact
from tailguard.tensors import TensorSpec
from tailguard.train.job import TrainJob

ENTRYPOINT = "tailguard.models.torch_module:TorchModule"


def code_version() -> dict[str, str | None]:
    """tailguard's version and, when running from a git checkout, its commit."""
    commit: str | None = None
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(tailguard.__file__).parent,
                             capture_output=True, text=True, timeout=5, check=False)
        if out.returncode == 0:
            commit = out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        commit = None
    return {"tailguard": tailguard.__version__, "git_commit": commit}


def data_fingerprint(dataset_dir: Path | None) -> str | None:
    """The dataset's own fingerprint from ``index.json`` if it records one, else the sha256
    of ``index.json`` itself (it lists every shard with its row count and hash)."""
    if dataset_dir is None:
        return None
    index = Path(dataset_dir) / "index.json"
    if not index.is_file():
        return None
    raw = index.read_bytes()
    try:
        data = json.loads(raw)
    except ValueError:
        data = None
    if isinstance(data, dict) and isinstance(data.get("fingerprint"), str):
        return str(data["fingerprint"])
    return "sha256:" + hashlib.sha256(raw).hexdigest()


def data_checks(dataset_dir: Path | None) -> dict[str, Any] | None:
    """The summary of the data check kept beside the dataset, when it checked this very
    dataset (same fingerprint); else None."""
    if dataset_dir is None:
        return None
    from tailguard.data.checks.report import read_summary

    summary = read_summary(str(dataset_dir))
    if summary is None or summary.get("fingerprint") != data_fingerprint(dataset_dir):
        return None
    return summary


def output_specs(task: str, width: int) -> list[TensorSpec]:
    if task == "classification":
        return [TensorSpec("probabilities", "FP32", (-1, width)),
                TensorSpec("label", "INT64", (-1,))]
    return [TensorSpec("prediction", "FP32", (-1, width))]


def _decl(spec: TensorSpec) -> TensorDecl:
    return TensorDecl(name=spec.name, datatype=spec.datatype, shape=list(spec.shape))


def export_artifact(
    out_dir: Path,
    *,
    job: TrainJob,
    run_id: str,
    weights: dict[str, torch.Tensor],
    input_spec: TensorSpec,
    output_width: int,
    metrics: dict[str, float],
    checkpoint: Path | None,
    step: int,
    world_size: int,
) -> Manifest:
    """Write ``out_dir`` (replacing it) and return its manifest; registering is separate."""
    out_dir = Path(out_dir)
    if out_dir.exists():
        shutil.rmtree(out_dir)
    outputs = output_specs(job.task, output_width)
    options: dict[str, Any] = {
        "builder": job.model.builder,
        "kwargs": dict(job.model.kwargs),
        "task": job.task,
        "input_name": input_spec.name,
        "input_datatype": input_spec.datatype,
        "input_shape": list(input_spec.shape),
        "output_width": output_width,
    }
    manifest = Manifest(
        name=job.artifact_name or job.name,
        version=run_id.removeprefix(job.name + "-") or run_id,
        task=job.task,
        runtime="pytorch",
        entrypoint=ENTRYPOINT,
        inputs=[_decl(input_spec)],
        outputs=[_decl(s) for s in outputs],
        metrics=metrics,
        lineage={
            "run_id": run_id,
            "data": {"train": data_fingerprint(job.data.train),
                     "eval": data_fingerprint(job.data.eval),
                     "checks": data_checks(job.data.train)},
            "job_config_hash": job.config_hash(),
            "code": code_version(),
            "checkpoint": str(checkpoint) if checkpoint is not None else None,
            "step": step,
            "world_size": world_size,
            "parallel": job.parallel.describe(),
            "layout": job.parallel.layout(world_size).name(),
        },
        options=options,
    )
    # clone: safetensors refuses tensors sharing storage (e.g. tied embeddings)
    tensors = {name: t.detach().to("cpu").clone() for name, t in weights.items()}
    return build_artifact(out_dir, manifest, tensors=tensors)
