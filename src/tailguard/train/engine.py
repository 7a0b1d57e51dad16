"""Engines run a :class:`TrainJob`; the local engine runs it as supervised processes here.

``Engine`` is the seam: ``run(job) -> TrainResult``. :class:`LocalEngine` hosts the group's
TCPStore, starts one ``python -m tailguard.train.worker`` per rank, and polls them: exit codes
and heartbeat-file mtimes become a :class:`GroupSnapshot` for the pure
:func:`tailguard.train.supervision.decide`. On a failure the whole group is killed (SIGKILL by
PID) and restarted from the last complete checkpoint, maybe smaller; after ``max_restarts`` the
run fails with the cause. On success the exported artifact is registered.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Protocol

from tailguard.artifacts import ArtifactError, Registry, tailguard_home
from tailguard.observe.trace_spec import build_tracing
from tailguard.train.checkpoint import CheckpointStore
from tailguard.train.job import JobError, TrainJob
from tailguard.train.metrics import MetricsWriter, read_events, summarize
from tailguard.train.preflight import check_job_data
from tailguard.train.runs import RunPaths, latest_run, new_run_id, read_json, run_paths, write_json
from tailguard.train.supervision import (
    Action,
    Decision,
    GroupSnapshot,
    SupervisorConfig,
    SupervisorState,
    WorkerObservation,
    decide,
)
from tailguard.train.traces import RunTrace

if TYPE_CHECKING:
    from tailguard.observe.tracing import Tracing


@dataclass(frozen=True)
class TrainResult:
    run_id: str
    run_dir: Path
    succeeded: bool
    message: str
    attempts: int
    restarts: int
    world_size: int
    final_step: int
    metrics: dict[str, float] = field(default_factory=dict)
    tta_s: float | None = None
    artifact_ref: str | None = None


class Engine(Protocol):
    """Runs a training job to completion (or failure). Local processes today; Ray Train and
    torchrun engines implement the same method."""

    def run(self, job: TrainJob, *, resume: bool = False, run_id: str | None = None
            ) -> TrainResult: ...


@dataclass
class _Worker:
    rank: int
    process: subprocess.Popen[bytes]
    started_at: float
    heartbeat: Path
    log: Path | None


def _log_tail(path: Path | None, lines: int = 12) -> str:
    if path is None or not path.is_file():
        return ""
    tail = path.read_text(errors="replace").splitlines()[-lines:]
    return "\n".join(f"    {line}" for line in tail)


@contextmanager
def _sigterm_as_exit() -> Iterator[None]:
    """SIGTERM unwinds like Ctrl-C, so the group is killed instead of orphaned."""
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def _raise(signum: int, frame: Any) -> None:
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, _raise)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _finished(paths: RunPaths) -> bool:
    return summarize(paths.run_id, read_events(paths.metrics)).status == "succeeded"


class LocalEngine:
    """Supervised worker processes on this machine (gloo on CPU, NCCL on CUDA).

    ``tracing`` replaces the tracer the job's ``tracing:`` would build (tests export to
    memory)."""

    def __init__(self, home: Path | None = None, *, poll_interval_s: float = 0.05,
                 env: dict[str, str] | None = None, progress: bool | None = None,
                 echo: Callable[[str], None] | None = None,
                 metrics_port: int | None = None, tracing: Tracing | None = None) -> None:
        """``metrics_port``: serve ``tailguard_train_*`` on 127.0.0.1 at this port while a
        job runs (0: a free port; the URL is echoed); ``None``: no endpoint."""
        self.metrics_port = metrics_port
        self.tracing = tracing
        self.home = Path(home) if home is not None else tailguard_home()
        self.poll_interval_s = poll_interval_s
        self.env = dict(env or {})
        self.progress = sys.stderr.isatty() if progress is None else progress
        self.echo = echo or (lambda message: print(message, file=sys.stderr, flush=True))

    # -- run selection -------------------------------------------------------------------
    def _paths(self, job: TrainJob, resume: bool, run_id: str | None) -> RunPaths:
        paths = self._select(job, resume, run_id)
        if resume and _finished(paths):
            raise JobError(f"run {paths.run_id} already finished; nothing to resume (its "
                           f"result: tailguard runs show {paths.run_id}); train again "
                           "without --resume for a new run")
        return paths

    def _select(self, job: TrainJob, resume: bool, run_id: str | None) -> RunPaths:
        if run_id is not None:
            paths = run_paths(run_id, self.home)
            if resume and not paths.job.is_file():
                raise JobError(f"no run {run_id!r} under {paths.root.parent} to resume")
            return paths
        if resume:
            found = latest_run(job.name, self.home)
            if found is None:
                raise JobError(f"--resume: no earlier run of job {job.name!r} under "
                               f"{self.home / 'runs'}; start one without --resume")
            return found
        return run_paths(new_run_id(job.name), self.home)

    @staticmethod
    def _preflight(job: TrainJob) -> None:
        """Mistakes every worker would repeat fail here once, not after max_restarts tries."""
        from tailguard.train.builtin_models import resolve_builder

        try:
            resolve_builder(job.model.builder)
        except ValueError as exc:
            raise JobError(str(exc)) from exc
        check_job_data(job)  # schema, types, rows: from index.json, before any worker
        if job.parallel.model_parallel > 1:
            from tailguard.train.model_plans import check_splittable

            try:
                check_splittable(job.model.builder, dict(job.model.kwargs), job.parallel)
            except ValueError as exc:
                raise JobError(f"parallel: {exc}") from exc

    # -- processes -----------------------------------------------------------------------
    def _spawn(self, job: TrainJob, paths: RunPaths, attempt: int, world_size: int,
               port: int) -> list[_Worker]:
        paths.attempt_dir(attempt).mkdir(parents=True, exist_ok=True)
        for rank in range(world_size):  # never judge a new worker by an old heartbeat
            paths.heartbeat(attempt, rank).unlink(missing_ok=True)
        env = {**os.environ, **self.env, "PYTHONUNBUFFERED": "1"}
        workers = []
        for rank in range(world_size):
            log_path: Path | None = paths.log(attempt, rank)
            out: IO[bytes] | int | None
            if rank == 0 and self.progress:
                log_path, out = None, None  # inherit the terminal: progress bar, tracebacks
            else:
                assert log_path is not None
                out = log_path.open("ab")
            cmd = [sys.executable, "-m", "tailguard.train.worker", "--run-dir", str(paths.root),
                   "--attempt", str(attempt), "--rank", str(rank), "--world-size",
                   str(world_size), "--store-port", str(port)]
            if rank == 0 and self.progress:
                cmd.append("--progress")
            process = subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL, stdout=out,
                                       stderr=subprocess.STDOUT if out is not None else None,
                                       start_new_session=True)
            if not isinstance(out, int) and out is not None:
                out.close()
            workers.append(_Worker(rank, process, time.time(), paths.heartbeat(attempt, rank),
                                   log_path))
        write_json(paths.status, {"run_id": paths.run_id, "attempt": attempt,
                                  "world_size": world_size,
                                  "pids": {str(w.rank): w.process.pid for w in workers}})
        return workers

    def _kill(self, workers: list[_Worker]) -> None:
        for w in workers:
            if w.process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(w.process.pid, signal.SIGKILL)  # also ends SIGSTOPped workers
        for w in workers:
            w.process.wait()

    @staticmethod
    def _observe(workers: list[_Worker], store: CheckpointStore) -> GroupSnapshot:
        observations = []
        for w in workers:
            try:
                beat: float | None = w.heartbeat.stat().st_mtime
            except FileNotFoundError:
                beat = None
            observations.append(WorkerObservation(w.rank, w.started_at, w.process.poll(), beat))
        latest = store.latest()
        return GroupSnapshot(tuple(observations), latest.step if latest else None)

    # -- the supervision loop ------------------------------------------------------------
    def run(self, job: TrainJob, *, resume: bool = False, run_id: str | None = None
            ) -> TrainResult:
        paths = self._paths(job, resume, run_id)  # first: a finished run needs no data
        self._preflight(job)
        paths.root.mkdir(parents=True, exist_ok=True)
        if paths.job.is_file() and read_json(paths.job).get("name") != job.name:
            raise JobError(f"run {paths.run_id} belongs to another job")
        write_json(paths.job, job.model_dump(mode="json"))
        metrics = MetricsWriter(paths.metrics)
        store = CheckpointStore(paths.checkpoints, keep=job.keep_checkpoints)
        config = SupervisorConfig(job.world_size, job.floor_world_size, job.max_restarts,
                                  job.heartbeat_timeout_s, job.startup_timeout_s)
        latest = store.latest()
        state = SupervisorState.initial(config, latest.step if latest else None)
        self.echo(f"run {paths.run_id}: {job.world_size} worker(s), {job.parallel.describe()}"
                  + (f", resuming from step {latest.step}" if latest else ""))
        # attempts of earlier invocations (a --resume) keep their logs; number on after them
        attempts_dir = paths.root / "attempts"
        base = len(list(attempts_dir.iterdir())) if attempts_dir.is_dir() else 0
        tracing = self.tracing or build_tracing(job.tracing, "train",
                                                attributes={"tailguard.job": job.name})
        trace = RunTrace(tracing, job.name, paths.run_id, job.world_size, resume)
        result: TrainResult | None = None
        try:
            result = self._supervise(job, paths, base, state, config, store, metrics, trace)
            return result
        finally:
            trace.end(result is not None and result.succeeded,
                      result.message if result is not None else "interrupted")
            if tracing is not None and self.tracing is None:
                tracing.shutdown()  # a batching exporter (OTLP) sends what it holds

    def _supervise(self, job: TrainJob, paths: RunPaths, base: int, state: SupervisorState,
                   config: SupervisorConfig, store: CheckpointStore, metrics: MetricsWriter,
                   trace: RunTrace) -> TrainResult:
        with _sigterm_as_exit(), self._exporter(job, paths):
            while True:
                decision, new_state, workers = self._attempt(job, paths, base, state, config,
                                                             store, trace)
                trace.attempt_ended(base + state.attempt, decision.action.value,
                                    decision.reason, list(decision.failed_ranks),
                                    lambda: read_events(paths.metrics))
                if decision.action is Action.SUCCEED:
                    # the size this attempt ran at (an engine may place fewer than asked)
                    return self._succeed(job, paths, metrics,
                                         replace(state, world_size=decision.world_size))
                tails = "\n".join(
                    f"  rank {w.rank} log ({w.log}):\n{_log_tail(w.log)}" for w in workers
                    if w.rank in decision.failed_ranks and _log_tail(w.log))
                for rank in decision.failed_ranks:
                    metrics.write("worker_failed", rank=rank, attempt=base + state.attempt)
                if decision.action is Action.FAIL:
                    metrics.write("failed", reason=decision.reason, attempt=base + state.attempt)
                    message = f"training failed: {decision.reason}"
                    self.echo(message + (f"\n{tails}" if tails else ""))
                    return self._result(paths, False, message, new_state)
                # read after the kill: a save may have completed since the decision
                latest = store.latest()
                from_step = latest.step if latest else None
                state = replace(new_state, attempt_start_step=from_step)
                metrics.write("restart", attempt=base + state.attempt, reason=decision.reason,
                              world_size=state.world_size, from_step=from_step,
                              restarts=state.restarts)
                trace.restarting(state.restarts, decision.reason, state.world_size, from_step)
                self.echo(f"{decision.reason}; restarting from "
                          + (f"step {from_step}" if from_step is not None else "scratch")
                          + f" with {state.world_size} worker(s) "
                          f"(restart {state.restarts}/{job.max_restarts})"
                          + (f"\n{tails}" if tails else ""))

    @contextmanager
    def _exporter(self, job: TrainJob, paths: RunPaths) -> Iterator[None]:
        """The scrape endpoint for the whole run: here, not in a worker, so it outlives
        worker restarts and counts them."""
        if self.metrics_port is None:
            yield
            return
        from tailguard.train.prometheus import TrainExporter

        with TrainExporter(self.metrics_port, job.name, paths.run_id, paths.metrics) as exp:
            self.echo(f"run {paths.run_id}: training metrics on {exp.url}")
            yield

    def _attempt(self, job: TrainJob, paths: RunPaths, base: int, state: SupervisorState,
                 config: SupervisorConfig, store: CheckpointStore, trace: RunTrace
                 ) -> tuple[Decision, SupervisorState, list[_Worker]]:
        """Start one group, supervise it until the policy says anything but wait, kill it."""
        import torch.distributed as dist

        # The group rendezvous on a store this process hosts: a fresh one per attempt, on a
        # port the OS picks, so no stale keys and no port race between attempts or runs.
        tcp = dist.TCPStore("127.0.0.1", 0, state.world_size,  # type: ignore[attr-defined]
                            is_master=True, wait_for_workers=False)
        workers: list[_Worker] = []
        try:
            trace.attempt_started(base + state.attempt, state.world_size,
                                  state.attempt_start_step)
            workers = self._spawn(job, paths, base + state.attempt, state.world_size, tcp.port)
            trace.workers_started([w.process.pid for w in workers])
            while True:
                time.sleep(self.poll_interval_s)
                decision, new_state = decide(self._observe(workers, store), state, config,
                                             time.time())
                if decision.action is not Action.WAIT:
                    return decision, new_state, workers
        finally:
            self._kill(workers)
            del tcp

    # -- results -------------------------------------------------------------------------
    def _succeed(self, job: TrainJob, paths: RunPaths, metrics: MetricsWriter,
                 state: SupervisorState) -> TrainResult:
        ref = None
        if job.register_artifact:
            try:
                manifest = Registry(self.home).register(paths.artifact)
            except ArtifactError as exc:
                message = f"training finished but the artifact could not be registered: {exc}"
                metrics.write("failed", reason=message)
                return self._result(paths, False, message, state)
            ref = manifest.ref
            metrics.write("registered", ref=ref, path=str(paths.artifact))
        result = self._result(paths, True, "training finished", state, ref)
        tta = f", time-to-target {result.tta_s:.2f}s" if result.tta_s is not None else ""
        shown = ", ".join(f"{k} {v:.4g}" for k, v in result.metrics.items()
                          if k != "tta_s" and v is not None)
        self.echo(f"run {paths.run_id}: finished at step {result.final_step} ({shown}){tta}"
                  + (f"; registered {ref}" if ref else f"; artifact in {paths.artifact}"))
        return result

    @staticmethod
    def _result(paths: RunPaths, ok: bool, message: str, state: SupervisorState,
                ref: str | None = None) -> TrainResult:
        events = read_events(paths.metrics)
        finished = [e for e in events if e["event"] == "finished"]
        reached = [e for e in events if e["event"] == "target_reached"]
        steps = [int(e["step"]) for e in events if e["event"] == "step"]
        return TrainResult(
            run_id=paths.run_id, run_dir=paths.root, succeeded=ok, message=message,
            attempts=state.attempt + 1, restarts=state.restarts, world_size=state.world_size,
            final_step=int(finished[-1]["step"]) if finished and ok else max(steps, default=0),
            metrics=dict(finished[-1]["metrics"]) if finished and ok else {},
            tta_s=float(reached[0]["tta_s"]) if reached else None, artifact_ref=ref)
