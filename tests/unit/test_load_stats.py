"""Goodput, SLO attainment, per-status latency and per-tenant figures on a hand-made Recording."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tailguard.load.report import CODE_TIMEOUT, Recording, format_text, summarize
from tailguard.load.stats import group_stats, slo_figures, status_latency

# Ten measured requests, one a second in the window [0, 10), alternating tenants a and b,
# and one more at 10.5, after the window (never measured).
CODES = [200, 200, 200, 429, 200, 503, 200, CODE_TIMEOUT, 200, 429, 200]
LATENCY_S = [0.010, 0.020, 0.060, 0.001, 0.040, 2.0, 0.045, 30.0, 0.100, 0.003, 0.001]


def _recording() -> Recording:
    intended = np.array([*range(10), 10.5], dtype=float)
    return Recording(
        intended_s=intended, sent_s=intended.copy(), done_s=intended + np.array(LATENCY_S),
        code=np.array(CODES, dtype=np.int32), window_start_s=0.0, window_end_s=10.0,
        mode="open", offered_rps=1.0,
        tenant=np.array([0, 1] * 5 + [0], dtype=np.int16), tenant_names=("a", "b"),
    )


def test_goodput_and_attainment_count_only_2xx_within_the_slo() -> None:
    result = summarize(_recording(), slo_ms=50.0)
    # 2xx within 50 ms: requests 0 (10 ms), 1 (20), 4 (40), 6 (45); not 2 (60) or 8 (100).
    assert result.slo_ms == 50.0
    assert result.goodput_rps == pytest.approx(0.4)  # 4 in a 10 s window
    assert result.slo_attainment_pct == pytest.approx(40.0)  # errors miss the SLO too
    assert result.requests == 10 and result.ok == 6


def test_without_an_slo_there_are_no_slo_figures() -> None:
    result = summarize(_recording())
    assert result.goodput_rps is None and result.slo_attainment_pct is None
    assert slo_figures(np.array([]), 0, 1.0, 10.0) == (0.0, None)


def test_each_non_2xx_status_has_its_count_and_latency() -> None:
    result = summarize(_recording(), slo_ms=50.0)
    assert result.errors == {"http_429": 2, "http_503": 1, "timeout": 1}
    assert result.status_latency_ms == {
        "429": {"count": 2, "p50": pytest.approx(1.0), "p99": pytest.approx(3.0)},
        "503": {"count": 1, "p50": pytest.approx(2000.0), "p99": pytest.approx(2000.0)},
    }
    # The fast 429s never enter the latency percentiles of the successes.
    assert result.p50_ms == pytest.approx(40.0)


def test_status_latency_ignores_successes_and_transport_errors() -> None:
    code = np.array([200, 204, CODE_TIMEOUT, 404, 404, 404], dtype=np.int32)
    latency = np.array([1.0, 1.0, 9.0, 0.003, 0.001, 0.002])
    assert status_latency(code, latency) == {
        "404": {"count": 3, "p50": pytest.approx(2.0), "p99": pytest.approx(3.0)}}


def test_figures_per_tenant() -> None:
    result = summarize(_recording(), slo_ms=50.0)
    assert list(result.tenants) == ["a", "b"]
    a, b = result.tenants["a"], result.tenants["b"]
    assert (a.requests, a.ok, a.errors) == (5, 5, {})
    assert a.goodput_rps == pytest.approx(0.3) and a.slo_attainment_pct == pytest.approx(60.0)
    assert a.p50_ms == pytest.approx(45.0)
    assert (b.requests, b.ok) == (5, 1)
    assert b.errors == {"http_429": 2, "http_503": 1, "timeout": 1}
    assert b.goodput_rps == pytest.approx(0.1) and b.slo_attainment_pct == pytest.approx(20.0)
    assert set(b.status_latency_ms) == {"429", "503"}
    # The tenants add up to the whole.
    assert a.requests + b.requests == result.requests
    assert a.ok + b.ok == result.ok


def test_group_stats_of_nothing() -> None:
    empty = np.array([])
    g = group_stats(empty, empty, np.array([], dtype=np.int32), 0.0, 1.0, slo_ms=10.0)
    assert (g.requests, g.ok, g.p99_ms, g.goodput_rps, g.slo_attainment_pct) == (
        0, 0, None, 0.0, None)


def test_json_and_text_carry_the_new_figures() -> None:
    result = summarize(_recording(), slo_ms=50.0)
    data = json.loads(result.to_json())
    assert data["status_latency_ms"]["429"]["count"] == 2
    assert data["tenants"]["b"]["errors"]["http_503"] == 1
    assert data["goodput_rps"] == pytest.approx(0.4)
    text = format_text(result)
    assert "SLO 50 ms  goodput 0.40 req/s  attainment 40.00 %" in text
    assert "http 429: 2 answers, latency ms p50 1.00  p99 3.00" in text
    lines = text.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("tenant"))
    assert lines[header + 1].split()[:3] == ["a", "5", "5"]
    assert lines[header + 2].split()[:3] == ["b", "5", "1"]
