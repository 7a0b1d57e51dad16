"""Elastic data-parallel training: job spec, supervised local engine, checkpoints, export."""

from tailguard.train.engine import Engine, LocalEngine, TrainResult
from tailguard.train.job import JobError, TrainJob, load_job, parse_job
from tailguard.train.metrics import RunSummary, read_events, summarize
from tailguard.train.parallel import apply_ddp, apply_fsdp
from tailguard.train.runs import RunPaths, latest_run, run_paths

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
