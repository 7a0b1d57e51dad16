"""Failure is a normal state: replica crashes, deadlines, graceful shutdown."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import threading
from pathlib import Path

import httpx

from tailguard.sched import LATENCY_SLICE_NS, slice_ns
from tests.integration.conftest import ServerProcess, wait_for


def _sleep_deployment(**over: object) -> dict[str, object]:
    spec = {"name": "sleep", "model": "tailguard.models.sleep:Sleep", "replicas": 2,
            "max_batch_size": 8, "max_wait_ms": 2, "options": {"sleep_ms": 20}}
    return {"deployments": [{**spec, **over}]}


def _body(i: int) -> dict[str, object]:
    return {"id": str(i), "inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 2],
                                      "data": [i, i + 0.5]}]}


async def _load(url: str, n: int, concurrency: int) -> list[tuple[int, dict[str, object]]]:
    sem = asyncio.Semaphore(concurrency)
    async with httpx.AsyncClient(timeout=60,
                                 limits=httpx.Limits(max_connections=concurrency)) as client:
        async def one(i: int) -> tuple[int, dict[str, object]]:
            async with sem:
                r = await client.post(url, json=_body(i))
                return r.status_code, r.json()
        return await asyncio.gather(*(one(i) for i in range(n)))


def test_sigkill_replica_under_load_loses_nothing(start_server) -> None:  # type: ignore[no-untyped-def]
    server: ServerProcess = start_server(_sleep_deployment()).wait_ready()
    url = server.url + "/v2/models/sleep/infer"
    # Ready means one replica is; both must be up before one is killed.
    wait_for(lambda: len(server.replica_pids("sleep")) == 2, 60, "both replicas ready")
    victims = server.replica_pids("sleep")
    killed = threading.Event()

    def killer() -> None:
        # Kill a replica once traffic flows (it is mid-batch: every batch sleeps 20 ms).
        wait_for(lambda: server.deployment("sleep")["replicas"][0]["busy"], 30, "a busy replica")
        os.kill(victims[0], signal.SIGKILL)
        killed.set()

    thread = threading.Thread(target=killer)
    thread.start()
    results = asyncio.run(_load(url, 600, 32))
    thread.join()
    assert killed.is_set()
    assert [s for s, _ in results] == [200] * 600
    for i, (_, body) in enumerate(results):  # each request got its own rows back
        assert body["id"] == str(i)
        assert body["outputs"][0]["data"] == [i, i + 0.5]  # type: ignore[index]
    # The killed replica is restarted and the deployment is whole again.
    wait_for(lambda: len(server.replica_pids("sleep")) == 2, 60, "replica restarted")
    status = server.deployment("sleep")
    assert status["replicas"][0]["restarts"] >= 1
    assert victims[0] not in server.replica_pids("sleep")
    # The victim was mid-batch (traffic keeps both replicas busy): its batch was retried.
    retried = re.search(r'^tailguard_batch_retries_total\{deployment="sleep"\} (\S+)$',
                        server.get("/metrics").text, re.MULTILINE)
    assert retried is not None and float(retried.group(1)) >= 1


def test_readiness_tells_the_truth(start_server) -> None:  # type: ignore[no-untyped-def]
    server: ServerProcess = start_server(_sleep_deployment(replicas=1)).wait_ready()
    (pid,) = server.replica_pids("sleep")
    # Replicas yield the CPU to the gateway: every thread niced (per thread on Linux, and
    # imports start threads before main runs), in the gateway's session (with autogroup
    # scheduling a session of their own would be a scheduling group of their own).
    tids = [int(t) for t in os.listdir(f"/proc/{pid}/task")] if os.path.isdir("/proc") else [pid]
    for tid in tids:
        assert os.getpriority(os.PRIO_PROCESS, tid) == min(19, os.getpriority(os.PRIO_PROCESS, 0) + 19)
        assert os.sched_getscheduler(tid) == os.SCHED_OTHER
    assert os.getsid(pid) == os.getsid(server.proc.pid)
    # The gateway runs with a short scheduler slice (Linux >= 6.12); its replicas go back to
    # the kernel's default (this test process's own may be short: the load CLI ran in it).
    if slice_ns():
        assert slice_ns(server.proc.pid) == LATENCY_SLICE_NS
        replica_slice = slice_ns(pid)
        assert replica_slice is not None and replica_slice > LATENCY_SLICE_NS
    assert os.getpgid(pid) == pid  # its own process group: the terminal's Ctrl-C misses it
    if os.path.isdir("/proc") and "OPENBLAS_NUM_THREADS" not in os.environ:
        # no per-core BLAS pool in a replica (its waits cost scheduler slices under SCHED_IDLE)
        environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        assert b"OPENBLAS_NUM_THREADS=1" in environ
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: server.get("/v2/models/sleep/ready").status_code == 503, 10,
             "model not ready after its only replica died")
    assert server.get("/v2/health/ready").status_code == 503
    assert server.get("/v2/health/live").status_code == 200
    # A request sent meanwhile waits for the restarted replica instead of failing.
    assert server.post("/v2/models/sleep/infer", json=_body(1)).status_code == 200
    wait_for(lambda: server.get("/v2/models/sleep/ready").status_code == 200, 30,
             "model ready again")


def test_deadline_gives_504(start_server) -> None:  # type: ignore[no-untyped-def]
    server: ServerProcess = start_server(
        _sleep_deployment(replicas=1, timeout_ms=150, options={"sleep_ms": 600})).wait_ready()
    resp = server.post("/v2/models/sleep/infer", json=_body(1))
    assert resp.status_code == 504
    assert "150 ms deadline" in resp.json()["error"]
    text = server.get("/metrics").text
    assert 'tailguard_requests_total{deployment="sleep",protocol="v2",status="504"} 1.0' in text


def test_sigterm_finishes_inflight_then_exits_zero(start_server) -> None:  # type: ignore[no-untyped-def]
    server: ServerProcess = start_server(
        _sleep_deployment(replicas=1, options={"sleep_ms": 1500})).wait_ready()
    (replica_pid,) = server.replica_pids("sleep")
    result: dict[str, int] = {}

    def call() -> None:
        result["status"] = server.post("/v2/models/sleep/infer", json=_body(2)).status_code

    thread = threading.Thread(target=call)
    thread.start()
    wait_for(lambda: server.deployment("sleep")["inflight_batches"] == 1, 10, "request in flight")
    assert server.stop(signal.SIGTERM) == 0
    thread.join()
    assert result["status"] == 200
    wait_for(lambda: not _alive(replica_pid), 10, "replica stopped")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_rolling_restart_keeps_serving(start_server) -> None:  # type: ignore[no-untyped-def]
    server: ServerProcess = start_server(_sleep_deployment(replicas=2)).wait_ready()
    before = set(server.replica_pids("sleep"))
    result: dict[str, list[tuple[int, dict[str, object]]]] = {}

    def traffic() -> None:
        result["r"] = asyncio.run(_load(server.url + "/v2/models/sleep/infer", 300, 8))

    thread = threading.Thread(target=traffic)
    thread.start()
    resp = server.post("/v1/deployments/sleep/restart")
    thread.join()
    assert resp.status_code == 200 and resp.json()["restarted"] == 2
    assert [s for s, _ in result["r"]] == [200] * 300
    after = set(server.replica_pids("sleep"))
    assert len(after) == 2 and not (after & before)
