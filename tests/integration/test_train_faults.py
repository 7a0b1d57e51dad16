"""Failure handling with real worker processes: SIGKILL, SIGSTOP (heartbeat), max_restarts.
Steps are paced (TAILGUARD_TRAIN_STEP_DELAY_S) so the test can act mid-run. Elastic shrink is
in test_train_resume.py, where its trajectory is compared with an uninterrupted run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from tailguard.train import LocalEngine, TrainResult, parse_job, read_events
from tailguard.train.trainer import FAULT_ENV, STEP_DELAY_ENV
from tests.integration.digits_data import make_digits

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def digits(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return make_digits(tmp_path_factory.mktemp("digits"))


def _job(digits: dict[str, Path], **over: Any) -> dict[str, Any]:
    job: dict[str, Any] = {
        "name": "faults",
        "model": {"builder": "mlp", "kwargs": {"in_features": 64, "hidden": [64],
                                               "out_features": 10}},
        "data": {"train": str(digits["train"]), "eval": str(digits["test"]),
                 "features": ["px*"], "label": "label"},
        "optimizer": {"name": "adamw", "lr": 0.003},
        "batch_size": 16, "max_steps": 400, "world_size": 2, "checkpoint_every_steps": 10,
        "eval_every_steps": 15, "heartbeat_timeout_s": 30, "max_restarts": 2,
        "register_artifact": False,
    }
    job.update(over)
    return job


def wait_for(condition: Callable[[], Any], timeout_s: float, what: str) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")


class Background:
    """Runs the engine in a thread so the test can signal its workers mid-run."""

    def __init__(self, engine: LocalEngine, job: dict[str, Any]) -> None:
        self.result: TrainResult | None = None
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, args=(engine, job), daemon=True)
        self.thread.start()

    def _run(self, engine: LocalEngine, job: dict[str, Any]) -> None:
        try:
            self.result = engine.run(parse_job(job))
        except BaseException as exc:
            self.error = exc

    def join(self, timeout_s: float) -> TrainResult:
        self.thread.join(timeout_s)
        assert not self.thread.is_alive(), "engine did not finish"
        if self.error is not None:
            raise self.error
        assert self.result is not None
        return self.result


def _run_dir(home: Path) -> Path | None:
    runs = list((home / "runs").glob("*/status.json")) if (home / "runs").is_dir() else []
    return runs[0].parent if runs else None


def _rank_pid_once_past(home: Path, step: int, rank: int) -> tuple[Path, int]:
    """Wait until attempt 0 has logged ``step``; return the run dir and ``rank``'s PID."""
    def ready() -> tuple[Path, int] | None:
        run = _run_dir(home)
        if run is None:
            return None
        if not any(e["event"] == "step" and e["step"] >= step
                   for e in read_events(run / "metrics.jsonl")):
            return None
        status = json.loads((run / "status.json").read_text())
        return (run, int(status["pids"][str(rank)])) if status["attempt"] == 0 else None
    found: tuple[Path, int] = wait_for(ready, 60, f"step {step}")
    return found


def _engine(home: Path, **env: str) -> LocalEngine:
    return LocalEngine(home, env=env, progress=False, echo=lambda _msg: None)


def test_sigkilled_worker_restarts_from_checkpoint_and_reaches_target(
        digits: dict[str, Path], tmp_path: Path) -> None:
    job = _job(digits, target={"metric": "accuracy", "value": 0.9})
    run = Background(_engine(tmp_path, **{STEP_DELAY_ENV: "0.02"}), job)
    _, pid = _rank_pid_once_past(tmp_path, 25, rank=1)
    os.kill(pid, signal.SIGKILL)
    result = run.join(100)

    assert result.succeeded, result.message
    assert result.restarts == 1 and result.world_size == 2
    assert result.tta_s is not None and result.metrics["accuracy"] >= 0.9
    events = read_events(result.run_dir / "metrics.jsonl")
    restart = next(e for e in events if e["event"] == "restart")
    assert "rank 1 was killed by signal 9" in restart["reason"]
    done_before = max(e["step"] for e in events if e["event"] == "step" and e["attempt"] == 0)
    resumed = next(e for e in events if e["event"] == "start" and e["attempt"] == 1)
    assert resumed["resumed_from_step"] == restart["from_step"]
    # lost work is bounded by one checkpoint interval
    assert 0 <= done_before - restart["from_step"] <= job["checkpoint_every_steps"]
    reached = next(e for e in events if e["event"] == "target_reached")
    assert reached["value"] >= 0.9 and reached["tta_s"] > 0


def test_hung_worker_is_detected_by_heartbeat_and_the_group_restarts(
        digits: dict[str, Path], tmp_path: Path) -> None:
    timeout_s = 3.0
    job = _job(digits, max_steps=60, heartbeat_timeout_s=timeout_s, eval_every_steps=None)
    run = Background(_engine(tmp_path, **{STEP_DELAY_ENV: "0.02"}), job)
    run_dir, pid = _rank_pid_once_past(tmp_path, 15, rank=1)
    os.kill(pid, signal.SIGSTOP)
    stopped_at = time.time()
    try:
        restart = wait_for(lambda: next((e for e in read_events(run_dir / "metrics.jsonl")
                                         if e["event"] == "restart"), None), 30, "a restart")
    finally:
        os.kill(pid, signal.SIGCONT) if _alive(pid) else None
    detected_after = restart["t"] - stopped_at
    # rank 0 blocks in the next allreduce and goes silent too: either may be named first
    assert "stopped heartbeating" in restart["reason"]
    # Silence is measured from a rank's last beat, which precedes the stop by up to one beat
    # interval (0.5 s while a checkpoint is written under keepalive): so not before
    # timeout - 1 s, and no later than the timeout plus the engine's poll and teardown.
    assert timeout_s - 1.0 <= detected_after <= timeout_s + 2.0, restart
    result = run.join(100)
    events = read_events(run_dir / "metrics.jsonl")
    assert result.succeeded, (result.message, [e for e in events if e["event"] != "step"])
    assert result.restarts == 1 and result.final_step == 60


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_max_restarts_exceeded_fails_loudly(digits: dict[str, Path], tmp_path: Path) -> None:
    job_file = tmp_path / "job.yaml"
    # one worker (the cheapest group) that fails in every attempt
    job_file.write_text(yaml.safe_dump(_job(digits, max_steps=6, max_restarts=1, world_size=1,
                                            batch_size=32)))
    env = {**os.environ, "TAILGUARD_HOME": str(tmp_path / "home"),
           FAULT_ENV: json.dumps({"rank": 0, "step": 2})}
    proc = subprocess.run([sys.executable, "-m", "tailguard.cli", "train", str(job_file)],
                          env=env, capture_output=True, text=True, timeout=100, check=False)
    assert proc.returncode == 1
    assert "training failed: rank 0 exited with code 3" in proc.stderr
    assert "giving up after 1 restart(s) (max_restarts=1)" in proc.stderr
