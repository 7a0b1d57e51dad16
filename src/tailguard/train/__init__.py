"""Elastic data-parallel training: job spec, supervised local engine, checkpoints, export."""

import importlib
from typing import TYPE_CHECKING

from tailguard.train.job import JobError, TrainJob, load_job, parse_job
from tailguard.train.metrics import RunSummary, read_events, summarize
from tailguard.train.runs import RunPaths, latest_run, run_paths

if TYPE_CHECKING:
    from tailguard.train.engine import Engine, LocalEngine, TrainResult
    from tailguard.train.parallel import apply_ddp, apply_fsdp

# These import torch (over a second): loaded on first use, so that ``tailguard runs list``
# and the CLI's start-up do not pay for it.
_LAZY = {
    "Engine": "tailguard.train.engine",
    "LocalEngine": "tailguard.train.engine",
    "TrainResult": "tailguard.train.engine",
    "apply_ddp": "tailguard.train.parallel",
    "apply_fsdp": "tailguard.train.parallel",
}


def __getattr__(name: str) -> object:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


__all__ = [
    "Engine",
    "JobError",
    "LocalEngine",
    "RunPaths",
    "RunSummary",
    "TrainJob",
    "TrainResult",
    "apply_ddp",
    "apply_fsdp",
    "latest_run",
    "load_job",
    "parse_job",
    "read_events",
    "run_paths",
    "summarize",
]
