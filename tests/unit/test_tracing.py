"""Traces in the gateway, in-process with the SDK's in-memory exporter and serialising fake
replicas: request spans, a batch span linked to its requests, traceparent, sampling, off."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from pydantic import ValidationError

from tailguard.observe.trace_spec import TRACING_ENV, TracingSpec, build_tracing
from tailguard.observe.tracing import JsonLinesExporter, Tracing
from tailguard.serve.app import Gateway
from tailguard.serve.config import DeploymentSpec, ServeConfig
from tailguard.serve.replicas.codec import decode, encode
from tailguard.serve.replicas.messages import BatchRequest
from tests.unit.fake_replicas import FakeBackend

BODY = {"inputs": [{"name": "INPUT0", "datatype": "FP32", "shape": [1, 2], "data": [1, 2]}]}
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"


def _gateway(backend: FakeBackend, ratio: float = 1.0) -> tuple[Gateway, InMemorySpanExporter]:
    spec = DeploymentSpec(name="echo", model="tailguard.models.echo:Echo", max_wait_ms=0)
    tracing_spec = TracingSpec(enabled=True, sample_ratio=ratio, exporter="none")
    exporter = InMemorySpanExporter()
    gateway = Gateway(ServeConfig(deployments=[spec], tracing=tracing_spec), backend=backend,
                      tracing=Tracing(tracing_spec, "gateway", exporter=exporter))
    return gateway, exporter


async def _until(predicate: Callable[[], bool], timeout_s: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not predicate():
        assert loop.time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.002)


def _serve(gateway: Gateway, body: Callable[[httpx.AsyncClient], Awaitable[None]]) -> None:
    """Start the deployments (no lifespan under ASGITransport), run ``body``, stop."""
    async def main() -> None:
        for deployment in gateway.deployments.values():
            await deployment.start()
        await _until(lambda: all(d.ready_replicas for d in gateway.deployments.values()))
        transport = httpx.ASGITransport(app=gateway)
        try:
            async with httpx.AsyncClient(transport=transport, base_url="http://gw") as client:
                await body(client)
        finally:
            await gateway.stop()
    asyncio.run(main())


def _named(spans: tuple[ReadableSpan, ...], name: str) -> list[ReadableSpan]:
    return [s for s in spans if s.name == name]


def test_one_batch_span_links_every_request_in_it_and_parents_none_of_them() -> None:
    backend = FakeBackend(delay_s=0.5)  # the first batch holds the replica while 5 queue
    gateway, exporter = _gateway(backend)

    async def body(client: httpx.AsyncClient) -> None:
        first = asyncio.ensure_future(client.post("/v2/models/echo/infer", json=BODY))
        await _until(lambda: bool(backend.started and backend.started[0].batches))
        rest = [asyncio.ensure_future(client.post("/v2/models/echo/infer", json=BODY))
                for _ in range(5)]
        await _until(lambda: gateway.deployments["echo"].queued_rows == 5)
        assert not first.done()  # so the five leave the queue together, as one batch
        for resp in await asyncio.gather(first, *rest):
            assert resp.status_code == 200

    _serve(gateway, body)
    assert backend.started[0].batches == [1, 5]
    spans = exporter.get_finished_spans()
    requests = _named(spans, "v2 infer")
    batches = sorted(_named(spans, "batch"), key=lambda s: len(s.links))
    assert len(requests) == 6 and len(batches) == 2
    assert len({r.context.trace_id for r in requests}) == 6  # one trace per request
    big = batches[1]
    assert big.parent is None  # its own trace, not the first request's (bentoml#2989)
    assert big.context.trace_id not in {r.context.trace_id for r in requests}
    linked = {(link.context.trace_id, link.context.span_id) for link in big.links}
    assert len(linked) == 5
    assert linked <= {(r.context.trace_id, r.context.span_id) for r in requests}
    assert big.attributes is not None and big.attributes["tailguard.rows"] == 5
    # the replica got the batch span's traceparent in its batch message
    ctx = big.context
    carried = backend.started[0].traceparents[1]
    assert carried is not None and carried.startswith(f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-")
    assert int(carried[-2:], 16) & 1  # sampled (the SDK also sets level 2's random-id bit)
    # every request: attributes, admission and queue-wait events, a link back to its batch
    by_id = {s.context.span_id: s for s in spans}
    for request in requests:
        attrs = request.attributes or {}
        assert attrs["tailguard.deployment"] == "echo"
        assert attrs["tailguard.protocol"] == "v2"
        assert attrs["tailguard.tenant"] == "anonymous"
        assert attrs["tailguard.rows"] == 1
        assert attrs["http.response.status_code"] == 200
        assert not [s for s in spans if s.parent is not None
                    and s.parent.span_id == request.context.span_id]
        assert [e.name for e in request.events] == ["admitted", "dequeued"]
        dequeued = request.events[1].attributes or {}
        assert float(dequeued["tailguard.queue_wait_ms"]) >= 0  # type: ignore[arg-type]
        (link,) = request.links
        batch = by_id[link.context.span_id]
        assert batch.name == "batch"
        assert (batch.attributes or {})["tailguard.batch_id"] == dequeued["tailguard.batch_id"]
    # the five queued behind the first batch, which ran 0.5 s: their wait shows
    waits = [float((r.events[1].attributes or {})["tailguard.queue_wait_ms"])  # type: ignore[arg-type]
             for r in requests]
    assert max(waits) > 0


def test_an_incoming_traceparent_is_the_request_span_parent() -> None:
    backend = FakeBackend()
    gateway, exporter = _gateway(backend, ratio=0.0)  # parent-based: the header decides

    async def body(client: httpx.AsyncClient) -> None:
        sampled = {"traceparent": f"00-{TRACE_ID}-{PARENT_ID}-01"}
        assert (await client.post("/v2/models/echo/infer", json=BODY,
                                  headers=sampled)).status_code == 200
        unsampled = {"traceparent": f"00-{TRACE_ID}-{PARENT_ID}-00"}
        assert (await client.post("/v2/models/echo/infer", json=BODY,
                                  headers=unsampled)).status_code == 200

    _serve(gateway, body)
    spans = exporter.get_finished_spans()
    (request,) = _named(spans, "v2 infer")  # the unsampled one made no span
    assert f"{request.context.trace_id:032x}" == TRACE_ID
    assert request.parent is not None and f"{request.parent.span_id:016x}" == PARENT_ID
    assert request.parent.is_remote
    assert backend.started[0].traceparents[1] is None  # the unsampled batch carries none


def test_sampling_ratio_zero_makes_no_span_and_sends_no_traceparent() -> None:
    backend = FakeBackend()
    gateway, exporter = _gateway(backend, ratio=0.0)

    async def body(client: httpx.AsyncClient) -> None:
        for _ in range(5):
            assert (await client.post("/v2/models/echo/infer", json=BODY)).status_code == 200
        resp = await client.post("/v1/embeddings", json={"model": "echo", "input": "x"})
        assert resp.status_code == 400

    _serve(gateway, body)
    assert exporter.get_finished_spans() == ()
    assert backend.started[0].traceparents == [None] * 5


def test_errors_are_on_the_request_span_and_4xx_is_not_a_server_error() -> None:
    backend = FakeBackend()
    gateway, exporter = _gateway(backend)

    async def body(client: httpx.AsyncClient) -> None:
        resp = await client.post("/v1/embeddings", json={"model": "echo", "input": "x"})
        assert resp.status_code == 400
        assert (await client.post("/v2/models/nope/infer", json=BODY)).status_code == 404

    _serve(gateway, body)
    spans = exporter.get_finished_spans()
    (openai,) = _named(spans, "openai infer")
    assert (openai.attributes or {})["http.response.status_code"] == 400
    assert openai.status.is_unset  # the client's mistake
    (v2,) = _named(spans, "v2 infer")
    assert (v2.attributes or {})["tailguard.deployment"] == "_unknown"


def test_tracing_off_builds_nothing_and_never_imports_opentelemetry(tmp_path: Path) -> None:
    backend = FakeBackend()
    spec = DeploymentSpec(name="echo", model="tailguard.models.echo:Echo", max_wait_ms=0)
    gateway = Gateway(ServeConfig(deployments=[spec]), backend=backend)
    assert gateway.tracing is None

    async def body(client: httpx.AsyncClient) -> None:
        for _ in range(3):
            assert (await client.post("/v2/models/echo/infer", json=BODY,
                                      headers={"traceparent": f"00-{TRACE_ID}-{PARENT_ID}-01"}
                                      )).status_code == 200

    _serve(gateway, body)
    assert backend.started[0].traceparents == [None] * 3
    # A fresh interpreter serving with the default config loads no OpenTelemetry module.
    code = ("import sys; from tailguard.serve.app import Gateway; "
            "from tailguard.serve.config import default_config; "
            "from tailguard.serve.replicas import worker; Gateway(default_config()); "
            "print(sorted(m for m in sys.modules if m.startswith('opentelemetry')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, check=True).stdout
    assert out.strip() == "[]"


def test_the_batch_message_carries_the_traceparent_through_the_codec() -> None:
    tp = f"00-{TRACE_ID}-{PARENT_ID}-01"
    for sent in (BatchRequest(3, {"x": np.zeros((2, 1))}, tp),
                 BatchRequest(4, {"x": np.zeros((2, 1))})):
        frame = b"".join(bytes(b) for b in encode(sent))
        got = decode(memoryview(frame)[4:])
        assert isinstance(got, BatchRequest) and got.traceparent == sent.traceparent


def test_a_replica_span_is_the_child_of_a_carried_traceparent() -> None:
    exporter = InMemorySpanExporter()
    tracing = Tracing(TracingSpec(enabled=True, exporter="none"), "replica", exporter=exporter)
    parent = tracing.remote_parent(f"00-{TRACE_ID}-{PARENT_ID}-01")
    tracing.start("predict", parent).end()
    assert tracing.remote_parent("garbage") is None and tracing.remote_parent(None) is None
    (span,) = exporter.get_finished_spans()
    assert f"{span.context.trace_id:032x}" == TRACE_ID
    assert span.parent is not None and f"{span.parent.span_id:016x}" == PARENT_ID
    assert span.resource.attributes["service.name"] == "tailguard-replica"


@pytest.mark.parametrize(("fields", "message"), [
    ({"exporter": "jsonl"}, "needs `jsonl_path`"),
    ({"exporter": "console", "otlp_endpoint": "http://x:4318"}, "set `exporter: otlp`"),
    ({"sample_ratio": 1.5}, "less than or equal to 1"),
    ({"exporter": "zipkin"}, "'otlp', 'console', 'jsonl' or 'none'"),
])
def test_tracing_spec_refuses_what_cannot_work(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        TracingSpec.model_validate({"enabled": True, **fields})


def test_spec_travels_to_child_processes_only_when_on(tmp_path: Path) -> None:
    assert TracingSpec().env() == {}
    assert build_tracing(TracingSpec(), "gateway") is None
    on = TracingSpec(enabled=True, exporter="jsonl", jsonl_path=tmp_path / "s.jsonl")
    assert TracingSpec.from_env(on.env()) == on
    assert TracingSpec.from_env({}) is None and TRACING_ENV in on.env()


def test_otlp_exporter_builds_with_the_configured_endpoint() -> None:
    tracing = build_tracing(TracingSpec(enabled=True, otlp_endpoint="http://127.0.0.1:9/v1/traces"),
                            "gateway")
    assert tracing is not None
    tracing.provider.shutdown()  # nothing was sent: no collector needed


def test_jsonl_exporter_appends_one_json_line_per_span(tmp_path: Path) -> None:
    path = tmp_path / "spans.jsonl"
    tracing = Tracing(TracingSpec(enabled=True, exporter="jsonl", jsonl_path=path), "train")
    root = tracing.start("train")
    tracing.start("attempt", root).end()
    root.end()
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [s["name"] for s in lines] == ["attempt", "train"]
    assert lines[0]["parent_id"] == lines[1]["context"]["span_id"]
    JsonLinesExporter(path).shutdown()


def test_the_ray_actor_runs_a_traced_batch_under_the_carried_traceparent() -> None:
    from tailguard.serve.loader import instantiate
    from tailguard.serve.replicas.messages import BatchResult
    from tailguard.serve.replicas.ray_actor import ReplicaActor

    spec = DeploymentSpec(name="echo", model="tailguard.models.echo:Echo")
    actor = ReplicaActor(spec.model_dump_json())  # the class Ray wraps, called directly
    model = instantiate(spec)
    model.setup()
    exporter = InMemorySpanExporter()
    actor._model = model
    actor._tracing = Tracing(TracingSpec(enabled=True, exporter="none"), "replica",
                             exporter=exporter)
    rows = {"INPUT0": np.zeros((3, 2), dtype=np.float32)}
    assert isinstance(actor.infer(1, rows), BatchResult)  # untraced: no span
    result = actor.infer(2, rows, f"00-{TRACE_ID}-{PARENT_ID}-01")
    assert isinstance(result, BatchResult)
    (span,) = exporter.get_finished_spans()
    assert span.name == "predict" and f"{span.context.trace_id:032x}" == TRACE_ID
    assert span.parent is not None and f"{span.parent.span_id:016x}" == PARENT_ID
    assert (span.attributes or {})["tailguard.rows"] == 3
