"""Worker main: ``python -m tailguard.train.worker --run-dir D --attempt K --rank R ...``.

Started by the engine (a fresh interpreter per rank — never a fork of a process that imported
torch). Joins the group through the engine's TCPStore, runs the :class:`Trainer`, exits 0 on
success; any exception is printed and exits 1, which the engine treats as a worker failure.
"""

from __future__ import annotations

import argparse
import sys
import traceback
from datetime import timedelta
from pathlib import Path

from tailguard.train.heartbeat import Heartbeat
from tailguard.train.job import TrainJob
from tailguard.train.runs import RunPaths


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="tailguard.train.worker")
    parser.add_argument("--run-dir", type=Path, required=True)
    parser.add_argument("--attempt", type=int, required=True)
    parser.add_argument("--rank", type=int, required=True)
    parser.add_argument("--world-size", type=int, required=True)
    parser.add_argument("--store-host", default="127.0.0.1")
    parser.add_argument("--store-port", type=int, required=True)
    parser.add_argument("--progress", action="store_true")
    return parser.parse_args(argv)


def run_worker(args: argparse.Namespace) -> None:
    paths = RunPaths(args.run_dir)
    heartbeat = Heartbeat(paths.heartbeat(args.attempt, args.rank))
    # start-up beats from a thread until the first step is done (the trainer ends it)
    heartbeat.start_keepalive()
    import torch
    import torch.distributed as dist

    from tailguard.train.trainer import Trainer, WorkerContext

    job = TrainJob.model_validate_json(paths.job.read_text())
    cuda = job.device == "cuda" or (job.device == "auto" and torch.cuda.is_available())
    if cuda and torch.cuda.device_count() < args.world_size:
        raise RuntimeError(f"{args.world_size} workers need {args.world_size} GPUs for NCCL "
                           f"(one each); found {torch.cuda.device_count()}. Lower world_size "
                           "or set device: cpu")
    store = dist.TCPStore(  # type: ignore[attr-defined]
        args.store_host, args.store_port, args.world_size, is_master=False,
        timeout=timedelta(seconds=job.startup_timeout_s))
    dist.init_process_group("nccl" if cuda else "gloo", store=store, rank=args.rank,
                            world_size=args.world_size)
    ctx = WorkerContext(paths, args.attempt, args.rank, args.world_size, args.progress)
    trainer = Trainer(job, ctx, heartbeat)
    trainer.setup()
    try:
        trainer.run()
    finally:
        dist.destroy_process_group()


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    try:
        run_worker(args)
    except Exception:
        print(f"tailguard worker rank {args.rank} (attempt {args.attempt}) failed:",
              file=sys.stderr)
        traceback.print_exc()
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
