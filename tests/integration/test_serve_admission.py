"""The P99 guard with no tenants configured: a flood at 3x capacity gets fast 429s, and what
is admitted meets the objective (issue 12: admission for every caller)."""

from __future__ import annotations

import json

from tailguard.load import LoadSpec, run_load
from tests.integration.conftest import ServerProcess

P99_MS = 100.0
# One replica, 20 ms + 2 ms a row: the cap is 7 rows (34 ms, 35% of the objective with one
# replica), so the deployment serves ~200 rows/s within its objective.
CAPACITY_RPS = 7 / 0.034


def _body() -> bytes:
    return json.dumps({"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 2],
                                   "data": [1.0, 2.0]}]}).encode()


def test_a_flood_without_tenants_is_shed_fast_and_the_admitted_meet_the_objective(
        start_server) -> None:  # type: ignore[no-untyped-def]
    server: ServerProcess = start_server({"deployments": [{
        "name": "sleep", "model": "tailguard.models.sleep:Sleep", "replicas": 1,
        "max_batch_size": 16, "max_wait_ms": 2, "p99_ms": P99_MS,
        "options": {"sleep_ms": 20, "per_row_ms": 2}}]}).wait_ready()
    spec = LoadSpec(server.url, model="sleep", rate_rps=3 * CAPACITY_RPS, duration_s=8.0,
                    warmup_s=1.0, bodies=(_body(),), slo_ms=P99_MS, seed=1)
    # 8 s, not 4: one 40 ms stall of this shared machine delays the ~20 requests in flight,
    # over 1% of 4 s of admitted requests (it failed a full-suite run at P99 115 ms; alone
    # the P99 is ~74 ms).
    result = run_load(spec)
    assert set(result.errors) == {"http_429"}, result.errors  # nothing else failed
    shed = result.errors["http_429"] / result.requests
    assert 0.4 < shed < 0.9, shed  # about two thirds must go: refused, not queued
    assert result.p99_ms is not None and result.p99_ms <= P99_MS, result.p99_ms
    assert result.ok_rps >= 0.6 * CAPACITY_RPS, result.ok_rps  # the replica kept busy
    assert result.goodput_rps is not None and result.goodput_rps >= 0.95 * result.ok_rps
    refused = result.status_latency_ms["429"]
    assert refused["p99"] is not None and refused["p99"] < 25.0, refused  # at the door
    status = server.deployment("sleep")
    assert status["batch_rows_cap"] == 7, status["service_model"]


def test_a_closed_loop_that_honours_retry_after_waits_as_told(
        start_server) -> None:  # type: ignore[no-untyped-def]
    # A tenant limited to 5 req/s: each 429 says when the next token comes (200 ms, in
    # retry-after-ms). A client that waits as told sends ~2 requests per token; one that
    # does not re-sends at once, hundreds of times a second.
    server: ServerProcess = start_server({
        "tenants": [{"id": "t", "api_keys": ["t-key"], "rate_limit_rps": 5, "burst": 1}],
        "deployments": [{"name": "sleep", "model": "tailguard.models.sleep:Sleep",
                         "options": {"sleep_ms": 1}}]}).wait_ready()
    common = {"model": "sleep", "concurrency": 1, "duration_s": 2.0, "bodies": (_body(),),
              "api_key": "t-key"}
    polite = run_load(LoadSpec(server.url, honour_retry_after=True, **common))
    assert 8 <= polite.ok <= 14, polite  # 1 burst + 5/s for 2 s
    assert polite.errors.get("http_429", 0) <= 2 * polite.ok, polite
    rude = run_load(LoadSpec(server.url, **common))
    assert rude.errors["http_429"] > 10 * polite.errors.get("http_429", 1), rude
