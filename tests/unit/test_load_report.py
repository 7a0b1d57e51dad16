"""Percentile, rate and verdict math of the load report, on arrays with known answers."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tailguard.load.report import (
    CODE_CONNECT,
    CODE_NOT_SENT,
    CODE_TIMEOUT,
    Recording,
    error_name,
    format_text,
    summarize,
)


def test_error_names() -> None:
    assert error_name(404) == "http_404"
    assert error_name(CODE_TIMEOUT) == "timeout"
    assert error_name(CODE_CONNECT) == "connect"
    assert error_name(-99) == "code_-99"


def _open_recording(**overrides: object) -> Recording:
    # Window [10, 20): two warm-up requests at 9.0 and 9.5, then 100 at 10.0, 10.1, ...
    intended = np.concatenate([[9.0, 9.5], 10.0 + np.arange(100) * 0.1])
    sent = intended + 0.0001  # 0.1 ms late
    latency = np.concatenate([[5.0, 5.0], np.arange(1, 101) * 0.001])  # warm-up: 5 s, then 1..100 ms
    done = intended + latency
    code = np.full(intended.size, 200, dtype=np.int32)
    fields: dict[str, object] = dict(
        intended_s=intended, sent_s=sent, done_s=done, code=code,
        window_start_s=10.0, window_end_s=20.0, mode="open", offered_rps=10.0,
    )
    fields.update(overrides)
    return Recording(**fields)  # type: ignore[arg-type]


def test_warmup_requests_are_not_measured() -> None:
    result = summarize(_open_recording())
    assert result.requests == 100
    assert result.ok == 100
    assert result.errors == {}
    assert result.p50_ms == pytest.approx(50.0)
    assert result.p90_ms == pytest.approx(90.0)
    assert result.p99_ms == pytest.approx(99.0)
    assert result.p999_ms == pytest.approx(100.0)
    assert result.max_ms == pytest.approx(100.0)
    assert result.mean_ms == pytest.approx(50.5)
    assert result.duration_s == pytest.approx(10.0)


def test_rps_counts_completions_inside_the_window() -> None:
    # The two warm-up requests finish at 14.0 and 14.5, inside the window: they count for
    # throughput (the server did that work then) but not for latency. The last request
    # finishes at 20.0, the end of the window, and does not count.
    result = summarize(_open_recording())
    assert result.rps == pytest.approx(10.1)
    # A server too slow for the offered rate: everything finishes after the window.
    slow = _open_recording(done_s=np.full(102, 25.0))
    assert summarize(slow).rps == 0.0


def test_latency_is_from_intended_time_and_errors_are_apart() -> None:
    rec = _open_recording()
    rec.code[2] = 404
    rec.code[3] = CODE_TIMEOUT
    rec.code[4] = CODE_CONNECT
    rec.code[5] = 503
    rec.code[6] = 404
    result = summarize(rec)
    assert result.ok == 95
    assert result.errors == {"http_404": 2, "http_503": 1, "timeout": 1, "connect": 1}
    # The five failed requests were the fastest (1..5 ms); the successful ones are 6..100 ms.
    assert result.max_ms == pytest.approx(100.0)
    assert result.p50_ms == pytest.approx(53.0)


def test_small_send_error_is_not_falling_behind() -> None:
    result = summarize(_open_recording())
    assert result.send_error_p99_ms == pytest.approx(0.1, abs=1e-6)
    assert not result.fell_behind
    assert result.warnings == ()


def test_late_sends_are_flagged() -> None:
    rec = _open_recording()
    late = rec.intended_s + 0.002  # 2 ms late
    result = summarize(_open_recording(sent_s=late))
    assert result.send_error_p99_ms == pytest.approx(2.0)
    assert result.schedule_lag_p99_ms == pytest.approx(2.0)
    assert result.fell_behind
    assert len(result.warnings) == 1
    assert result.warnings[0].startswith("generator fell behind its schedule")


def test_waiting_for_connections_is_told_apart_from_schedule_lag() -> None:
    # A tenth of the requests waited 50 ms for a connection; the others left on time.
    rec = _open_recording()
    queued = np.zeros(rec.intended_s.size, dtype=bool)
    queued[::10] = True
    sent = rec.intended_s + np.where(queued, 0.05, 0.0001)
    result = summarize(_open_recording(sent_s=sent, queued=queued))
    assert result.send_error_p99_ms == pytest.approx(50.0)
    assert result.schedule_lag_p99_ms == pytest.approx(0.1, abs=1e-6)
    assert result.fell_behind
    assert len(result.warnings) == 1
    assert "waited for a connection" in result.warnings[0]


def test_running_out_of_connections_is_flagged() -> None:
    result = summarize(_open_recording(waited_for_connection=7, max_connections=16))
    assert result.fell_behind
    assert result.max_connections == 16
    assert any("7 requests found all 16 connections busy" in w for w in result.warnings)


def test_unsent_requests_are_flagged_and_excluded_from_send_error() -> None:
    rec = _open_recording()
    rec.code[-3:] = CODE_NOT_SENT
    rec.sent_s[-3:] = np.nan
    result = summarize(rec)
    assert result.errors == {"not_sent": 3}
    assert result.fell_behind
    assert result.send_error_p99_ms == pytest.approx(0.1, abs=1e-6)


def test_closed_loop_has_no_send_error() -> None:
    sent = 100.0 + np.arange(50) * 0.01
    rec = Recording(
        intended_s=sent, sent_s=sent, done_s=sent + 0.004, code=np.full(50, 200, np.int32),
        window_start_s=100.0, window_end_s=100.5, mode="closed", concurrency=4,
    )
    result = summarize(rec)
    assert result.send_error_p99_ms is None
    assert not result.fell_behind
    assert result.p99_ms == pytest.approx(4.0)
    assert result.rps == pytest.approx(100.0)  # 50 completions in 0.5 s


def test_json_has_the_documented_keys() -> None:
    rec = _open_recording()
    result = summarize(_open_recording(sent_s=rec.intended_s + 0.01))
    data = json.loads(result.to_json())
    for key in ("requests", "ok", "errors", "rps", "p50_ms", "p90_ms", "p99_ms", "p999_ms",
                "send_error_p99_ms", "schedule_lag_p99_ms", "duration_s", "fell_behind",
                "warnings"):
        assert key in data
    assert data["fell_behind"] is True
    assert data["requests"] == 100


def test_text_summary_shows_warnings_first_and_errors() -> None:
    rec = _open_recording(waited_for_connection=1)
    rec.code[5] = 404
    text = format_text(summarize(rec))
    lines = text.splitlines()
    assert lines[0].startswith("WARNING: ran out of connections")
    assert "p99.9" in text
    assert "http_404 1" in text


def test_empty_window_is_rejected() -> None:
    with pytest.raises(ValueError, match="positive length"):
        summarize(_open_recording(window_end_s=10.0))


@settings(max_examples=60, deadline=None)
@given(
    latencies=st.lists(st.floats(min_value=0.0, max_value=10.0), min_size=1, max_size=300),
    codes=st.lists(st.sampled_from([200, 201, 404, 429, 503, CODE_TIMEOUT, CODE_CONNECT]),
                   min_size=1, max_size=300),
)
def test_summary_invariants(latencies: list[float], codes: list[int]) -> None:
    n = min(len(latencies), len(codes))
    intended = np.linspace(0.0, 0.99, n)
    rec = Recording(
        intended_s=intended, sent_s=intended.copy(), done_s=intended + np.array(latencies[:n]),
        code=np.array(codes[:n], dtype=np.int32), window_start_s=0.0, window_end_s=1.0,
        mode="open", offered_rps=float(n),
    )
    result = summarize(rec)
    assert result.ok + sum(result.errors.values()) == result.requests == n
    assert result.ok == sum(1 for c in codes[:n] if 200 <= c < 300)
    if result.ok:
        ladder = [result.p50_ms, result.p90_ms, result.p99_ms, result.p999_ms, result.max_ms]
        assert all(a is not None and b is not None and a <= b
                   for a, b in itertools.pairwise(ladder))
    else:
        assert result.p50_ms is None
    assert 0.0 <= result.ok_rps <= result.rps <= n
