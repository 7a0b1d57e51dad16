"""Where a training run keeps its state: ``$TAILGUARD_HOME/runs/<run id>/``.

::

    job.json           the validated job (workers read it; --resume compares its hash)
    metrics.jsonl      one JSON event per line (steps, evals, checkpoints, restarts, result)
    status.json        the engine's view: attempt, world size, worker PIDs
    clock.json         when training first touched data (time-to-target starts there)
    checkpoints/       see tailguard.train.checkpoint
    attempts/<k>/      rank-<r>.log and hb-<r> (heartbeat file, mtime = last beat) per attempt
    artifact/          the exported model, registered when the job succeeds
"""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tailguard.artifacts import tailguard_home
from tailguard.train.metrics import finite


@dataclass(frozen=True)
class RunPaths:
    root: Path

    @property
    def run_id(self) -> str:
        return self.root.name

    @property
    def job(self) -> Path:
        return self.root / "job.json"

    @property
    def metrics(self) -> Path:
        return self.root / "metrics.jsonl"

    @property
    def status(self) -> Path:
        return self.root / "status.json"

    @property
    def clock(self) -> Path:
        return self.root / "clock.json"

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    @property
    def artifact(self) -> Path:
        return self.root / "artifact"

    def attempt_dir(self, attempt: int) -> Path:
        return self.root / "attempts" / str(attempt)

    def heartbeat(self, attempt: int, rank: int) -> Path:
        return self.attempt_dir(attempt) / f"hb-{rank}"

    def log(self, attempt: int, rank: int) -> Path:
        return self.attempt_dir(attempt) / f"rank-{rank}.log"


def runs_root(home: Path | None = None) -> Path:
    return (home if home is not None else tailguard_home()) / "runs"


def new_run_id(job_name: str) -> str:
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    return f"{job_name}-{stamp}-{secrets.token_hex(2)}"


def run_paths(run_id: str, home: Path | None = None) -> RunPaths:
    if not run_id or "/" in run_id or run_id.startswith("."):
        raise ValueError(f"invalid run id {run_id!r}")
    return RunPaths(runs_root(home) / run_id)


def latest_run(job_name: str, home: Path | None = None) -> RunPaths | None:
    """The most recently started run of ``job_name`` (for ``--resume``)."""
    root = runs_root(home)
    if not root.is_dir():
        return None
    candidates = []
    for entry in root.iterdir():
        paths = RunPaths(entry)
        if not paths.job.is_file():
            continue
        try:
            name = json.loads(paths.job.read_text()).get("name")
        except ValueError:
            continue
        if name == job_name:
            candidates.append((paths.job.stat().st_mtime_ns, entry.name, paths))
    return max(candidates)[2] if candidates else None


def write_json(path: Path, data: Any) -> None:
    """Write JSON atomically (readers never see half a file)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(finite(data), indent=1, sort_keys=True, allow_nan=False))
    tmp.replace(path)


def read_json(path: Path) -> Any:
    return json.loads(path.read_text())
