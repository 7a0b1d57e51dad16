"""The live autoscaler end to end: a real ``tailguard serve``, real replica processes, open-loop
load from the in-process generator.

One sleep-based replica serves about 25 req/s (40 ms a request, batches of one). Offered load
steps to 75 req/s (3x): the slo policy must add replicas, and once they serve, the P99 of the
load generator's requests must be back under the objective. Then load drops to 4 req/s:
replicas must drain back to the minimum. Not one request may fail over the whole run.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Callable
from typing import Any

from tailguard.load import LoadResult, LoadSpec, run_load
from tests.integration.conftest import ServerProcess, wait_for

SLO_MS = 250.0
ONE_REPLICA_RPS = 25.0  # 1000 / sleep_ms
SURGE_RPS = 3 * ONE_REPLICA_RPS
LOW_RPS = 4.0
NAME = "sleepy"

CONFIG: dict[str, Any] = {
    # Admission would shed the surge's backlog (429) while replicas start; this test is
    # about the autoscaler keeping every request, so it only queues.
    "admission": {"enabled": False},
    "deployments": [{
        "name": NAME,
        "model": "tailguard.models.sleep:Sleep",
        "options": {"sleep_ms": 1000.0 / ONE_REPLICA_RPS, "per_row_ms": 0},
        "replicas": 1,
        "max_batch_size": 1,
        "max_wait_ms": 0,
        "timeout_ms": 30_000,
        "p99_ms": SLO_MS,  # the slo policy's objective
        "autoscaling": {
            "policy": "slo",
            "min_replicas": 1,
            "max_replicas": 4,
            "tick_s": 0.25,
            "window_s": 3.0,
            "recent_window_s": 1.0,
            # No step headroom: the test counts the replicas the load itself needs.
            "options": {"scale_down_stabilization_s": 3.0, "spare_replicas": 0,
                        "floor_replicas": 1},
        },
    }],
}


class _Load:
    """Open-loop load in a thread, in short segments, so the test can change the phase."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.results: list[tuple[str, LoadResult]] = []
        self.phase = "surge"
        self.measure = threading.Event()  # surge settled: run the measured segment next
        self.measured = threading.Event()
        self.stop = threading.Event()
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _segment(self, rate: float, duration_s: float, seed: int) -> LoadResult:
        spec = LoadSpec(self.url, model=NAME, rate_rps=rate, duration_s=duration_s,
                        inputs=("x=[[0.5, 0.5]]",), timeout_s=30.0, seed=seed,
                        max_connections=64)
        return run_load(spec)

    def _run(self) -> None:
        try:
            seed = 0
            while not self.measure.is_set() and not self.stop.is_set():
                seed += 1
                self.results.append(("surge", self._segment(SURGE_RPS, 2.0, seed)))
            if not self.stop.is_set():
                self.results.append(("measured", self._segment(SURGE_RPS, 8.0, 99)))
            self.measured.set()
            while not self.stop.is_set():
                seed += 1
                self.results.append(("low", self._segment(LOW_RPS, 2.0, seed)))
        except BaseException as exc:  # surfaced by the test, not lost in the thread
            self.error = exc
            self.measured.set()

    def start(self) -> None:
        self._thread.start()

    def join(self) -> None:
        self.stop.set()
        self._thread.join(timeout=30)
        assert not self._thread.is_alive(), "load thread did not finish"
        if self.error is not None:
            raise self.error


def _counts(server: ServerProcess) -> dict[str, int]:
    counts: dict[str, int] = server.deployment(NAME)["replica_counts"]
    return counts


def test_replicas_follow_a_3x_load_step_and_drain_back_without_failures(
    start_server: Callable[..., ServerProcess],
) -> None:
    server = start_server(CONFIG).wait_ready(timeout_s=60)
    assert _counts(server) == {"desired": 1, "ready": 1, "starting": 0, "draining": 0}
    load = _Load(server.url)
    load.start()
    try:
        peak = {"desired": 0}

        def scaled_up() -> bool:
            counts = _counts(server)
            peak["desired"] = max(peak["desired"], counts["desired"])
            return counts["ready"] >= 3

        wait_for(scaled_up, 40, "at least 3 ready replicas under 3x load")

        def settled() -> bool:
            d = server.deployment(NAME)
            peak["desired"] = max(peak["desired"], d["replica_counts"]["desired"])
            return bool(d["replica_counts"]["ready"] >= 3 and d["queued_rows"] == 0)

        wait_for(settled, 30, "the surge's backlog to drain")
        load.measure.set()
        assert load.measured.wait(40), "measured segment did not finish"
        if load.error is not None:
            raise load.error
        status = server.deployment(NAME)["autoscaling"]
        wait_for(lambda: _counts(server) == {"desired": 1, "ready": 1, "starting": 0,
                                             "draining": 0},
                 30, "replicas to drain back to the minimum under low load")
        final = server.deployment(NAME)
    finally:
        load.join()

    assert 3 <= peak["desired"] <= 4
    failures = {phase: r.errors for phase, r in load.results if r.errors or r.ok != r.requests}
    assert failures == {}, f"failed requests: {failures}"
    assert sum(r.ok for phase, r in load.results if phase != "low") > SURGE_RPS * 8
    print("segments (phase, requests, p99 ms):",  # shown when an assertion below fails
          [(phase, r.requests, r.p99_ms) for phase, r in load.results])
    first = load.results[0][1]  # the premise: 3x load really overloads one replica
    measured = next(r for phase, r in load.results if phase == "measured")
    assert measured.p99_ms is not None and measured.p99_ms < SLO_MS, measured.to_dict()
    # It queued (P99 over 3 service times) and worse than once scaled. Not "above the SLO":
    # replicas forked from the template are ready in well under a second, so the surge's
    # first segment may stay inside it (226 ms against 250 once the template landed).
    service_ms = 1000.0 / ONE_REPLICA_RPS
    assert first.p99_ms is not None and first.p99_ms > 3 * service_ms, first.to_dict()
    assert first.p99_ms > measured.p99_ms, (first.to_dict(), measured.to_dict())
    assert measured.ok_rps > 2 * ONE_REPLICA_RPS  # more than one replica could serve

    # The decisions and their reasons are in GET /v1/deployments, and `tailguard status`.
    assert status["policy"] == "slo" and status["errors"] == 0
    ups = [d for d in status["decisions"] if d["target"] > d["current"]]
    assert ups and ups[-1]["reason"].startswith("scale up 1 ->"), status["decisions"]
    downs = [d for d in final["autoscaling"]["decisions"] if d["target"] < d["current"]]
    assert downs and downs[0]["target"] == 1, final["autoscaling"]["decisions"]
    env = {**os.environ, "COLUMNS": "400"}  # rich wraps to 80 columns without a terminal
    out = subprocess.run([sys.executable, "-m", "tailguard", "status", server.url],
                         capture_output=True, text=True, timeout=60, check=True, env=env).stdout
    assert NAME in out and "scale down" in out
