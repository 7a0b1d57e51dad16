"""The Ray engine: the same job, trainer loop, checkpoints and supervision, ranks on Ray nodes.

Plain Ray actors, not Ray Train: one actor per rank, placed by a placement group (one bundle
per rank, SPREAD across nodes), each running tailguard's own worker main
(:func:`tailguard.train.worker.main`) — the same process the local engine starts. The group
rendezvous on a TCPStore hosted by this driver, the ranks train with gloo (nccl on GPUs), and
the supervision is :class:`~tailguard.train.engine.LocalEngine`'s unchanged: the pure
:func:`~tailguard.train.supervision.decide` over exit codes and heartbeat files. A rank's
"exit code" is its actor call: returned (its code), raised (1) or the actor died with its
node (-9). On any failure the whole group is killed and restarted from the last complete
checkpoint; before each attempt the engine places as many ranks as the cluster holds, down
to ``min_world_size``, so a job shrinks when a node is gone.

Why not Ray Train (v2 ``TorchTrainer``): it owns the loop, the checkpoint format and the
restart policy, all of which tailguard already has (bit-exact mid-epoch resume, DCP), and its
controller start-up is measured in ``benchmarks/ray_train_minilm.py``.

The run directory (``TAILGUARD_HOME``) and the data must be on storage every node reaches.
"""

from __future__ import annotations

import os
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from tailguard import raylink
from tailguard.train.engine import LocalEngine, TrainResult, _Worker
from tailguard.train.job import JobError, TrainJob
from tailguard.train.runs import RunPaths, write_json
from tailguard.train.supervision import Decision, SupervisorConfig, SupervisorState
from tailguard.train.traces import RunTrace

__all__ = ["RayEngine"]

PLACEMENT_WAIT_S = 10.0  # how long a group of one size may wait for its nodes


class _RankActor:
    """Runs one rank's worker main in this (dedicated) actor process."""

    def run(self, argv: list[str], log: str) -> int:
        fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        os.close(fd)
        from tailguard.train.worker import main

        return main(argv)


class _RayRank:
    """A rank as the supervision loop sees a process: ``poll()`` and a ``pid``."""

    def __init__(self, actor: Any, ref: Any) -> None:
        self.actor = actor
        self.ref = ref
        self.pid: int | None = None

    def poll(self) -> int | None:
        ray = raylink.require_ray()
        ready, _ = ray.wait([self.ref], timeout=0)
        if not ready:
            return None
        try:
            return int(ray.get(self.ref))
        except ray.exceptions.RayTaskError:
            return 1
        except ray.exceptions.RayError:  # the actor died, with its node or killed
            return -9


class RayEngine(LocalEngine):
    """Ranks as Ray actors on the cluster at ``address`` (None: $RAY_ADDRESS or a local Ray)."""

    def __init__(self, home: Path | None = None, *, address: str | None = None,
                 **kwargs: Any) -> None:
        super().__init__(home, **kwargs)
        self.progress = False  # ranks log to their files; the terminal is the driver's
        self.address = address
        self._group: Any = None

    def run(self, job: TrainJob, *, resume: bool = False, run_id: str | None = None
            ) -> TrainResult:
        try:
            raylink.connect(self.address)
        except raylink.RayUnavailable as exc:
            raise JobError(str(exc)) from exc
        return super().run(job, resume=resume, run_id=run_id)

    # -- placement ------------------------------------------------------------------------
    def _bundle(self, job: TrainJob) -> dict[str, float]:
        cuda = job.device == "cuda"
        return {"CPU": float(job.threads_per_worker or 1), **({"GPU": 1.0} if cuda else {})}

    def _place(self, job: TrainJob, wanted: int, floor: int) -> tuple[Any, int]:
        """A ready placement group for as many ranks as the cluster holds, ``wanted`` down
        to ``floor``; :class:`JobError` when not even ``floor`` fit."""
        ray = raylink.require_ray()
        from ray.util.placement_group import placement_group, remove_placement_group

        bundle = self._bundle(job)
        for size in range(wanted, floor - 1, -1):
            group = placement_group([bundle] * size, strategy="SPREAD")
            ready, _ = ray.wait([group.ready()], timeout=PLACEMENT_WAIT_S)
            if ready:
                if size < wanted:
                    self.echo(f"the Ray cluster holds {size} of {wanted} workers of {bundle}; "
                              f"training with {size} (min_world_size {floor})")
                return group, size
            remove_placement_group(group)
        nodes = "; ".join(f"{n.address} {n.resources}" for n in raylink.alive_nodes())
        raise JobError(f"the Ray cluster cannot place {floor} worker(s) of {bundle} within "
                       f"{PLACEMENT_WAIT_S:g} s (nodes: {nodes or 'none alive'})")

    def _attempt(self, job: TrainJob, paths: RunPaths, base: int, state: SupervisorState,
                 config: SupervisorConfig, store: Any, trace: RunTrace
                 ) -> tuple[Decision, SupervisorState, list[_Worker]]:
        self._group, size = self._place(job, state.world_size, config.min_world_size)
        if size != state.world_size:
            state = replace(state, world_size=size)
        return super()._attempt(job, paths, base, state, config, store, trace)

    # -- processes ------------------------------------------------------------------------
    def _store_host(self) -> str:
        return str(raylink.require_ray().util.get_node_ip_address())

    def _spawn(self, job: TrainJob, paths: RunPaths, attempt: int, world_size: int,
               port: int) -> list[_Worker]:
        ray = raylink.require_ray()
        from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

        paths.attempt_dir(attempt).mkdir(parents=True, exist_ok=True)
        for rank in range(world_size):
            paths.heartbeat(attempt, rank).unlink(missing_ok=True)
        bundle = self._bundle(job)
        remote = ray.remote(_RankActor)
        env = {**self.env, "PYTHONUNBUFFERED": "1"}
        workers = []
        for rank in range(world_size):
            actor = remote.options(
                num_cpus=bundle["CPU"], num_gpus=bundle.get("GPU", 0), max_restarts=0,
                runtime_env={"env_vars": env},
                scheduling_strategy=PlacementGroupSchedulingStrategy(
                    self._group, placement_group_bundle_index=rank),
            ).remote()
            argv = ["--run-dir", str(paths.root), "--attempt", str(attempt), "--rank",
                    str(rank), "--world-size", str(world_size), "--store-host",
                    self._store_host(), "--store-port", str(port)]
            log = paths.log(attempt, rank)
            ref = actor.run.remote(argv, str(log))
            workers.append(_Worker(rank, _RayRank(actor, ref), time.time(),  # type: ignore[arg-type]
                                   paths.heartbeat(attempt, rank), log))
        from ray.util import placement_group_table

        nodes = placement_group_table(self._group).get("bundles_to_node_id", {})
        write_json(paths.status, {"run_id": paths.run_id, "attempt": attempt,
                                  "world_size": world_size, "engine": "ray",
                                  "nodes": {str(r): nodes.get(r) for r in range(world_size)}})
        return workers

    def _kill(self, workers: list[_Worker]) -> None:
        ray = raylink.require_ray()
        from ray.util.placement_group import remove_placement_group

        for w in workers:
            rank = w.process
            assert isinstance(rank, _RayRank)
            ray.kill(rank.actor, no_restart=True)
        if self._group is not None:
            remove_placement_group(self._group)
            self._group = None
