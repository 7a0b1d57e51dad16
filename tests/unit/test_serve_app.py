"""The gateway app in-process (Starlette TestClient, serialising fake replicas)."""

from __future__ import annotations

import pytest
from starlette.testclient import TestClient

from tailguard.serve.app import Gateway
from tailguard.serve.config import DeploymentSpec, ServeConfig
from tests.unit.fake_replicas import FakeBackend

BODY = {"inputs": [{"name": "INPUT0", "datatype": "FP32", "shape": [1, 2], "data": [1, 2]}]}


def _gateway() -> Gateway:
    spec = DeploymentSpec(name="echo", model="tailguard.models.echo:Echo", max_wait_ms=0)
    return Gateway(ServeConfig(deployments=[spec]), backend=FakeBackend())


def test_infer_round_trip_in_process() -> None:
    with TestClient(_gateway()) as client:
        resp = client.post("/v2/models/echo/infer", json=BODY)
        assert resp.status_code == 200
        assert resp.json()["outputs"][0]["data"] == [1.0, 2.0]


def test_a_bug_below_the_adapter_still_answers_500_json(monkeypatch: pytest.MonkeyPatch) -> None:
    gateway = _gateway()

    async def broken(*_args: object, **_kw: object) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(gateway.deployments["echo"], "infer", broken)
    with TestClient(gateway, raise_server_exceptions=False) as client:
        resp = client.post("/v2/models/echo/infer", json=BODY)
        assert resp.status_code == 500
        assert resp.json() == {"error": "internal error: RuntimeError: boom"}
        embed = client.post("/v1/embeddings", json={"model": "echo", "input": "x"})
        assert embed.status_code == 400  # echo has no embedding output: a clean 4xx
        text = client.get("/metrics").text
        assert 'tailguard_requests_total{deployment="echo",protocol="v2",status="500"} 1.0' in text


def test_docs_page_shows_every_route_of_the_openapi_document() -> None:
    """Issue 19: a docs page for every route, offline (no script, no CDN)."""
    with TestClient(_gateway()) as client:
        page = client.get("/docs")
        doc = client.get("/openapi.json").json()
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    for path, ops in doc["paths"].items():
        for method in ops:
            assert f"<code>{method.upper()}</code></td><td><code>{path}</code>" in page.text
    assert "<script" not in page.text and "http" not in page.text.replace("/openapi.json", "")


def test_openapi_lists_every_route_the_app_serves() -> None:
    """Issue 19: clients and fuzzers need the routes; a new route must be documented."""
    from starlette.routing import Route

    from tailguard.serve.protocols import v2_routes

    gateway = _gateway()
    with TestClient(gateway) as client:
        doc = client.get("/openapi.json").json()
    assert doc["openapi"].startswith("3.1")
    unsupported = {path for path, _ in v2_routes.UNSUPPORTED}
    served = {r.path for r in gateway._router.routes if isinstance(r, Route)} - unsupported
    hot = {"/v2/models/{model}/infer", "/v2/models/{model}/versions/{version}/infer",
           "/v1/embeddings", "/v1/audio/speech"}  # raw ASGI, outside the router
    assert set(doc["paths"]) == served | hot
    infer = doc["paths"]["/v2/models/{model}/infer"]["post"]
    assert "application/octet-stream" in infer["requestBody"]["content"]


def test_compressed_body_is_refused_by_name() -> None:
    with TestClient(_gateway()) as client:
        resp = client.post("/v2/models/echo/infer", content=b"\x1f\x8b\x08\x00",
                           headers={"content-encoding": "gzip"})
    assert resp.status_code == 400
    assert "Content-Encoding 'gzip' is not supported" in resp.json()["error"]

