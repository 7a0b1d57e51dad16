"""Training metrics: a JSON-lines event log per run, its summary, and a progress bar.

Events (each line has ``event`` and ``t``, Unix seconds)::

    start             attempt, world_size, resumed_from_step, total_steps
    step              step, epoch, loss, lr, samples_per_s, step_s, data_s, attempt
    eval              step, metrics {accuracy|mse|mae, loss, rows}, eval_s
    target_reached    step, metric, value, target, tta_s
    checkpoint        step, path, save_s
    worker_failed / restart / failed   written by the engine
    finished          step, metrics, artifact
    registered        ref

Rank 0 and the engine append to the same file; each event is one ``write`` of one line in
append mode, which local filesystems keep whole.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO


def finite(data: Any) -> Any:
    """``data`` with every NaN or infinity made ``null``: JSON has no NaN, and a file holding
    one breaks strict readers (browsers, jq, most other languages)."""
    if isinstance(data, float):
        return data if math.isfinite(data) else None
    if isinstance(data, dict):
        return {k: finite(v) for k, v in data.items()}
    if isinstance(data, list | tuple):
        return [finite(v) for v in data]
    return data


class MetricsWriter:
    """Appends events to a run's ``metrics.jsonl`` through one descriptor opened with
    ``O_APPEND`` (one ``os.write`` per event: opening the file per event cost more than the
    event, and a trainer writes one per evaluation). The descriptor closes with the writer."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self._closer = weakref.finalize(self, os.close, self._fd)

    def write(self, event: str, **fields: Any) -> dict[str, Any]:
        record = {"event": event, "t": time.time(), **fields}
        line = (json.dumps(finite(record), sort_keys=True, allow_nan=False) + "\n").encode()
        written = os.write(self._fd, line)
        while written < len(line):  # a short write (a signal, a full disk): finish the line
            written += os.write(self._fd, line[written:])
        return record

    def close(self) -> None:
        self._closer()


def read_events(path: Path) -> list[dict[str, Any]]:
    """All complete events; a torn last line (a crash mid-write) is skipped."""
    if not Path(path).is_file():
        return []
    events = []
    for line in Path(path).read_text().splitlines():
        try:
            events.append(json.loads(line))
        except ValueError:
            continue
    return events


@dataclass(frozen=True)
class RunSummary:
    run_id: str
    status: str  # running | succeeded | failed
    attempts: int
    restarts: int
    world_sizes: tuple[int, ...]
    last_step: int
    last_loss: float | None
    mean_samples_per_s: float | None
    eval_metrics: dict[str, float] = field(default_factory=dict)
    tta_s: float | None = None
    artifact_ref: str | None = None
    failure: str | None = None


def summarize(run_id: str, events: list[dict[str, Any]]) -> RunSummary:
    steps = [e for e in events if e["event"] == "step"]
    starts = [e for e in events if e["event"] == "start"]
    evals = [e for e in events if e["event"] == "eval"]
    target = next((e for e in events if e["event"] == "target_reached"), None)
    registered = [e for e in events if e["event"] == "registered"]
    failed = [e for e in events if e["event"] == "failed"]
    status = "running"
    if registered or any(e["event"] == "finished" for e in events):
        status = "succeeded"
    if failed and (not starts or failed[-1]["t"] >= starts[-1]["t"]):
        status = "failed"
    rates = [float(e["samples_per_s"]) for e in steps if e.get("samples_per_s")]
    return RunSummary(
        run_id=run_id,
        status=status,
        attempts=len(starts),
        restarts=sum(1 for e in events if e["event"] == "restart"),
        world_sizes=tuple(int(e["world_size"]) for e in starts),
        last_step=max((int(e["step"]) for e in steps), default=0),
        last_loss=float(steps[-1]["loss"]) if steps else None,
        mean_samples_per_s=sum(rates) / len(rates) if rates else None,
        eval_metrics=dict(evals[-1]["metrics"]) if evals else {},
        tta_s=float(target["tta_s"]) if target else None,
        artifact_ref=str(registered[-1]["ref"]) if registered else None,
        failure=str(failed[-1]["reason"]) if status == "failed" else None,
    )


def last_per_step(events: list[dict[str, Any]], event: str = "step") -> dict[int, dict[str, Any]]:
    """The last record of each step: after a restart, replayed steps replace lost ones."""
    return {int(e["step"]): e for e in events if e["event"] == event}


class ProgressBar:
    """A rich progress bar on stderr, only when stderr is a terminal (rank 0 only)."""

    def __init__(self, total_steps: int, *, start_step: int = 0, stream: TextIO | None = None,
                 enabled: bool | None = None) -> None:
        stream = stream if stream is not None else sys.stderr
        self.enabled = stream.isatty() if enabled is None else enabled
        self._progress: Any = None
        self._task: Any = None
        if self.enabled:
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
            )

            self._progress = Progress(
                TextColumn("[bold]train"), BarColumn(), MofNCompleteColumn(),
                TextColumn("{task.fields[info]}"), TimeElapsedColumn(),
                console=Console(file=stream), transient=False,
            )
            self._progress.start()
            self._task = self._progress.add_task("train", total=total_steps,
                                                 completed=start_step, info="")

    def update(self, step: int, info: str) -> None:
        if self._progress is not None:
            self._progress.update(self._task, completed=step, info=info)

    def close(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
