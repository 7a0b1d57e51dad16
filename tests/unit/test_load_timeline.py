"""Per-second timeline, /metrics parsing and the self-contained HTML report."""

from __future__ import annotations

import re
from dataclasses import replace

import numpy as np
import pytest

from tailguard.load.html import render_html
from tailguard.load.metrics import ServerSeries, parse_metrics
from tailguard.load.report import CODE_NOT_SENT, CODE_TIMEOUT, Recording, summarize
from tailguard.load.timeline import timeline


def _recording() -> Recording:
    # Started at 100.0; 1 s of warm-up, window [101, 104). Second 0: 2 requests, second 1: 4,
    # second 2: 3, second 3: 1 (answered in second 4, after the window).
    intended = 100.0 + np.array([0.1, 0.6, 1.0, 1.2, 1.5, 1.9, 2.1, 2.5, 2.9, 3.9])
    latency = np.array([0.01, 0.02, 0.001, 0.002, 0.003, 0.004, 0.03, 0.5, 0.05, 0.2])
    code = np.array([200, 200, 200, 200, 429, 200, 200, CODE_TIMEOUT, 200, 200], np.int32)
    done = intended + latency
    sent = intended.copy()
    code[9] = CODE_NOT_SENT
    sent[9] = done[9] = np.nan
    return Recording(
        intended_s=intended, sent_s=sent, done_s=done, code=code, window_start_s=101.0,
        window_end_s=104.0, mode="open", offered_rps=3.0, started_s=100.0,
        tenant=np.array([0, 1, 0, 1, 0, 1, 0, 1, 0, 1], np.int16), tenant_names=("a", "b"),
    )


def test_rates_per_second() -> None:
    tl = timeline(_recording(), slo_ms=20.0)
    np.testing.assert_array_equal(tl.t_s, [0, 1, 2, 3])
    np.testing.assert_array_equal(tl.offered_rps, [2, 4, 3, 1])
    np.testing.assert_array_equal(tl.sent_rps, [2, 4, 3, 0])
    # 2.9 + 0.05 = 2.95 stays in second 2; the timeout ends at 3.0 (second 3).
    np.testing.assert_array_equal(tl.answered_rps, [2, 4, 2, 0])
    np.testing.assert_array_equal(tl.ok_rps, [2, 3, 2, 0])
    np.testing.assert_array_equal(tl.good_rps, [2, 3, 0, 0])  # 30 and 50 ms miss 20 ms
    np.testing.assert_array_equal(tl.errors_rps["http_429"], [0, 1, 0, 0])
    np.testing.assert_array_equal(tl.errors_rps["timeout"], [0, 0, 0, 1])
    np.testing.assert_array_equal(tl.errors_rps["not_sent"], [0, 0, 0, 1])  # at its intended time
    np.testing.assert_array_equal(tl.tenant_ok_rps["a"], [1, 1, 2, 0])
    assert (tl.window_start_s, tl.window_end_s) == (1.0, 4.0)


def test_latency_percentiles_per_bucket_by_intended_time() -> None:
    tl = timeline(_recording())
    np.testing.assert_allclose(tl.p50_ms, [10.0, 2.0, 30.0, np.nan])
    np.testing.assert_allclose(tl.p99_ms, [20.0, 4.0, 50.0, np.nan])


def test_bucket_size_is_checked_and_bucketing_of_half_seconds() -> None:
    with pytest.raises(ValueError, match="bucket_s"):
        timeline(_recording(), bucket_s=0.0)
    tl = timeline(_recording(), bucket_s=0.5)
    assert tl.offered_rps.size == 8
    assert tl.offered_rps.sum() * 0.5 == 10


_PAGE = """# HELP tailguard_requests_total Requests
# TYPE tailguard_requests_total counter
tailguard_requests_total{deployment="echo",protocol="v2",status="200"} 12.0
# HELP tailguard_queue_depth Rows waiting in the deployment queue
# TYPE tailguard_queue_depth gauge
tailguard_queue_depth{deployment="echo"} 3.0
tailguard_queue_depth{deployment="minilm"} 0.0
# HELP tailguard_replicas_ready Replicas ready to serve
# TYPE tailguard_replicas_ready gauge
tailguard_replicas_ready{deployment="echo"} 2.0
tailguard_replicas_ready{deployment="minilm"} 1.0
# HELP tailguard_request_duration_seconds Latency
# TYPE tailguard_request_duration_seconds histogram
tailguard_request_duration_seconds_bucket{deployment="echo",le="0.001"} 4.0
"""


def test_metrics_page_gives_replicas_and_queue_depth_per_deployment() -> None:
    assert parse_metrics(_PAGE) == {
        "tailguard_replicas_ready": {"echo": 2.0, "minilm": 1.0},
        "tailguard_queue_depth": {"echo": 3.0, "minilm": 0.0},
    }
    assert parse_metrics("") == {"tailguard_replicas_ready": {}, "tailguard_queue_depth": {}}


def _with_server(rec: Recording) -> Recording:
    server = ServerSeries(t_s=np.array([100.5, 101.5, 102.5]),
                          replicas={"echo": np.array([1.0, 2.0, np.nan])},
                          queue_depth={"echo": np.array([0.0, 5.0, np.nan])})
    return replace(rec, server=server)


def test_timeline_carries_server_samples_on_the_same_clock() -> None:
    tl = timeline(_with_server(_recording()))
    assert tl.server_t_s is not None
    np.testing.assert_allclose(tl.server_t_s, [0.5, 1.5, 2.5])
    np.testing.assert_array_equal(tl.replicas["echo"][:2], [1.0, 2.0])
    data = tl.to_dict()
    assert data["replicas"]["echo"] == [1.0, 2.0, None]
    assert data["p99_ms"][3] is None


def test_server_series_describes_itself() -> None:
    rec = _with_server(_recording())
    assert rec.server is not None
    assert rec.server.describe() == "3 scrapes, echo: replicas 1..2"
    missing = ServerSeries(np.array([]), {}, {}, error="GET /metrics answered 404")
    assert "not available (GET /metrics answered 404)" in missing.describe()
    assert summarize(replace(rec, server=missing)).server_metrics == missing.describe()


def test_html_report_is_self_contained() -> None:
    rec = _with_server(_recording())
    result = summarize(rec, slo_ms=20.0)
    page = render_html(result, timeline(rec, slo_ms=20.0), title="run <1> & more")
    assert page.startswith("<!DOCTYPE html>")
    assert "run &lt;1&gt; &amp; more" in page
    # Nothing fetched from anywhere: every src/href is an inline data: URI, no scripts.
    refs = re.findall(r"""(?:src|href)\s*=\s*["']?([^"' >]*)""", page, flags=re.I)
    assert refs and all(r.startswith("data:image/png;base64,") for r in refs)
    assert "http" not in "".join(refs)
    assert "<script" not in page.lower() and "@import" not in page and "url(" not in page
    for title in ("Rate per second", "Latency of 2xx", "Errors per second", "by tenant",
                  "Replicas ready", "Queue depth"):
        assert f'alt="{title}' in page or title in page
    assert page.count("<img ") == 6
    assert "<td>429</td>" in page  # the status table
    assert "<td>b</td>" in page  # the tenant table
