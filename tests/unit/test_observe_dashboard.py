"""The live page's numbers: histogram_quantile as PromQL computes it, windowed rates, scoping."""

from __future__ import annotations

import math

import pytest
from prometheus_client import CollectorRegistry

from tailguard.observe.dashboard import (
    Gauges,
    Snapshot,
    SnapshotRing,
    asset,
    histogram_quantile,
    panels,
    take_snapshot,
)
from tailguard.observe.metrics import ServeMetrics
from tailguard.observe.usage import UsageMeter

INF = math.inf


@pytest.mark.parametrize(("q", "expected"), [
    (0.5, 0.15),    # rank 50 of 100: halfway into (0.1, 0.2], which holds ranks 11..90
    (0.1, 0.1),     # exactly the count at the 0.1 edge
    (0.95, 0.75),   # rank 95: halfway into (0.5, 1.0], holding ranks 91..100
    (0.999, 0.995),
])
def test_quantile_interpolates_within_the_bucket_like_promql(q: float, expected: float) -> None:
    new = ((0.1, 10.0), (0.2, 90.0), (0.5, 90.0), (1.0, 100.0), (INF, 100.0))
    assert histogram_quantile(q, (), new) == pytest.approx(expected)


def test_quantile_is_of_the_window_and_caps_at_the_last_finite_edge() -> None:
    old = ((0.1, 100.0), (1.0, 100.0), (INF, 100.0))
    new = ((0.1, 100.0), (1.0, 100.0), (INF, 110.0))  # all ten new ones beyond 1 s
    assert histogram_quantile(0.5, old, new) == 1.0
    assert histogram_quantile(0.5, new, new) is None  # nothing observed in the window


def test_ring_spans_the_window_and_keeps_no_more() -> None:
    ring = SnapshotRing(window_s=5.0, min_interval_s=0.5)
    assert ring.due(0.0) and ring.oldest is None
    for t in range(12):
        ring.observe(Snapshot(float(t)))
    assert ring.newest is not None and ring.newest.t == 11.0
    assert ring.oldest is not None and ring.oldest.t == 6.0  # 11 - 5: the whole window
    assert not ring.due(11.2) and ring.due(11.5)


def _registry() -> tuple[ServeMetrics, UsageMeter]:
    metrics = ServeMetrics(objectives_s=[0.05])
    return metrics, UsageMeter(metrics.registry)


def _serve(metrics: ServeMetrics, usage: UsageMeter, tenant: str, deployment: str,
           status: int, latency_s: float) -> None:
    from tailguard.observe.metrics import outcome

    metrics.requests.labels(deployment, "v2", str(status)).inc()
    metrics.latency.labels(deployment, "v2", outcome(status)).observe(latency_s)
    usage.request(tenant, deployment, status, 1)


def test_rates_quantiles_and_tenant_scope_from_a_real_registry() -> None:
    metrics, usage = _registry()
    gauges = [Gauges("a", 3, 1, 2), Gauges("b", 0, 1, 1)]
    old = take_snapshot(metrics.registry, 10.0)
    for _ in range(18):
        _serve(metrics, usage, "alpha", "a", 200, 0.004)
    # a fast shed, refused at admission: in the rejections, not the tenant's requests
    metrics.requests.labels("a", "v2", "429").inc()
    metrics.latency.labels("a", "v2", "shed").observe(0.0001)
    usage.rejected("alpha", "a", "shed")
    _serve(metrics, usage, "alpha", "a", 500, 0.001)
    for _ in range(10):
        _serve(metrics, usage, "bravo", "b", 200, 0.2)
    metrics.batch_size.labels("a").observe(4)
    metrics.batch_size.labels("a").observe(8)
    new = take_snapshot(metrics.registry, 12.0)

    everything = panels(old, new, gauges, {"a": 0.05, "b": None})
    a, b = everything["deployments"]  # type: ignore[misc]
    assert a["requests_per_s"] == pytest.approx(10.0)  # 20 requests over 2 s
    assert a["errors_per_s"] == pytest.approx(0.5) and a["shed_per_s"] == pytest.approx(0.5)
    assert 0.002 < a["p50_s"] <= 0.005  # the 18 successes all sit in (2 ms, 5 ms]
    assert a["batch_rows_mean"] == 6.0
    assert (a["queue_rows"], a["replicas_ready"], a["replicas_desired"]) == (3, 1, 2)
    assert a["p99_objective_s"] == 0.05 and b["p99_s"] > 0.15
    assert {t["tenant"] for t in everything["tenants"]} == {"alpha", "bravo"}  # type: ignore[attr-defined]

    alpha = panels(old, new, gauges, {}, tenant="alpha", deployments={"a"})
    assert [d["name"] for d in alpha["deployments"]] == ["a"]  # type: ignore[attr-defined]
    assert alpha["scope"] == "alpha"
    assert [(t["tenant"], t["deployment"], t["requests_per_s"])  # type: ignore[attr-defined]
            for t in alpha["tenants"]] == [("alpha", "a", 10.0)]  # type: ignore[attr-defined]
    assert alpha["tenants"][0]["shed_per_s"] == 0.5  # type: ignore[index]
    assert alpha["tenants"][0]["errors_per_s"] == 0.5  # type: ignore[index]


def test_first_poll_has_state_but_no_rates() -> None:
    data = panels(None, take_snapshot(CollectorRegistry(), 1.0), [Gauges("a", 0, 1, 1)], {})
    row = data["deployments"][0]  # type: ignore[index]
    assert row["requests_per_s"] is None and row["p99_s"] is None and row["replicas_ready"] == 1
    assert data["window_s"] is None


def test_assets_are_an_allowlist_and_are_packaged() -> None:
    html = asset("dashboard.html")
    assert html is not None and b"uPlot.iife.min.js" in html[0] and html[1].startswith("text/html")
    assert asset("uPlot.iife.min.js") is not None and asset("uPlot.min.css") is not None
    assert asset("../metrics.py") is None and asset("uPlot.LICENSE") is None


def test_open_gateway_serves_page_and_data_to_anyone_like_metrics() -> None:
    from starlette.testclient import TestClient

    from tailguard.serve.app import Gateway
    from tailguard.serve.config import DeploymentSpec, ServeConfig
    from tests.unit.fake_replicas import FakeBackend

    clock = [100.0]
    spec = DeploymentSpec(name="echo", model="tailguard.models.echo:Echo", max_wait_ms=0)
    body = {"inputs": [{"name": "INPUT0", "datatype": "FP32", "shape": [1, 2], "data": [1, 2]}]}
    gateway = Gateway(ServeConfig(deployments=[spec]), backend=FakeBackend())
    gateway.snapshots.clock = lambda: clock[0]
    with TestClient(gateway) as client:
        page = client.get("/dashboard")
        assert page.status_code == 200 and "uPlot" in page.text
        assert client.get("/dashboard/static/uPlot.min.css").status_code == 200
        first = client.get("/v1/dashboard/data").json()  # no key: an open server, all of it
        assert first["scope"] == "all" and first["deployments"][0]["requests_per_s"] is None
        for _ in range(4):
            assert client.post("/v2/models/echo/infer", json=body).status_code == 200
        clock[0] += 2.0
        row = client.get("/v1/dashboard/data").json()["deployments"][0]
        assert row["name"] == "echo" and row["requests_per_s"] == pytest.approx(2.0)
        assert row["p50_s"] is not None and row["batch_rows_mean"] >= 1
