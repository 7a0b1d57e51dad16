"""Profile a deployment's model in-process: latency per batch size, throughput, memory.

No server: the model is built and ``setup()`` as a replica would, inputs are generated from
its declared :class:`TensorSpec` s (variable dimensions get a small size, BYTES get short
sentences), and ``predict`` is timed over repetitions at each batch size::

    spec = load_config(Path("serve.yaml")).deployment("minilm")
    profile = profile_deployment(spec, batch_sizes=(1, 2, 4, 8, 16), seconds=2.0)
    profile.best_batch_size, profile.max_rows_per_s, profile.memory_mb
    store_profile(profile, spec)      # $TAILGUARD_HOME/profiles/minilm.json (+ artifact manifest)

The stored JSON carries ``service_s`` (batch size -> mean seconds per batch), which is what
``ServiceProfile.from_table`` reads: the autoscaler, the simulator and ``tailguard plan``
all take their service times from it (see :func:`service_profile_from_dict`).
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from tailguard.artifacts import Registry, tailguard_home
from tailguard.autoscale.snapshot import ServiceProfile
from tailguard.models.base import Model
from tailguard.observe.percentiles import percentiles
from tailguard.serve.config import DeploymentSpec
from tailguard.tensors import Tensors, TensorSpec

__all__ = [
    "BatchTiming",
    "ModelProfile",
    "default_batch_sizes",
    "find_profile",
    "generate_inputs",
    "load_profile",
    "profile_deployment",
    "profile_model",
    "profile_path",
    "rss_bytes",
    "service_profile_from_dict",
    "store_profile",
]

_WORDS = ("the", "model", "serves", "a", "short", "sentence", "with", "low", "latency",
          "under", "load", "tail", "guard", "keeps", "its", "objective", "every", "day")
_MIN_REPS = 5
_MAX_REPS = 10_000


@dataclass(frozen=True)
class BatchTiming:
    """``predict`` timings at one batch size, over ``repetitions`` calls."""

    batch_size: int
    repetitions: int
    p50_ms: float
    p99_ms: float
    mean_ms: float

    @property
    def rows_per_s(self) -> float:
        """Rows per second of one replica kept busy with batches of this size."""
        return self.batch_size / (self.mean_ms / 1e3)


@dataclass(frozen=True)
class ModelProfile:
    """What ``tailguard profile`` measured for one deployment."""

    deployment: str
    model: str
    timings: tuple[BatchTiming, ...]
    memory_mb: float
    process_rss_mb: float
    setup_s: float
    measured_at: str
    # Process CPU seconds per wall second while timing: ~1 for a single-threaded model with
    # a core of its own; well below 1 means other load slowed the measurement down.
    cpu_share: float | None = None

    @property
    def best(self) -> BatchTiming:
        return max(self.timings, key=lambda t: t.rows_per_s)

    @property
    def best_batch_size(self) -> int:
        return self.best.batch_size

    @property
    def max_rows_per_s(self) -> float:
        return self.best.rows_per_s

    def service_table(self) -> dict[int, float]:
        """Batch size -> mean seconds per batch (the autoscaler's service-time table)."""
        return {t.batch_size: t.mean_ms / 1e3 for t in self.timings}

    def service_profile(self) -> ServiceProfile:
        return ServiceProfile.from_table(self.service_table())

    def to_dict(self) -> dict[str, Any]:
        return {
            "deployment": self.deployment,
            "model": self.model,
            "service_s": {str(b): s for b, s in self.service_table().items()},
            "batches": [{**asdict(t), "rows_per_s": t.rows_per_s} for t in self.timings],
            "best_batch_size": self.best_batch_size,
            "max_rows_per_s": self.max_rows_per_s,
            "memory_mb": self.memory_mb,
            "process_rss_mb": self.process_rss_mb,
            "setup_s": self.setup_s,
            "measured_at": self.measured_at,
            "cpu_share": self.cpu_share,
            "cpu_count": os.cpu_count(),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ModelProfile:
        timings = tuple(
            BatchTiming(int(b["batch_size"]), int(b["repetitions"]), float(b["p50_ms"]),
                        float(b["p99_ms"]), float(b["mean_ms"]))
            for b in data["batches"]
        )
        return cls(str(data["deployment"]), str(data["model"]), timings,
                   float(data["memory_mb"]), float(data["process_rss_mb"]),
                   float(data["setup_s"]), str(data["measured_at"]), data.get("cpu_share"))


def rss_bytes() -> int:
    """Resident set size of this process now (``/proc``; peak RSS where there is none)."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):  # pragma: no cover - non-Linux
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return int(peak if sys.platform == "darwin" else peak * 1024)


def _sentence(rng: np.random.Generator) -> bytes:
    n = int(rng.integers(4, 12))
    return " ".join(str(w) for w in rng.choice(_WORDS, size=n)).encode()


def generate_inputs(specs: Sequence[TensorSpec], batch_size: int, rng: np.random.Generator,
                    variable_dim: int = 8) -> Tensors:
    """A batch of ``batch_size`` rows for the declared inputs.

    Variable (``-1``) dimensions after the first get ``variable_dim``; numbers are small and
    non-negative (some stand-in models refuse negatives); BYTES are short sentences.
    """
    batch: Tensors = {}
    for spec in specs:
        shape = (batch_size, *(variable_dim if d == -1 else d for d in spec.shape[1:]))
        kind = spec.numpy_dtype.kind
        if spec.datatype == "BYTES":
            flat = [_sentence(rng) for _ in range(int(np.prod(shape)))]
            arr = np.empty(len(flat), dtype=object)
            arr[:] = flat
            batch[spec.name] = arr.reshape(shape)
        elif kind == "b":
            batch[spec.name] = rng.random(shape) < 0.5
        elif kind in "iu":
            batch[spec.name] = rng.integers(0, 100, size=shape).astype(spec.numpy_dtype)
        else:
            batch[spec.name] = rng.random(shape).astype(spec.numpy_dtype)
    return batch


def default_batch_sizes(max_batch_size: int) -> tuple[int, ...]:
    """Powers of two up to ``max_batch_size``, and ``max_batch_size`` itself."""
    sizes = [1]
    while sizes[-1] * 2 <= max_batch_size:
        sizes.append(sizes[-1] * 2)
    if sizes[-1] != max_batch_size:
        sizes.append(max_batch_size)
    return tuple(sizes)


def _time_batch(model: Model, batch: Tensors, seconds: float) -> tuple[BatchTiming, float, float]:
    """Time ``predict`` on ``batch``; returns the timing and its (CPU, wall) seconds.

    Calls are paced at a 50% duty cycle (each followed by an idle gap as long as it took), as a
    replica sees them at moderate load: back to back, caches and clocks stay hot and a model
    measures 20-25% faster than it serves (seen with minilm at 60 req/s), so a plan built on
    it under-predicts latency."""
    model.predict(batch)  # warm-up: first-call allocations are not the steady state
    samples: list[float] = []
    cpu = 0.0
    until = time.perf_counter() + seconds
    while len(samples) < _MIN_REPS or (time.perf_counter() < until and len(samples) < _MAX_REPS):
        c0, t0 = time.process_time(), time.perf_counter()
        model.predict(batch)
        took = time.perf_counter() - t0
        cpu += time.process_time() - c0
        samples.append(took)
        time.sleep(took)
    arr = np.asarray(samples) * 1e3
    rows = len(next(iter(batch.values())))
    p50, p99 = percentiles(arr, (50, 99))
    assert p50 is not None and p99 is not None  # at least _MIN_REPS samples
    timing = BatchTiming(rows, arr.size, round(p50, 4), round(p99, 4),
                         round(float(arr.mean()), 4))
    return timing, cpu, float(sum(samples))


def profile_model(model: Model, name: str, batch_sizes: Sequence[int], seconds: float,
                  seed: int = 0, model_ref: str = "") -> ModelProfile:
    """Set ``model`` up (timing it and its memory), then time ``predict`` per batch size.

    ``seconds`` is the time spent at each batch size (at least five calls each).
    """
    if not batch_sizes or any(b < 1 for b in batch_sizes):
        raise ValueError(f"batch sizes must be >= 1, got {list(batch_sizes)}")
    if seconds <= 0:
        raise ValueError(f"seconds must be > 0, got {seconds}")
    rss0 = rss_bytes()
    t0 = time.perf_counter()
    model.setup()
    setup_s = time.perf_counter() - t0
    rss1 = rss_bytes()
    rng = np.random.default_rng(seed)
    measured = [_time_batch(model, generate_inputs(model.input_specs, b, rng), seconds)
                for b in sorted(set(batch_sizes))]
    timings = tuple(m[0] for m in measured)
    # CPU per wall second while predict ran (the idle gaps between calls left out).
    cpu_share = sum(m[1] for m in measured) / max(sum(m[2] for m in measured), 1e-9)
    return ModelProfile(
        deployment=name,
        model=model_ref or f"{type(model).__module__}:{type(model).__qualname__}",
        timings=timings,
        memory_mb=round(max(rss1 - rss0, 0) / 2**20, 2),
        process_rss_mb=round(rss1 / 2**20, 2),
        setup_s=round(setup_s, 4),
        measured_at=datetime.now(UTC).isoformat(timespec="seconds"),
        cpu_share=round(cpu_share, 3),
    )


def profile_deployment(spec: DeploymentSpec, batch_sizes: Sequence[int] | None = None,
                       seconds: float = 1.0, seed: int = 0) -> ModelProfile:
    """Build the deployment's model as a replica would and profile it in this process."""
    from tailguard.serve.loader import instantiate

    os.environ.update(spec.env)  # a replica runs with the deployment's environment
    model = instantiate(spec)
    sizes = batch_sizes or default_batch_sizes(spec.max_batch_size)
    ref = spec.artifact or spec.model or ""
    return profile_model(model, spec.name, sizes, seconds, seed, model_ref=ref)


def profile_path(deployment: str, home: Path | None = None) -> Path:
    """``$TAILGUARD_HOME/profiles/<deployment>.json``."""
    return (home or tailguard_home()) / "profiles" / f"{deployment}.json"


def store_profile(profile: ModelProfile, spec: DeploymentSpec | None = None,
                  home: Path | None = None) -> list[str]:
    """Write the profile file, and into the artifact manifest for an artifact deployment.

    Returns where it was stored (paths and ``artifact NAME:VERSION``).
    """
    data = profile.to_dict()
    path = profile_path(profile.deployment, home)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    tmp.replace(path)
    stored = [str(path)]
    if spec is not None and spec.artifact is not None:
        manifest = Registry(home).set_profile(spec.artifact, data)
        stored.append(f"artifact {manifest.ref}")
    return stored


def service_profile_from_dict(data: Mapping[str, Any],
                              max_batch_size: int | None = None) -> ServiceProfile:
    """The service-time profile of a stored profile (``service_s``: batch -> seconds)."""
    table = data.get("service_s")
    if not isinstance(table, Mapping) or not table:
        raise ValueError("a stored profile needs `service_s`: {batch_size: seconds, ...}")
    return ServiceProfile.from_table({int(b): float(s) for b, s in table.items()},
                                     max_batch_size)


def load_profile(path: Path) -> dict[str, Any]:
    """Read a stored profile JSON (``tailguard profile`` output). Raises ValueError."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"cannot read profile {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise ValueError(f"profile {path}: expected a JSON object")
    service_profile_from_dict(data)  # validates
    return data


def find_profile(deployment: str, spec: DeploymentSpec | None = None,
                 home: Path | None = None) -> dict[str, Any]:
    """The stored profile of a deployment: its artifact manifest's, else the profile file."""
    if spec is not None and spec.artifact is not None:
        manifest, _ = Registry(home).get(spec.artifact)
        if manifest.profile.get("service_s"):
            return dict(manifest.profile)
    path = profile_path(deployment, home)
    if not path.exists():
        raise ValueError(f"no stored profile for {deployment!r} ({path}): run "
                         f"`tailguard profile {deployment}` first, or pass --profile FILE")
    return load_profile(path)
