"""Elastic data-parallel training: job spec, supervised local engine, checkpoints, export."""

from typing import TYPE_CHECKING

from tailguard.lazy import lazy_getattr
from tailguard.train.job import JobError, TrainJob, load_job, parse_job
from tailguard.train.metrics import RunSummary, read_events, summarize
from tailguard.train.runs import RunPaths, latest_run, run_paths

if TYPE_CHECKING:
    from tailguard.train.engine import Engine, LocalEngine, TrainResult
    from tailguard.train.parallel import apply_ddp, apply_fsdp

# These import torch (over a second): loaded on first use, so that ``tailguard runs list``
# and the CLI's start-up do not pay for it.
__getattr__ = lazy_getattr(__name__, {
    "Engine": ".engine",
    "LocalEngine": ".engine",
    "TrainResult": ".engine",
    "apply_ddp": ".parallel",
    "apply_fsdp": ".parallel",
})

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
