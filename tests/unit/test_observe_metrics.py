"""The latency histogram: an edge at every objective, and the outcome of each request."""

from __future__ import annotations

import pytest

from tailguard.observe.metrics import LATENCY_BUCKETS, ServeMetrics, latency_buckets, outcome


def test_every_objective_is_a_bucket_edge() -> None:
    buckets = latency_buckets([0.042, 0.1, 0.2375])
    assert {0.042, 0.2375} <= set(buckets) and set(LATENCY_BUCKETS) <= set(buckets)
    assert list(buckets) == sorted(buckets) and len(buckets) == len(set(buckets))


def test_the_rendered_histogram_has_the_objective_edge_and_the_outcome() -> None:
    metrics = ServeMetrics(objectives_s=[0.042])
    metrics.latency.labels("m", "v2", outcome(200)).observe(0.04)
    metrics.latency.labels("m", "v2", outcome(429)).observe(0.001)
    text = metrics.render().decode()
    assert ('tailguard_request_duration_seconds_bucket{deployment="m",le="0.042",'
            'outcome="ok",protocol="v2"} 1.0') in text
    assert 'outcome="shed"' in text


@pytest.mark.parametrize(("status", "expected"), [
    (200, "ok"), (429, "shed"), (400, "client_error"), (404, "client_error"),
    (500, "error"), (503, "error"), (504, "error")])
def test_outcome(status: int, expected: str) -> None:
    assert outcome(status) == expected
