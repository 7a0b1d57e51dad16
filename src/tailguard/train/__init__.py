"""Elastic data-parallel and model-parallel training: job spec, supervised local engine,
checkpoints, export."""

from typing import TYPE_CHECKING

from tailguard.lazy import lazy_getattr
from tailguard.train.job import JobError, TrainJob, load_job, parse_job
from tailguard.train.layout import Layout, ParallelSpec
from tailguard.train.metrics import RunSummary, read_events, summarize
from tailguard.train.runs import RunPaths, latest_run, run_paths

if TYPE_CHECKING:
    from tailguard.train.engine import Engine, LocalEngine, TrainResult
    from tailguard.train.parallel import apply_ddp, apply_fsdp, apply_parallel, apply_tp

# These import torch (over a second): loaded on first use, so that ``tailguard runs list``
# and the CLI's start-up do not pay for it.
__getattr__ = lazy_getattr(__name__, {
    "Engine": ".engine",
    "LocalEngine": ".engine",
    "TrainResult": ".engine",
    "apply_ddp": ".parallel",
    "apply_fsdp": ".parallel",
    "apply_parallel": ".parallel",
    "apply_tp": ".parallel",
})

__all__ = [
    "Engine",
    "JobError",
    "Layout",
    "LocalEngine",
    "ParallelSpec",
    "RunPaths",
    "RunSummary",
    "TrainJob",
    "TrainResult",
    "apply_ddp",
    "apply_fsdp",
    "apply_parallel",
    "apply_tp",
    "latest_run",
    "load_job",
    "parse_job",
    "read_events",
    "run_paths",
    "summarize",
]
