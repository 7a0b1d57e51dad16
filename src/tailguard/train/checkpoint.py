"""Atomic, resumable checkpoints with ``torch.distributed.checkpoint`` (DCP).

Layout under a run's ``checkpoints/``::

    step-00000040.tmp/   being written (all ranks write their shards, rank 0 the metadata)
    step-00000040/       renamed by rank 0 once DCP and ``trainer.json`` are written
    step-00000040/COMPLETE   written last; only directories holding it are ever loaded
    step-00000040/rng-rank1.json   each rank's generator states (see ``tailguard.train.rng``)

A crash at any point leaves the previous complete checkpoint loadable. Model and optimiser go
through ``get_state_dict``/``set_state_dict`` so DDP and FSDP2 (sharded DTensors, resharded on
load at another world size) share one code path. The schedule is a function of the step and
the data order a function of (seed, epoch, consumed), so :class:`TrainerState` — counters
only — and each rank's RNG states complete the picture.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
from torch import nn
from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict

from tailguard.train.rng import RngState

STATE_VERSION = 1
COMPLETE = "COMPLETE"
TRAINER_FILE = "trainer.json"
_DIR_RE = re.compile(r"^step-(\d+)$")


class CheckpointError(Exception):
    """A checkpoint cannot be used (wrong version, unreadable)."""


@dataclass(frozen=True)
class TrainerState:
    """Counters that place training exactly: optimiser steps done, and the data cursor."""

    step: int = 0
    epoch: int = 0
    consumed: int = 0  # samples of ``epoch`` already trained on (global positions)
    samples_seen: int = 0
    world_size: int = 1
    global_batch: int = 0
    layout: str = ""  # Layout.name() of the ranks that wrote it (RNG streams are per place)
    target_reached_step: int | None = None
    config_hash: str = ""
    # the dataset's identity (seed, shuffle, size, fingerprint): a position means nothing in
    # another dataset, so the data pipeline refuses to resume against a different one
    data: dict[str, Any] = field(default_factory=dict)
    version: int = STATE_VERSION

    def state_dict(self) -> dict[str, object]:
        return asdict(self)

    @classmethod
    def from_state_dict(cls, data: dict[str, object]) -> TrainerState:
        version = data.get("version")
        if version != STATE_VERSION:
            raise CheckpointError(f"trainer state version {version!r} is not {STATE_VERSION}; "
                                  "this checkpoint was written by another tailguard version")
        return cls(**data)  # type: ignore[arg-type]


@dataclass(frozen=True)
class CheckpointInfo:
    step: int
    path: Path


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".part")
    with tmp.open("w") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    tmp.replace(path)


def _rng_file(rank: int) -> str:
    return f"rng-rank{rank}.json"


def _barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


class CheckpointStore:
    """Save, find and load checkpoints in one directory. ``save``/``load`` are collective:
    every rank calls them in the same order."""

    def __init__(self, root: Path, *, keep: int = 2) -> None:
        self.root = Path(root)
        self.keep = keep

    def complete(self) -> list[CheckpointInfo]:
        """Complete checkpoints, oldest first."""
        if not self.root.is_dir():
            return []
        found = []
        for entry in self.root.iterdir():
            match = _DIR_RE.match(entry.name)
            if match and (entry / COMPLETE).is_file():
                found.append(CheckpointInfo(int(match.group(1)), entry))
        return sorted(found, key=lambda info: info.step)

    def latest(self) -> CheckpointInfo | None:
        done = self.complete()
        return done[-1] if done else None

    def save(self, model: nn.Module, optimizer: torch.optim.Optimizer, state: TrainerState,
             *, rank: int, rng: RngState | None = None) -> CheckpointInfo:
        """Write a checkpoint of ``state.step``; ``rng`` is this rank's generator states."""
        final = self.root / f"step-{state.step:08d}"
        tmp = final.with_name(final.name + ".tmp")
        if rank == 0:
            self.root.mkdir(parents=True, exist_ok=True)
            shutil.rmtree(tmp, ignore_errors=True)  # leftovers of a crash mid-save
        _barrier()
        model_sd, optim_sd = get_state_dict(model, optimizer)
        dcp.save({"model": model_sd, "optim": optim_sd},  # type: ignore[attr-defined]
                 checkpoint_id=str(tmp))
        if rng is not None:
            tmp.mkdir(parents=True, exist_ok=True)
            _write_atomic(tmp / _rng_file(rank), json.dumps(rng.state_dict()))
            _barrier()  # every rank's file is in before rank 0 renames the directory
        if rank == 0:
            _write_atomic(tmp / TRAINER_FILE, json.dumps(state.state_dict(), indent=1))
            if final.exists():  # a crash between rename and COMPLETE left it unusable
                shutil.rmtree(final)
            tmp.rename(final)
            _fsync_dir(self.root)
            _write_atomic(final / COMPLETE, json.dumps({"step": state.step}))
            self.prune()
        _barrier()
        return CheckpointInfo(state.step, final)

    def load(self, info: CheckpointInfo, model: nn.Module, optimizer: torch.optim.Optimizer
             ) -> TrainerState:
        try:
            state = TrainerState.from_state_dict(json.loads((info.path / TRAINER_FILE).read_text()))
        except (OSError, ValueError, TypeError) as exc:
            raise CheckpointError(f"{info.path}: unreadable trainer state: {exc}") from exc
        model_sd, optim_sd = get_state_dict(model, optimizer)
        loaded: dict[str, Any] = {"model": model_sd, "optim": optim_sd}
        dcp.load(loaded, checkpoint_id=str(info.path))  # type: ignore[attr-defined]
        set_state_dict(model, optimizer, model_state_dict=loaded["model"],
                       optim_state_dict=loaded["optim"])
        return state

    def load_rng(self, info: CheckpointInfo, rank: int) -> RngState | None:
        """Rank ``rank``'s generator states in ``info``; ``None`` when it holds none."""
        path = info.path / _rng_file(rank)
        if not path.is_file():
            return None
        try:
            return RngState.from_state_dict(json.loads(path.read_text()))
        except (OSError, ValueError, TypeError) as exc:
            raise CheckpointError(f"{path}: unreadable RNG state: {exc}") from exc

    def prune(self) -> None:
        """Delete all but the newest ``keep`` complete checkpoints (and stale temporaries)."""
        done = self.complete()
        for info in done[: max(0, len(done) - self.keep)]:
            shutil.rmtree(info.path, ignore_errors=True)
        newest = done[-1].step if done else -1
        for entry in self.root.iterdir():
            match = re.match(r"^step-(\d+)\.tmp$", entry.name)
            if match and int(match.group(1)) < newest:
                shutil.rmtree(entry, ignore_errors=True)
