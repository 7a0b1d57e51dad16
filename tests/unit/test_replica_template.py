"""The replica template: forked replicas serve like spawned ones, die visibly (pidfd), and a
template whose imports start a thread is refused in favour of fresh interpreters."""

from __future__ import annotations

import asyncio
import os
import signal

import numpy as np
import pytest

from tailguard.serve.config import DeploymentSpec
from tailguard.serve.replicas.backend import ReplicaDied
from tailguard.serve.replicas.forked import TemplateClient, template_enabled
from tailguard.serve.replicas.local import LocalBackend

pytestmark = pytest.mark.skipif(not template_enabled(), reason="needs Linux pidfds")

ECHO = DeploymentSpec(name="echo", model="tailguard.models.echo:Echo")
BATCH = {"INPUT0": np.ones((2, 3), dtype=np.float32)}


def test_a_forked_replica_serves_and_its_death_is_seen() -> None:
    async def run() -> None:
        backend = LocalBackend()
        backend.warm([ECHO])
        try:
            assert await backend.template([]) is not None
            replica = backend.create(ECHO, 0)
            await replica.start()
            assert replica.pid is not None and replica.pid != os.getpid()
            assert os.getpgid(replica.pid) == replica.pid  # its own group, as spawned ones
            reply = await replica.infer(1, BATCH)
            np.testing.assert_array_equal(reply.tensors["OUTPUT0"], BATCH["INPUT0"])  # type: ignore[union-attr]
            os.kill(replica.pid, signal.SIGKILL)
            await asyncio.wait_for(replica.wait_closed(), 10)
            assert not replica.alive()
            with pytest.raises(ReplicaDied):
                await replica.infer(2, BATCH)
            again = backend.create(ECHO, 1)  # the template outlives its replicas
            await again.start()
            await again.stop(timeout_s=10)
            assert not again.alive()
        finally:
            await backend.close()

    asyncio.run(run())


def test_a_template_with_a_thread_after_its_imports_is_not_used() -> None:
    async def run() -> None:
        client = TemplateClient()
        # Importing onnxruntime starts a thread: forking from there would be unsafe.
        usable = await client.start(["onnxruntime"], dict(os.environ), timeout_s=120)
        assert not usable and client.why is not None and "threads" in client.why
        await client.close()

    pytest.importorskip("onnxruntime")
    asyncio.run(run())


def test_disabled_template_spawns_fresh_interpreters(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TAILGUARD_REPLICA_TEMPLATE", "0")

    async def run() -> None:
        backend = LocalBackend()
        backend.warm([ECHO])
        assert await backend.template([ECHO]) is None
        replica = backend.create(ECHO, 0)
        await replica.start()
        reply = await replica.infer(1, BATCH)
        assert reply.tensors["OUTPUT0"].shape == (2, 3)  # type: ignore[union-attr]
        await replica.stop(timeout_s=10)
        await backend.close()

    asyncio.run(run())
