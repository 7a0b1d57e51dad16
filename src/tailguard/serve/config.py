"""Serve configuration: which deployments to run and how (typed, validated, YAML-loadable).

Example ``serve.yaml``::

    host: 127.0.0.1
    port: 8000
    max_request_bytes: 16777216
    deployments:
      - name: echo
        model: tailguard.models.echo:Echo
        replicas: 1
        max_batch_size: 64
        max_wait_ms: 0
      - name: digits
        artifact: digits:1          # a registered artifact (NAME or NAME:VERSION)
        replicas: 2
        timeout_ms: 2000
        p99_ms: 50
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from tailguard.autoscale.spec import AutoscalingSpec
from tailguard.names import NAME_RE
from tailguard.observe.trace_spec import TracingSpec
from tailguard.serve.gate.identity import RESERVED_IDS
from tailguard.serve.gate.policy import AdmissionSettings
from tailguard.serve.gate.tenants import TenantSpec, hash_api_key
from tailguard.serve.skew_spec import SkewSpec


class DeploymentSpec(BaseModel):
    """One served model and its batching, replica and latency settings."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    model: str | None = Field(None, description="module:Class of a tailguard Model")
    artifact: str | None = Field(None, description="registered artifact NAME[:VERSION]")
    options: dict[str, Any] = Field(default_factory=dict, description="passed to the Model")
    version: str = Field("1", description="version reported by the V2 protocol")
    replicas: int = Field(1, ge=0, le=1000, description="replica processes (initial count)")
    max_batch_size: int = Field(32, ge=1, le=65536, description="rows per batch, at most")
    max_wait_ms: float = Field(2.0, ge=0, le=10_000, description="wait for more rows, at most")
    timeout_ms: float = Field(30_000, gt=0, description="per-request deadline")
    p99_ms: float | None = Field(None, gt=0, description="latency objective (SLO)")
    availability: float = Field(
        0.999, gt=0, lt=1,
        description="availability objective: the share of requests answered without a 5xx "
                    "(429 sheds and throttles are left out); `tailguard alerts render` turns "
                    "it and p99_ms into burn-rate alerts")
    batch_slo_share: float = Field(
        0.7, gt=0, le=1,
        description="with p99_ms: the share of it that waiting for the next free replica and "
                    "running one's own batch may take, s(k) * (1 + 1/replicas) <= fraction * "
                    "p99 (0.35 of it per batch with one replica, 0.47 with two); see "
                    "tailguard.serve.deployment.batch_policy")
    max_queue_rows: int = Field(100_000, ge=1, description="queued rows before 503")
    startup_timeout_s: float = Field(300, gt=0, description="time allowed for setup()")
    env: dict[str, str] = Field(default_factory=dict, description="replica environment")
    replica_nice: int = Field(
        19, ge=0, le=19,
        description="CPU niceness of replica processes (every thread). The gateway (I/O, "
                    "admission, 429s) shares the replicas' scheduling group — their session — "
                    "and keeps its latency when they saturate the cores; replicas still get "
                    "every cycle the gateway leaves")
    replica_cpu_policy: Literal["normal", "batch", "idle"] = Field(
        "normal",
        description="Linux scheduling policy of replica processes: 'normal' (SCHED_OTHER, "
                    "with replica_nice), 'batch' (SCHED_BATCH) or 'idle' (SCHED_IDLE: the "
                    "gateway preempts them at once, but the load balancer then packs replicas "
                    "onto fewer cores: measured 20% less MiniLM throughput)")
    skew: SkewSpec | None = Field(
        None, description="training/serving skew metric (tailguard.serve.skew)")
    autoscaling: AutoscalingSpec | None = Field(None, description="omit for a fixed count")
    backend: Literal["local", "ray"] | None = Field(
        None, description="where replicas run: 'local' processes or 'ray' actors on a Ray "
                          "cluster's nodes (default: the server's `backend`)")
    ray_address: str | None = Field(
        None, description="with backend ray: the cluster, 'auto' or 'ray://HOST:PORT' "
                          "(default: the server's, then $RAY_ADDRESS)")
    num_cpus: float | None = Field(
        None, ge=0, description="with backend ray: CPUs per replica (default: the model's "
                                "`threads` option, else 1)")
    num_gpus: float = Field(0, ge=0, description="with backend ray: GPUs per replica")
    resources: dict[str, float] = Field(
        default_factory=dict, description="with backend ray: custom resources per replica")
    placement: Literal["spread", "pack"] = Field(
        "spread", description="with backend ray: 'spread' replicas across nodes (a node's "
                              "death takes the fewest), or 'pack' (Ray's default placement)")

    @field_validator("name")
    @classmethod
    def _check_name(cls, value: str) -> str:
        if not NAME_RE.match(value):
            raise ValueError(f"deployment name {value!r}: use letters, digits, '_', '.', '-'")
        return value

    @model_validator(mode="before")
    @classmethod
    def _renamed(cls, data: Any) -> Any:
        if isinstance(data, dict) and "batch_slo_fraction" in data:
            raise ValueError(
                "batch_slo_fraction (one batch's share of p99_ms) is now batch_slo_share: the "
                "share of p99_ms that waiting for a replica plus one's own batch may take, "
                "s(k) * (1 + 1/replicas) <= share * p99_ms; the old 0.35 is 0.7 with one "
                "replica")
        return data

    @model_validator(mode="after")
    def _one_source(self) -> DeploymentSpec:
        if (self.model is None) == (self.artifact is None):
            raise ValueError(
                f"deployment {self.name!r}: set exactly one of `model: module:Class` "
                "or `artifact: NAME[:VERSION]`"
            )
        ray_only = [f for f in ("ray_address", "num_cpus", "resources")
                    if getattr(self, f)] + (["num_gpus"] if self.num_gpus else [])
        if self.backend == "local" and ray_only:
            raise ValueError(f"deployment {self.name!r}: {', '.join(ray_only)} only apply to "
                             "replicas on Ray: set `backend: ray` or remove them")
        if self.replicas == 0 and self.autoscaling is None:
            raise ValueError(f"deployment {self.name!r}: replicas: 0 needs `autoscaling` "
                             "(with min_replicas: 0) to ever start a replica")
        return self


class ServeConfig(BaseModel):
    """The whole server: bind address, limits, tenants and the deployments."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    max_request_bytes: int = Field(16 * 1024 * 1024, ge=1024)
    graceful_shutdown_s: float = Field(30, gt=0)
    tenants: list[TenantSpec] = Field(default_factory=list)
    admin_api_keys: tuple[str, ...] = Field(
        default=(), repr=False, description="keys that see every tenant's usage and metrics")
    admission: AdmissionSettings = Field(default_factory=AdmissionSettings)
    deployments: list[DeploymentSpec]
    backend: Literal["local", "ray"] = Field(
        "local", description="where replicas run unless a deployment says: 'local' child "
                             "processes, or 'ray' actors on a Ray cluster")
    ray_address: str | None = Field(
        None, description="the Ray cluster for backend ray: 'auto', 'HOST:PORT' or "
                          "'ray://HOST:PORT' (default $RAY_ADDRESS, else a Ray started here)")
    tracing: TracingSpec = Field(
        default_factory=TracingSpec,
        description="OpenTelemetry traces of requests, batches and replicas' predict (off)")

    @field_validator("admin_api_keys", mode="before")
    @classmethod
    def _hash_admin_keys(cls, value: object) -> object:
        if isinstance(value, list | tuple):
            return tuple(k if str(k).startswith("sha256:") else hash_api_key(str(k))
                         for k in value)
        return value

    @model_validator(mode="after")
    def _unique(self) -> ServeConfig:
        names = [d.name for d in self.deployments]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"deployment names must be unique; repeated: {dupes}")
        if not self.deployments:
            raise ValueError("a serve config needs at least one deployment")
        addresses = sorted({a for a in [self.ray_address, *(
            d.ray_address for d in self.deployments if d.ray_address)] if a})
        if len(addresses) > 1:
            raise ValueError(f"one gateway talks to one Ray cluster; ray_address names "
                             f"{len(addresses)}: {addresses}")
        for tenant in self.tenants:
            if tenant.id in RESERVED_IDS:
                raise ValueError(f"tenant id {tenant.id!r} is reserved for the implicit "
                                 f"callers ({', '.join(sorted(RESERVED_IDS))}): pick another")
            unknown = sorted(set(tenant.deployments) - set(names) - {"*"})
            if unknown:
                raise ValueError(f"tenant {tenant.id!r} names unknown deployment(s) {unknown}")
        return self

    def backend_of(self, spec: DeploymentSpec) -> str:
        """'local' or 'ray': the deployment's own choice, else the server's."""
        return spec.backend or self.backend

    def ray_address_of(self) -> str | None:
        """The one Ray cluster the Ray deployments use (checked to be one), else
        $RAY_ADDRESS, else None (Ray starts or finds a cluster on this machine)."""
        addresses = {d.ray_address for d in self.deployments
                     if self.backend_of(d) == "ray" and d.ray_address}
        return next(iter(addresses), None) or self.ray_address or os.environ.get("RAY_ADDRESS")

    def deployment(self, name: str) -> DeploymentSpec | None:
        return next((d for d in self.deployments if d.name == name), None)


def default_config() -> ServeConfig:
    """The built-in deployments: ``echo`` (overhead), ``minilm`` (embeddings) and, when the
    ``tts`` extra is installed, ``tts`` (speech)."""
    from tailguard.models.tts import tts_available

    return ServeConfig(
        deployments=[
            DeploymentSpec(
                name="echo", model="tailguard.models.echo:Echo", max_batch_size=256,
                max_wait_ms=0, timeout_ms=30_000,
            ),
            DeploymentSpec(
                # One single-threaded replica per core (up to 4) beats one multi-threaded
                # replica: no intra-op synchronisation stalled by the gateway's own work.
                # p99_ms 100: on a 2-vCPU machine one 5-60-token sentence alone takes 24 ms
                # at the median and ~50 ms at P99 (replica service time; P99 55 ms end to
                # end at 10 req/s, benchmarks/serve_minilm.py), so a 50 ms objective was
                # missed by every policy at any load.
                name="minilm", model="tailguard.models.minilm:MiniLM",
                replicas=max(1, min(4, os.cpu_count() or 1)), max_batch_size=32,
                max_wait_ms=2, timeout_ms=30_000, p99_ms=100, options={"threads": 1},
            ),
            *([_TTS_DEFAULT] if tts_available() else []),
        ]
    )


# One row per batch (Piper gains nothing from batching: a batch of four takes four times as
# long and the first text waits for the last); one single-threaded replica per core. p99_ms
# 2000: a 10-word sentence takes 0.2-0.35 s on one core and a 4096-character text ~30 s, so
# the objective is meant for sentence-sized requests, the usual voice-assistant turn.
_TTS_DEFAULT = DeploymentSpec(
    name="tts", model="tailguard.models.tts:PiperTTS", replicas=1, max_batch_size=1,
    max_wait_ms=0, timeout_ms=60_000, p99_ms=2000, options={"threads": 1})


def load_config(path: Path | None) -> ServeConfig:
    """Read a YAML serve config (``None`` -> the built-in deployments)."""
    if path is None:
        return default_config()
    try:
        data = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ValueError(f"cannot read serve config {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise ValueError(f"serve config {path}: expected a mapping at the top level")
    try:
        return ServeConfig.model_validate(data)
    except ValidationError as exc:  # name the file: a user may have several configs
        raise ValueError(f"serve config {path}: {exc}") from None
