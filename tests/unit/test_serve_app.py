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
