"""Supervision policy, stepped tick by tick with fake worker observations."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tailguard.train.supervision import (
    Action,
    GroupSnapshot,
    SupervisorConfig,
    SupervisorState,
    WorkerObservation,
    decide,
)

CFG = SupervisorConfig(world_size=2, min_world_size=1, max_restarts=2,
                       heartbeat_timeout_s=5.0, startup_timeout_s=30.0)


def snap(*workers: WorkerObservation, step: int | None = None) -> GroupSnapshot:
    return GroupSnapshot(tuple(workers), step)


def alive(rank: int, beat: float | None = 100.0) -> WorkerObservation:
    return WorkerObservation(rank, started_at=90.0, last_heartbeat_at=beat)


def test_healthy_group_waits() -> None:
    state = SupervisorState.initial(CFG, None)
    decision, new = decide(snap(alive(0), alive(1)), state, CFG, now=102.0)
    assert decision.action is Action.WAIT
    assert new == state


def test_all_exit_zero_succeeds() -> None:
    done = [WorkerObservation(r, 0.0, exit_code=0, last_heartbeat_at=1.0) for r in (0, 1)]
    decision, _ = decide(snap(*done), SupervisorState.initial(CFG, None), CFG, now=500.0)
    assert decision.action is Action.SUCCEED


def test_one_finished_one_running_waits() -> None:
    finished = WorkerObservation(0, 0.0, exit_code=0, last_heartbeat_at=95.0)
    decision, _ = decide(snap(finished, alive(1)), SupervisorState.initial(CFG, None), CFG, 101.0)
    assert decision.action is Action.WAIT


def test_killed_worker_restarts_at_full_size() -> None:
    dead = WorkerObservation(1, 90.0, exit_code=-9, last_heartbeat_at=99.0)
    state = SupervisorState.initial(CFG, 10)
    decision, new = decide(snap(alive(0), dead, step=20), state, CFG, now=101.0)
    assert decision.action is Action.RESTART
    assert decision.world_size == 2 and decision.failed_ranks == (1,)
    assert "signal 9" in decision.reason
    assert (new.attempt, new.restarts, new.attempt_start_step) == (1, 1, 20)


@pytest.mark.parametrize("silent_s, fails", [(4.9, False), (5.1, True)])
def test_heartbeat_timeout_boundary(silent_s: float, fails: bool) -> None:
    decision, _ = decide(snap(alive(0, 100.0 + silent_s), alive(1, 100.0)),
                         SupervisorState.initial(CFG, None), CFG, now=100.0 + silent_s)
    assert (decision.action is Action.RESTART) == fails
    if fails:
        assert "stopped heartbeating" in decision.reason and decision.failed_ranks == (1,)


def test_no_first_heartbeat_within_startup_timeout_fails_the_attempt() -> None:
    never = WorkerObservation(0, started_at=0.0, last_heartbeat_at=None)
    ok, _ = decide(snap(never), SupervisorState.initial(CFG, None), CFG, now=29.0)
    late, _ = decide(snap(never), SupervisorState.initial(CFG, None), CFG, now=31.0)
    assert ok.action is Action.WAIT and late.action is Action.RESTART
    assert "startup_timeout_s" in late.reason


def test_failed_restart_without_progress_shrinks_down_to_min() -> None:
    dead = WorkerObservation(1, 0.0, exit_code=1, last_heartbeat_at=1.0)
    state = SupervisorState.initial(CFG, None)
    d1, state = decide(snap(alive(0), dead), state, CFG, now=101.0)
    assert (d1.action, d1.world_size) == (Action.RESTART, 2)  # first failure: same size
    d2, state = decide(snap(alive(0), dead), state, CFG, now=101.0)
    assert (d2.action, d2.world_size) == (Action.RESTART, 1)  # the restart failed: shrink
    d3, _ = decide(snap(WorkerObservation(0, 0.0, exit_code=1)), state, CFG, now=101.0)
    assert d3.action is Action.FAIL  # max_restarts=2 used up
    assert "giving up after 2 restart(s)" in d3.reason and "max_restarts=2" in d3.reason


def test_restart_that_made_progress_keeps_its_size() -> None:
    dead = WorkerObservation(1, 0.0, exit_code=1, last_heartbeat_at=1.0)
    state = SupervisorState(world_size=2, attempt=1, restarts=1, attempt_start_step=10)
    decision, _ = decide(snap(alive(0), dead, step=30), state, CFG, now=101.0)
    assert (decision.action, decision.world_size) == (Action.RESTART, 2)


def test_zero_restarts_allowed_fails_at_first_failure() -> None:
    cfg = SupervisorConfig(2, 2, 0, 5.0, 30.0)
    dead = WorkerObservation(0, 0.0, exit_code=3)
    decision, _ = decide(snap(dead, alive(1)), SupervisorState.initial(cfg, None), cfg, 101.0)
    assert decision.action is Action.FAIL and "rank 0 exited with code 3" in decision.reason


def test_config_rejects_min_above_world_size() -> None:
    with pytest.raises(ValueError, match="min_world_size"):
        SupervisorConfig(2, 3, 1, 5.0, 30.0)


@given(world=st.integers(1, 8), floor=st.integers(1, 8), restarts=st.integers(0, 6),
       failures=st.integers(1, 12))
def test_size_stays_within_bounds_and_restarts_are_capped(
        world: int, floor: int, restarts: int, failures: int) -> None:
    floor = min(floor, world)
    cfg = SupervisorConfig(world, floor, restarts, 5.0, 30.0)
    state = SupervisorState.initial(cfg, None)
    outcomes = []
    for _ in range(failures):
        dead = WorkerObservation(0, 0.0, exit_code=1)
        decision, state = decide(snap(dead), state, cfg, now=1.0)
        outcomes.append(decision.action)
        assert floor <= decision.world_size <= world
        if decision.action is Action.FAIL:
            break
    assert outcomes.count(Action.RESTART) <= restarts
    if failures > restarts:
        assert outcomes[-1] is Action.FAIL
