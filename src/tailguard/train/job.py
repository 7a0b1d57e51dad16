"""The typed training job spec: what ``tailguard train JOB.yaml`` reads.

A job names a model builder, the datasets and columns, the objective, the optimiser and its
schedule, how long to train, and how the local engine runs and supervises the workers::

    name: digits
    model: {builder: mlp, kwargs: {in_features: 64, hidden: [128], out_features: 10}}
    data: {train: data/digits/train, eval: data/digits/test, features: ["px*"], label: label}
    objective: {loss: cross_entropy, metric: accuracy}
    optimizer: {name: adamw, lr: 0.003, weight_decay: 0.0001}
    schedule: {name: cosine, warmup_steps: 20}
    batch_size: 32
    epochs: 10
    world_size: 2
    target: {metric: accuracy, value: 0.97}

Relative dataset paths are resolved against the current directory by :func:`load_job`.
"""

from __future__ import annotations

import hashlib
import json
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from tailguard.observe.trace_spec import TracingSpec
from tailguard.train.layout import Layout, ParallelKind, ParallelSpec

__all__ = ["JobError", "ParallelKind", "ParallelSpec", "TrainJob", "load_job", "parse_job"]


class JobError(Exception):
    """A job file is missing or invalid; the message says which field and what to do."""


class _Spec(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ModelSpec(_Spec):
    """How to build the ``nn.Module``: a built-in name (``mlp``, ``minilm_classifier``) or
    ``package.module:function``, called with ``kwargs``. Model code never sees
    torch.distributed: parallelism is applied to the returned module."""

    builder: str
    kwargs: dict[str, Any] = Field(default_factory=dict)


class DataSpec(_Spec):
    """Dataset directories (written by ``tailguard data ingest``) and the columns to use.

    ``features`` lists column names or shell-style globs (``px*``), expanded in the dataset's
    column order; several numeric columns are stacked into one FP32 matrix, one list column is
    used as is, one string column is passed to the module as a list of ``str``.
    """

    train: Path
    eval: Path | None = None
    features: list[str] = Field(min_length=1)
    label: str
    dataset_factory: str = Field(
        default="tailguard.data:StreamingDataset",
        description="module:callable with the StreamingDataset signature (a seam for tests "
        "and other data sources)",
    )
    input_name: str = Field(default="features", description="served input tensor name")
    checks: bool | Path | dict[str, Any] | None = Field(
        default=None, description="data checks run before any worker starts: true (default "
        "rules), a rules YAML path, or inline rules (tailguard.data.checks.rules)")


class LossName(StrEnum):
    CROSS_ENTROPY = "cross_entropy"
    MSE = "mse"


class MetricName(StrEnum):
    ACCURACY = "accuracy"
    MSE = "mse"
    MAE = "mae"
    LOSS = "loss"

    @property
    def higher_is_better(self) -> bool:
        return self is MetricName.ACCURACY


class ObjectiveSpec(_Spec):
    loss: LossName = LossName.CROSS_ENTROPY
    metric: MetricName = MetricName.ACCURACY

    @model_validator(mode="after")
    def _compatible(self) -> ObjectiveSpec:
        if self.metric is MetricName.ACCURACY and self.loss is not LossName.CROSS_ENTROPY:
            raise ValueError("metric 'accuracy' needs loss 'cross_entropy' (a classifier)")
        return self


class OptimizerSpec(_Spec):
    name: Literal["adamw", "sgd"] = "adamw"
    lr: float = Field(default=1e-3, gt=0)
    weight_decay: float = Field(default=0.0, ge=0)
    momentum: float = Field(default=0.9, ge=0, description="sgd only")


class ScheduleSpec(_Spec):
    """Learning-rate factor as a pure function of the step (so resuming needs only the step):
    linear warm-up over ``warmup_steps``, then ``constant`` (``warmup`` is its alias that
    requires warm-up steps) or ``cosine`` decay to ``min_lr_ratio`` at the last step."""

    name: Literal["constant", "warmup", "cosine"] = "constant"
    warmup_steps: int = Field(default=0, ge=0)
    min_lr_ratio: float = Field(default=0.0, ge=0, le=1)

    @model_validator(mode="after")
    def _warmup_has_steps(self) -> ScheduleSpec:
        if self.name == "warmup" and self.warmup_steps == 0:
            raise ValueError("schedule 'warmup' needs warmup_steps > 0")
        return self


class TargetSpec(_Spec):
    """Time-to-accuracy target on the held-out dataset (MLPerf style)."""

    metric: MetricName = MetricName.ACCURACY
    value: float
    stop: bool = Field(default=True, description="stop training once the target is reached")


class TrainJob(_Spec):
    """A training job. Durations are seconds; ``batch_size`` is per data-parallel replica
    (per worker when every worker is a replica, the ``ddp``/``fsdp`` shorthands)."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$")
    model: ModelSpec
    data: DataSpec
    objective: ObjectiveSpec = ObjectiveSpec()
    optimizer: OptimizerSpec = OptimizerSpec()
    schedule: ScheduleSpec = ScheduleSpec()
    batch_size: int = Field(gt=0, description="samples per data-parallel replica per step")
    eval_batch_size: int | None = Field(default=None, gt=0)
    epochs: int | None = Field(default=None, gt=0)
    max_steps: int | None = Field(default=None, gt=0)
    seed: int = 0
    world_size: int = Field(default=1, ge=1)
    min_world_size: int | None = Field(default=None, ge=1)
    parallel: ParallelSpec = Field(
        default_factory=ParallelSpec,
        description="'ddp', 'fsdp' or {dp, tp, pp, fsdp, ...}: see tailguard.train.layout")
    device: Literal["auto", "cpu", "cuda"] = "auto"
    threads_per_worker: int | None = Field(default=None, ge=1)
    checkpoint_every_steps: int = Field(default=100, ge=1)
    keep_checkpoints: int = Field(default=2, ge=1)
    eval_every_steps: int | None = Field(default=None, ge=1)
    log_every_steps: int = Field(default=1, ge=1)
    max_restarts: int = Field(default=3, ge=0)
    heartbeat_timeout_s: float = Field(default=60.0, gt=0)
    startup_timeout_s: float = Field(default=300.0, gt=0)
    target: TargetSpec | None = None
    register_artifact: bool = Field(default=True, description="register the artifact when done")
    artifact_name: str | None = None
    tracing: TracingSpec = Field(
        default_factory=TracingSpec,
        description="OpenTelemetry spans of the run, its attempts, checkpoints and restarts")

    @model_validator(mode="after")
    def _cross_checks(self) -> TrainJob:
        if (self.epochs is None) == (self.max_steps is None):
            raise ValueError("set exactly one of 'epochs' or 'max_steps'")
        if self.min_world_size is not None and self.min_world_size > self.world_size:
            raise ValueError(
                f"min_world_size ({self.min_world_size}) must be <= world_size ({self.world_size})"
            )
        try:
            self.parallel.check(self.world_size)
        except ValueError as exc:
            raise ValueError(f"parallel: {exc}") from None
        spec = self.parallel
        if spec.pp > 1 and self.batch_size % spec.n_microbatches:
            raise ValueError(
                f"batch_size {self.batch_size} does not split into {spec.n_microbatches} "
                "equal pipeline microbatches: make it a multiple of parallel.microbatches "
                "(default: pp)")
        if self.min_world_size is not None and self.min_world_size < self.world_size and (
                self.parallel.dp is not None or self.parallel.model_parallel > 1):
            raise ValueError(
                "an elastic job (min_world_size < world_size) shrinks its data-parallel "
                "replicas one worker at a time: use parallel 'ddp' or 'fsdp' (no dp/tp/pp), "
                "or remove min_world_size")
        if self.target is not None and self.data.eval is None:
            raise ValueError("a 'target' is measured on held-out data: set 'data.eval'")
        if self.eval_every_steps is not None and self.data.eval is None:
            raise ValueError("'eval_every_steps' needs a held-out dataset: set 'data.eval'")
        return self

    @property
    def layout(self) -> Layout:
        """The layout at ``world_size`` (validated at construction)."""
        return self.parallel.layout(self.world_size)

    @property
    def global_batch_size(self) -> int:
        return self.batch_size * self.layout.dp

    @property
    def floor_world_size(self) -> int:
        return self.min_world_size if self.min_world_size is not None else self.world_size

    @property
    def task(self) -> str:
        return "classification" if self.objective.loss is LossName.CROSS_ENTROPY else "regression"

    def config_hash(self) -> str:
        """sha256 of the canonical JSON of the fields that change what is trained."""
        ignore = {"max_restarts", "heartbeat_timeout_s", "startup_timeout_s", "register_artifact",
                  "artifact_name", "threads_per_worker", "log_every_steps", "device",
                  "tracing"}
        data = self.model_dump(mode="json", exclude=ignore)
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()


def _resolve(path: Path, base: Path) -> Path:
    return path if path.is_absolute() else (base / path).resolve()


def parse_job(data: dict[str, Any], *, base_dir: Path | None = None) -> TrainJob:
    """Validate a job from a mapping; relative data paths are resolved against ``base_dir``."""
    try:
        job = TrainJob.model_validate(data)
    except ValidationError as exc:
        raise JobError(f"invalid training job: {exc}") from exc
    if base_dir is not None:
        data_spec = job.data.model_copy(update={
            "train": _resolve(job.data.train, base_dir),
            "eval": None if job.data.eval is None else _resolve(job.data.eval, base_dir),
        })
        job = job.model_copy(update={"data": data_spec})
    return job


def load_job(path: Path) -> TrainJob:
    """Read and validate a YAML (or JSON) job file; relative dataset paths are taken relative
    to the current directory, like every other path given on the command line."""
    path = Path(path)
    if not path.is_file():
        raise JobError(f"job file {path} not found")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise JobError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise JobError(f"{path}: expected a mapping of job fields at the top level")
    return parse_job(data, base_dir=Path.cwd())
