"""Supervision policy for a group of training workers: pure, clock passed in.

The engine (mechanism) observes its workers — exit codes and heartbeat times — and asks
:func:`decide` what to do: wait, succeed, restart the whole group (maybe smaller) from the last
complete checkpoint, or fail. Nothing here touches processes or files, so every transition is
unit-tested tick by tick.

Restart rule: a failed group restarts at the same size; when a *restart* fails again without
having written a new complete checkpoint, the next one runs with one worker fewer, down to
``min_world_size``. After ``max_restarts`` restarts the job fails with the cause of the last
failure.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import Enum


@dataclass(frozen=True)
class WorkerObservation:
    """One worker as the engine sees it. Times are seconds on the engine's clock."""

    rank: int
    started_at: float
    exit_code: int | None = None  # None while running; negative = killed by that signal
    last_heartbeat_at: float | None = None  # None until the first heartbeat


@dataclass(frozen=True)
class GroupSnapshot:
    workers: tuple[WorkerObservation, ...]
    latest_checkpoint_step: int | None  # of the run, complete checkpoints only


@dataclass(frozen=True)
class SupervisorConfig:
    world_size: int
    min_world_size: int
    max_restarts: int
    heartbeat_timeout_s: float
    startup_timeout_s: float

    def __post_init__(self) -> None:
        if not 1 <= self.min_world_size <= self.world_size:
            raise ValueError(
                f"min_world_size {self.min_world_size} must be in [1, world_size={self.world_size}]"
            )
        if self.max_restarts < 0:
            raise ValueError("max_restarts must be >= 0")
        if self.heartbeat_timeout_s <= 0 or self.startup_timeout_s <= 0:
            raise ValueError("timeouts must be positive seconds")


@dataclass(frozen=True)
class SupervisorState:
    """What survives between decisions: the current attempt and its size."""

    world_size: int
    attempt: int = 0
    restarts: int = 0
    attempt_start_step: int | None = None  # latest complete checkpoint when the attempt began
    last_failure: str | None = None

    @classmethod
    def initial(cls, config: SupervisorConfig, checkpoint_step: int | None) -> SupervisorState:
        return cls(world_size=config.world_size, attempt_start_step=checkpoint_step)


class Action(Enum):
    WAIT = "wait"
    SUCCEED = "succeed"
    RESTART = "restart"
    FAIL = "fail"


@dataclass(frozen=True)
class Decision:
    action: Action
    world_size: int
    reason: str = ""
    failed_ranks: tuple[int, ...] = ()


def _describe_exit(code: int) -> str:
    return f"was killed by signal {-code}" if code < 0 else f"exited with code {code}"


def find_failures(
    snapshot: GroupSnapshot, config: SupervisorConfig, now: float
) -> list[tuple[int, str]]:
    """(rank, cause) of every worker that died, never started, or stopped heartbeating."""
    failures: list[tuple[int, str]] = []
    for w in snapshot.workers:
        if w.exit_code is not None:
            if w.exit_code != 0:
                failures.append((w.rank, f"rank {w.rank} {_describe_exit(w.exit_code)}"))
            continue
        if w.last_heartbeat_at is None:
            waited = now - w.started_at
            if waited > config.startup_timeout_s:
                failures.append((w.rank, f"rank {w.rank} sent no heartbeat within "
                                         f"startup_timeout_s={config.startup_timeout_s:g}"))
            continue
        silent = now - w.last_heartbeat_at
        if silent > config.heartbeat_timeout_s:
            failures.append((w.rank, f"rank {w.rank} stopped heartbeating for {silent:.1f}s "
                                     f"(heartbeat_timeout_s={config.heartbeat_timeout_s:g})"))
    return failures


def next_world_size(
    state: SupervisorState, config: SupervisorConfig, latest_checkpoint_step: int | None
) -> int:
    """Same size, unless this attempt was already a restart that made no progress."""
    made_progress = latest_checkpoint_step != state.attempt_start_step
    if state.attempt > 0 and not made_progress:
        return max(config.min_world_size, state.world_size - 1)
    return state.world_size


def decide(
    snapshot: GroupSnapshot, state: SupervisorState, config: SupervisorConfig, now: float
) -> tuple[Decision, SupervisorState]:
    """One supervision tick: what the engine should do with the current group."""
    failures = find_failures(snapshot, config, now)
    if failures:
        ranks = tuple(rank for rank, _ in failures)
        cause = "; ".join(cause for _, cause in failures)
        if state.restarts >= config.max_restarts:
            reason = (f"{cause}; giving up after {state.restarts} restart(s) "
                      f"(max_restarts={config.max_restarts})")
            return (Decision(Action.FAIL, state.world_size, reason, ranks),
                    replace(state, last_failure=cause))
        size = next_world_size(state, config, snapshot.latest_checkpoint_step)
        new_state = SupervisorState(
            world_size=size,
            attempt=state.attempt + 1,
            restarts=state.restarts + 1,
            attempt_start_step=snapshot.latest_checkpoint_step,
            last_failure=cause,
        )
        return Decision(Action.RESTART, size, cause, ranks), new_state
    if snapshot.workers and all(w.exit_code == 0 for w in snapshot.workers):
        return Decision(Action.SUCCEED, state.world_size, "all workers finished"), state
    return Decision(Action.WAIT, state.world_size), state
