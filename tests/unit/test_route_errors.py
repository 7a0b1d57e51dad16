"""The Starlette routes' errors: one handler answers every ServeError as the hot routes do.

In-process (Starlette TestClient) and without the lifespan: no route here needs a replica.
"""

from __future__ import annotations

import logging

import pytest
from starlette.testclient import TestClient

from tailguard.serve.app import Gateway
from tailguard.serve.config import DeploymentSpec, ServeConfig
from tailguard.serve.errors import TooManyRequests
from tests.unit.fake_replicas import FakeBackend

TENANT = {"Authorization": "Bearer t-key"}
ADMIN = {"Authorization": "Bearer root-key"}


def _gateway(tenants: bool = False) -> Gateway:
    deployments = [DeploymentSpec(name="echo", model="tailguard.models.echo:Echo")]
    if not tenants:
        return Gateway(ServeConfig(deployments=deployments), backend=FakeBackend())
    config = ServeConfig(
        admin_api_keys=("root-key",),
        tenants=[{"id": "t", "api_keys": ["t-key"]}],
        deployments=deployments,
    )
    return Gateway(config, backend=FakeBackend())


@pytest.mark.parametrize(("path", "error"), [
    ("/v2/models/nope", "unknown model 'nope'; served models: ['echo']"),
    ("/v2/models/nope/ready", "unknown model 'nope'; served models: ['echo']"),
    ("/v2/models/echo/versions/9",
     "model 'echo' has no version '9'; served version: '1'"),
])
def test_unknown_model_or_version_is_404_json(path: str, error: str) -> None:
    resp = TestClient(_gateway()).get(path)
    assert resp.status_code == 404
    assert resp.headers["content-type"] == "application/json"
    assert resp.json() == {"error": error}
    assert "retry-after" not in resp.headers


@pytest.mark.parametrize("path", ["/v1/models", "/metrics", "/v2", "/v1/usage",
                                  "/v1/deployments", "/v2/models/echo"])
def test_a_bad_or_missing_key_is_401_json(path: str) -> None:
    client = TestClient(_gateway(tenants=True))
    bad = client.get(path, headers={"Authorization": "Bearer wrong"})
    assert bad.status_code == 401 and bad.json() == {"error": "invalid API key"}
    missing = client.get(path)
    assert missing.status_code == 401
    assert missing.json() == {"error": "missing API key: send 'Authorization: Bearer KEY'"}
    assert client.get(path, headers=TENANT).status_code == 200


def test_restart_by_a_tenant_is_403_and_an_admin_passes_the_check() -> None:
    client = TestClient(_gateway(tenants=True))
    resp = client.post("/v1/deployments/echo/restart", headers=TENANT)
    assert resp.status_code == 403
    assert resp.json() == {"error": "restarting replicas needs an admin key"}
    assert client.post("/v1/deployments/echo/restart").status_code == 401
    unknown = client.post("/v1/deployments/nope/restart", headers=ADMIN)
    assert unknown.status_code == 404 and "unknown model 'nope'" in unknown.json()["error"]


def test_a_refusal_carries_the_hot_routes_retry_headers(monkeypatch: pytest.MonkeyPatch) -> None:
    gateway = _gateway()

    def refuse(_headers: object) -> None:
        raise TooManyRequests("slow down", retry_after_s=1.2, reason="rate_limited")

    monkeypatch.setattr(gateway.gate, "authenticate", refuse)
    resp = TestClient(gateway).get("/v1/models")
    assert resp.status_code == 429 and resp.json() == {"error": "slow down"}
    assert resp.headers["retry-after"] == "2"
    assert resp.headers["x-tailguard-reject-reason"] == "rate_limited"


def test_a_bug_in_a_route_is_a_logged_500_json(monkeypatch: pytest.MonkeyPatch,
                                               caplog: pytest.LogCaptureFixture) -> None:
    gateway = _gateway()

    def broken(**_kw: object) -> bytes:
        raise RuntimeError("boom")

    monkeypatch.setattr(gateway.metrics, "render", broken)
    with caplog.at_level(logging.ERROR, logger="tailguard.serve"):
        resp = TestClient(gateway, raise_server_exceptions=False).get("/metrics")
    assert resp.status_code == 500
    assert resp.json() == {"error": "internal error: RuntimeError: boom"}
    [record] = [r for r in caplog.records if r.name == "tailguard.serve"]
    assert record.getMessage() == "internal error serving /metrics"
    assert record.exc_info is not None and record.exc_info[1] is not None


def test_an_unknown_route_or_method_is_still_json() -> None:
    client = TestClient(_gateway())
    resp = client.get("/nowhere")
    assert resp.status_code == 404 and resp.json() == {"error": "Not Found"}
    wrong = client.get("/v1/deployments/echo/restart")
    assert wrong.status_code == 405 and wrong.json() == {"error": "Method Not Allowed"}
