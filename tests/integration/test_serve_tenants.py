"""Multi-tenant isolation through a real server: 401/403, listings, metrics, usage, 429s."""

from __future__ import annotations

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.conftest import ServerProcess

KEY_A, KEY_B, ADMIN = "key-alpha-0123456789", "key-bravo-0123456789", "key-admin-0123456789"
BODY = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 2], "data": [1, 2]}]}


def _sleep(name: str) -> dict[str, object]:
    return {"name": name, "model": "tailguard.models.sleep:Sleep", "max_wait_ms": 0,
            "options": {"sleep_ms": 1}}


CONFIG = {
    "admin_api_keys": [ADMIN],
    "tenants": [
        {"id": "alpha", "api_keys": [KEY_A], "deployments": ["a-model"],
         "rate_limit_rps": 5, "burst": 3},
        {"id": "bravo", "api_keys": [KEY_B], "deployments": ["b-model"]},
    ],
    "deployments": [_sleep("a-model"), _sleep("b-model")],
}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    srv = ServerProcess(CONFIG, tmp_path_factory.mktemp("tenants"))
    try:
        yield srv.wait_ready()
    finally:
        srv.stop()


def _h(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def test_missing_or_invalid_key_is_401_but_health_is_open(server: ServerProcess) -> None:
    assert server.post("/v2/models/a-model/infer", json=BODY).status_code == 401
    assert server.post("/v2/models/a-model/infer", json=BODY,
                       headers=_h("wrong")).status_code == 401
    for path in ("/v1/models", "/metrics", "/v1/usage", "/v2/models/a-model", "/v2"):
        assert server.get(path).status_code == 401, path
    assert server.get("/v2/health/ready").status_code == 200
    assert server.get("/v2/health/live").status_code == 200


def test_tenant_cannot_call_list_or_see_another_tenants_deployment(server: ServerProcess) -> None:
    assert server.post("/v2/models/a-model/infer", json=BODY, headers=_h(KEY_A)).status_code == 200
    resp = server.post("/v2/models/b-model/infer", json=BODY, headers=_h(KEY_A))
    assert resp.status_code == 403 and "may not use deployment 'b-model'" in resp.json()["error"]
    # OpenAI clients send the key in `api-key` or Authorization.
    listed = server.get("/v1/models", headers={"api-key": KEY_A}).json()
    assert [m["id"] for m in listed["data"]] == ["a-model"]
    assert server.get("/v2/models/b-model", headers=_h(KEY_A)).status_code == 404
    deployments = server.get("/v1/deployments", headers=_h(KEY_A)).json()["deployments"]
    assert [d["name"] for d in deployments] == ["a-model"]


def test_metrics_and_usage_never_reveal_other_tenants(server: ServerProcess) -> None:
    assert server.post("/v2/models/b-model/infer", json=BODY, headers=_h(KEY_B)).status_code == 200
    assert server.post("/v2/models/a-model/infer", json=BODY, headers=_h(KEY_A)).status_code == 200
    text = server.get("/metrics", headers=_h(KEY_A)).text
    assert "bravo" not in text and "b-model" not in text
    labels = [s.labels for f in text_string_to_metric_families(text) for s in f.samples]
    assert {"tenant": "alpha", "deployment": "a-model"} in [
        {k: v for k, v in lab.items() if k in ("tenant", "deployment")} for lab in labels]
    usage = server.get("/v1/usage", headers=_h(KEY_A)).json()["usage"]
    assert {u["tenant"] for u in usage} == {"alpha"}
    assert usage[0]["replica_seconds"] > 0 and usage[0]["rows"] >= 1
    everyone = server.get("/v1/usage", headers=_h(ADMIN)).json()["usage"]
    assert {u["tenant"] for u in everyone} == {"alpha", "bravo"}
    assert "bravo" in server.get("/metrics", headers=_h(ADMIN)).text


def test_rate_limit_gives_429_with_retry_after(server: ServerProcess) -> None:
    with httpx.Client(timeout=10) as client:
        statuses = []
        for _ in range(8):
            r = client.post(server.url + "/v2/models/a-model/infer", json=BODY, headers=_h(KEY_A))
            statuses.append(r.status_code)
            if r.status_code == 429:
                assert int(r.headers["retry-after"]) >= 1
                assert r.headers["x-tailguard-reject-reason"] == "rate_limited"
                assert "over the rate limit" in r.json()["error"]
    assert 429 in statuses and statuses[0] == 200
    usage = server.get("/v1/usage", headers=_h(KEY_A)).json()["usage"]
    assert usage[0]["throttled"] >= 1


def test_the_tenant_latency_histogram_counts_refused_requests_too(server: ServerProcess) -> None:
    # The tenant SLIs (tailguard alerts render) read one count: served and refused alike.
    with httpx.Client(timeout=10) as client:
        statuses = [client.post(server.url + "/v2/models/a-model/infer", json=BODY,
                                headers=_h(KEY_A)).status_code for _ in range(8)]
    counts = {s.labels["outcome"]: s.value
              for family in text_string_to_metric_families(
                  server.get("/metrics", headers=_h(ADMIN)).text)
              if family.name == "tailguard_tenant_request_duration_seconds"
              for s in family.samples
              if s.name.endswith("_count") and s.labels["tenant"] == "alpha"}
    assert 429 in statuses
    assert counts["shed"] >= statuses.count(429) and counts["ok"] >= statuses.count(200)
