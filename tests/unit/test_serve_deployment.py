"""The deployment loop against an in-process backend: batching, retries, deadlines, drain."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from tailguard.observe.metrics import DeploymentMetrics, ServeMetrics
from tailguard.serve.config import DeploymentSpec
from tailguard.serve.deployment import Deployment
from tailguard.serve.errors import BadRequest, DeadlineExceeded, Unavailable
from tailguard.serve.loader import instantiate, signature
from tests.unit.fake_replicas import FakeBackend


def _deployment(backend: FakeBackend, **over: object) -> Deployment:
    spec = DeploymentSpec.model_validate({
        "name": "sleep", "model": "tailguard.models.sleep:Sleep", "max_batch_size": 8,
        "max_wait_ms": 0, "options": {"sleep_ms": 0}, **over})
    return Deployment(spec, signature(instantiate(spec)), backend,
                      DeploymentMetrics(ServeMetrics(), spec.name))


def _rows(values: list[float]) -> dict[str, np.ndarray]:
    return {"x": np.array(values, dtype=np.float32).reshape(-1, 1)}


async def _until(predicate, timeout_s: float = 5.0) -> None:  # type: ignore[no-untyped-def]
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not predicate():
        assert loop.time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.001)


def test_rows_of_many_requests_share_batches_and_return_to_their_owner() -> None:
    async def main() -> None:
        backend = FakeBackend(delay_s=0.01)
        dep = _deployment(backend, max_batch_size=8)
        await dep.start()
        await _until(lambda: dep.ready_replicas == 1)
        results = await asyncio.gather(*(dep.infer(_rows([i, i]), 2, ((1,),)) for i in range(20)))
        for i, out in enumerate(results):
            np.testing.assert_array_equal(out["y"].ravel(), [i, i])
        batches = backend.started[0].batches
        assert sum(batches) == 40 and max(batches) <= 8 and len(batches) < 20
        await dep.stop(1.0)
    asyncio.run(main())


def test_max_wait_collects_rows_when_queue_is_short() -> None:
    async def main() -> None:
        backend = FakeBackend()
        dep = _deployment(backend, max_wait_ms=50)
        await dep.start()
        await _until(lambda: dep.ready_replicas == 1)
        first = asyncio.ensure_future(dep.infer(_rows([1]), 1, ((1,),)))
        await asyncio.sleep(0.01)  # arrives within the first request's wait window
        second = asyncio.ensure_future(dep.infer(_rows([2]), 1, ((1,),)))
        await asyncio.gather(first, second)
        assert backend.started[0].batches == [2]
        await dep.stop(1.0)
    asyncio.run(main())


def test_replica_death_mid_batch_retries_once_on_restarted_replica() -> None:
    async def main() -> None:
        backend = FakeBackend(delay_s=0.05)
        dep = _deployment(backend)
        await dep.start()
        await _until(lambda: dep.ready_replicas == 1)
        call = asyncio.ensure_future(dep.infer(_rows([7]), 1, ((1,),)))
        await _until(lambda: bool(backend.started[0].batches))
        backend.started[0].kill()
        out = await call
        assert out["y"].ravel().tolist() == [7.0]
        assert len(backend.started) == 2  # restarted, and the retry ran there
        await dep.stop(1.0)
    asyncio.run(main())


def test_second_death_fails_request_with_503() -> None:
    async def main() -> None:
        backend = FakeBackend(delay_s=0.05)
        dep = _deployment(backend)
        await dep.start()
        await _until(lambda: dep.ready_replicas == 1)
        call = asyncio.ensure_future(dep.infer(_rows([7]), 1, ((1,),)))
        for n in (1, 2):
            await _until(lambda n=n: len(backend.started) == n and backend.started[-1].batches)
            backend.started[-1].kill()
        with pytest.raises(Unavailable, match="twice"):
            await call
        await dep.stop(1.0)
    asyncio.run(main())


def test_deadline_expires_queued_request() -> None:
    async def main() -> None:
        dep = _deployment(FakeBackend(delay_s=0.2))
        await dep.start()
        await _until(lambda: dep.ready_replicas == 1)
        slow = asyncio.ensure_future(dep.infer(_rows([1]), 1, ((1,),)))
        with pytest.raises(DeadlineExceeded, match="50 ms deadline"):
            await dep.infer(_rows([2]), 1, ((1,),), timeout_s=0.05)
        assert dep.queued_rows == 0
        await slow
        await dep.stop(1.0)
    asyncio.run(main())


def test_bad_row_fails_alone_and_batch_mates_succeed() -> None:
    async def main() -> None:
        backend = FakeBackend(delay_s=0.02)
        dep = _deployment(backend, max_wait_ms=30)
        await dep.start()
        await _until(lambda: dep.ready_replicas == 1)
        calls = [asyncio.ensure_future(dep.infer(_rows([v]), 1, ((1,),))) for v in (1, -1, 3)]
        results = await asyncio.gather(*calls, return_exceptions=True)
        assert isinstance(results[1], BadRequest)
        assert [r["y"].item() for r in (results[0], results[2])] == [1.0, 3.0]  # type: ignore[index]
        await dep.stop(1.0)
    asyncio.run(main())


def test_setup_failure_answers_503_instead_of_hanging() -> None:
    async def main() -> None:
        dep = _deployment(FakeBackend(fail_setup=True))
        await dep.start()
        await _until(lambda: dep.status()["replicas"][0]["last_error"] is not None)  # type: ignore[index]
        with pytest.raises(Unavailable, match="setup failed on purpose"):
            await dep.infer(_rows([1]), 1, ((1,),))
        await dep.stop(0.1)
    asyncio.run(main())


def test_stop_drains_queue_then_refuses() -> None:
    async def main() -> None:
        dep = _deployment(FakeBackend(delay_s=0.02), max_batch_size=1)
        await dep.start()
        await _until(lambda: dep.ready_replicas == 1)
        calls = [asyncio.ensure_future(dep.infer(_rows([i]), 1, ((1,),))) for i in range(5)]
        await asyncio.sleep(0)
        await dep.stop(5.0)
        assert [c.result()["y"].item() for c in calls] == [0, 1, 2, 3, 4]
        with pytest.raises(Unavailable, match="shutting down"):
            await dep.infer(_rows([1]), 1, ((1,),))
    asyncio.run(main())


def test_scale_up_and_drain_down_without_failing_a_request() -> None:
    async def main() -> None:
        backend = FakeBackend(delay_s=0.01)
        dep = _deployment(backend, max_batch_size=2)
        await dep.start()
        await _until(lambda: dep.ready_replicas == 1)
        dep.scale_to(3)
        assert dep.replica_counts()["desired"] == 3
        await _until(lambda: dep.ready_replicas == 3)
        calls = [asyncio.ensure_future(dep.infer(_rows([i]), 1, ((1,),))) for i in range(60)]
        await _until(lambda: sum(r.busy for r in dep.slots) >= 2)
        dep.scale_to(1)  # drains two replicas, busy ones finish their batch first
        assert dep.replica_counts()["draining"] == 2
        results = await asyncio.gather(*calls)
        assert [r["y"].item() for r in results] == list(range(60))
        await _until(lambda: dep.replica_counts() ==
                     {"desired": 1, "ready": 1, "starting": 0, "draining": 0})
        await dep.stop(1.0)
    asyncio.run(main())


def test_scale_to_zero_cold_starts_on_first_request() -> None:
    async def main() -> None:
        dep = _deployment(FakeBackend())
        await dep.start()
        await _until(lambda: dep.ready_replicas == 1)
        dep.scale_to(0)
        await _until(lambda: dep.replica_counts()["draining"] == 0 and not dep.slots)
        assert dep.is_ready  # scaled to zero on purpose is still "ready"
        with pytest.raises(Unavailable, match="scaled to zero"):
            await dep.infer(_rows([1]), 1, ((1,),))  # no autoscaler hook: 503 at once
        dep.on_cold = lambda: dep.scale_to(1)
        out = await dep.infer(_rows([5]), 1, ((1,),))
        assert out["y"].item() == 5.0 and dep.ready_replicas == 1
        await dep.stop(1.0)
    asyncio.run(main())


def test_hung_replica_is_killed_and_restarted(monkeypatch: pytest.MonkeyPatch) -> None:
    import tailguard.serve.deployment.batcher as batcher_module

    monkeypatch.setattr(batcher_module, "HANG_GRACE_S", 0.05)

    async def main() -> None:
        backend = FakeBackend(delay_s=30.0)  # "hangs": far past any deadline
        dep = _deployment(backend)
        await dep.start()
        await _until(lambda: dep.ready_replicas == 1)
        with pytest.raises(DeadlineExceeded):
            await dep.infer(_rows([1]), 1, ((1,),), timeout_s=0.05)
        await _until(lambda: len(backend.started) == 2)  # killed, then restarted
        assert not backend.started[0].alive()
        backend.delay_s = 0.0
        await _until(lambda: dep.ready_replicas == 1)
        assert (await dep.infer(_rows([2]), 1, ((1,),)))["y"].item() == 2.0
        await dep.stop(1.0)
    asyncio.run(main())


def test_rolling_restart_restarts_every_replica_even_one_still_starting() -> None:
    async def main() -> None:
        backend = FakeBackend()
        backend.hold_start[1] = asyncio.Event()  # the second replica is slow to start
        dep = _deployment(backend, replicas=2)
        await dep.start()
        await _until(lambda: dep.ready_replicas == 1)  # "ready" as the gateway sees it
        restart = asyncio.ensure_future(dep.restart(timeout_s=5.0))
        await _until(lambda: len(backend.started) == 2)  # the first one is back
        assert not restart.done()  # waiting for the starting one, not skipping it
        backend.hold_start[1].set()
        assert await restart == 2
        assert len(backend.started) == 4  # both started, both started afresh
        assert all(s.restarts == 1 for s in dep.slots) and dep.ready_replicas == 2
        await dep.stop(1.0)
    asyncio.run(main())


def test_request_larger_than_the_queue_is_413_naming_the_limit() -> None:
    """Issue 19: it used to be a 503 "queue is full (0 rows waiting)", retried forever."""
    from tailguard.serve.errors import PayloadTooLarge

    async def main() -> None:
        dep = _deployment(FakeBackend(), max_queue_rows=4, max_batch_size=4)
        await dep.start()
        await _until(lambda: dep.ready_replicas == 1)
        with pytest.raises(PayloadTooLarge, match=r"5 rows exceeds .*max_queue_rows \(4\)"):
            await dep.infer(_rows([1, 2, 3, 4, 5]), 5, ((1,),))
        out = await dep.infer(_rows([1, 2, 3, 4]), 4, ((1,),))  # at the limit still fits
        assert out["y"].shape[0] == 4
        await dep.stop(1.0)
    asyncio.run(main())
