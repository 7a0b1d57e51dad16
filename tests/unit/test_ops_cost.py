"""Cost allocation (OpenCost: max(reserved, used), idle apart), windows and formats."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tailguard.ops.cost import (
    IDLE,
    UsageRow,
    allocate,
    format_report,
    parse_since,
    reserved_replica_seconds,
    usage_since,
)
from tailguard.ops.prices import InstanceType

# $0.72/h for 2 replicas: $0.36 per replica-hour = $0.0001 per replica-second.
INSTANCE = InstanceType(name="box", kind="cpu", hourly_usd=0.72, replicas_per_instance=2)
PER_S = 0.0001


def _usage() -> list[UsageRow]:
    return [
        UsageRow("acme", "minilm", requests=100, ok=100, rows=100, replica_seconds=300.0),
        UsageRow("beta", "minilm", requests=50, ok=49, errors=1, rows=49, replica_seconds=100.0),
        UsageRow("acme", "echo", requests=10, ok=10, rows=10, replica_seconds=900.0),
    ]


def test_reserved_above_used_bills_reserved_with_an_idle_row() -> None:
    report = allocate(_usage(), {"minilm": 1000.0, "echo": 500.0, "unused": 200.0},
                      (0.0, 1000.0), INSTANCE)
    by = {(ln.deployment, ln.tenant): ln for ln in report.lines}
    assert by["minilm", "acme"].cost_usd == pytest.approx(300 * PER_S)
    assert by["minilm", "beta"].cost_usd == pytest.approx(100 * PER_S)
    assert by["minilm", IDLE].replica_seconds == pytest.approx(600.0)
    assert by["minilm", IDLE].cost_usd == pytest.approx(600 * PER_S)
    deps = {d.deployment: d for d in report.deployments}
    assert deps["minilm"].billed_replica_seconds == 1000.0
    # Used above reserved (the count grew during the window): bill what was used, no idle.
    assert deps["echo"].billed_replica_seconds == 900.0
    assert by["echo", IDLE].replica_seconds == 0.0
    # Reserved and never used: all idle.
    assert by["unused", IDLE].replica_seconds == 200.0
    assert report.total_usd == pytest.approx((1000 + 900 + 200) * PER_S)
    # Tenant rows plus idle rows add up to the bill, deployment by deployment.
    for d in report.deployments:
        lines = [ln for ln in report.lines if ln.deployment == d.deployment]
        assert sum(ln.cost_usd for ln in lines) == pytest.approx(d.cost_usd)


def test_reserved_replica_seconds_counts_every_paid_replica() -> None:
    deps = [{"name": "a", "replica_counts": {"desired": 2, "ready": 1, "starting": 1,
                                             "draining": 1}},
            {"name": "b", "replica_counts": {"desired": 0, "ready": 0}}]
    assert reserved_replica_seconds(deps, 10.0) == {"a": 30.0, "b": 0.0}


def test_parse_since() -> None:
    now = 1_000_000.0
    assert parse_since("90s", now) == now - 90
    assert parse_since("30m", now) == now - 1800
    assert parse_since("2h", now) == now - 7200
    assert parse_since("1d", now) == now - 86400
    iso = "2025-01-31T09:00:00+00:00"
    assert parse_since(iso, now) == datetime(2025, 1, 31, 9, tzinfo=UTC).timestamp()
    with pytest.raises(ValueError, match="duration"):
        parse_since("yesterday", now)


def test_window_after_server_start_subtracts_the_last_snapshot_before_it(tmp_path: Path) -> None:
    snaps = tmp_path / "usage" / "host.jsonl"
    early = [UsageRow("acme", "m", requests=10, rows=10, replica_seconds=5.0)]
    rows, start, warnings = usage_since(early, 100.0, 200.0, 150.0, snaps)
    # No snapshot yet: the window falls back to the server start, and says so.
    assert start == 100.0 and rows == early and "no usage snapshot" in warnings[0]
    later = [UsageRow("acme", "m", requests=25, rows=25, replica_seconds=12.0),
             UsageRow("beta", "m", requests=3, rows=3, replica_seconds=1.0)]
    rows, start, warnings = usage_since(later, 100.0, 160.0, 300.0, snaps)
    assert start == 150.0 and warnings == []
    got = {u.tenant: u for u in rows}
    assert got["acme"].requests == 15 and got["acme"].replica_seconds == pytest.approx(7.0)
    assert got["beta"].requests == 3
    # A snapshot of another server lifetime (other start) is never subtracted.
    rows, start, _ = usage_since(later, 250.0, 260.0, 400.0, snaps)
    assert start == 250.0 and rows == later
    assert len(snaps.read_text().splitlines()) == 3


def test_since_before_server_start_starts_at_server_start() -> None:
    rows, start, warnings = usage_since(_usage(), 500.0, 100.0, 600.0, None)
    assert start == 500.0 and len(rows) == 3 and "after --since" in warnings[0]


def test_formats() -> None:
    report = allocate(_usage(), {"minilm": 1000.0}, (0.0, 1000.0), INSTANCE, ["note"])
    rows = list(csv.DictReader(io.StringIO(format_report(report, "csv"))))
    assert {(r["deployment"], r["tenant"]) for r in rows} >= {("minilm", IDLE), ("echo", "acme")}
    data = json.loads(format_report(report, "json"))
    assert data["total_usd"] == pytest.approx(report.total_usd)
    assert data["window_s"] == 1000.0 and data["warnings"] == ["note"]
    table = format_report(report, "table")
    assert "(idle)" in table and "WARNING: note" in table and "max(reserved 1000.0" in table
    with pytest.raises(ValueError, match="format"):
        format_report(report, "xml")


def test_fetch_without_a_key_says_how_to_pass_one() -> None:
    """Issue 19: it used to print "HTTP Error 401: Unauthorized" and nothing else."""
    import http.server
    import threading

    from tailguard.ops.cost import fetch_json

    class _NeedsKey(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = b'{"error": "missing API key"}'
            self.send_response(401)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _NeedsKey)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        with pytest.raises(ValueError, match=r"needs an admin API key \(missing API key\): "
                                             r"pass one with --api-key KEY or the "
                                             r"TAILGUARD_API_KEY"):
            fetch_json(f"http://127.0.0.1:{server.server_port}", "/v1/usage", None)
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
def test_speech_cost_per_audio_minute_is_the_bill_over_the_audio_returned() -> None:
    usage = [UsageRow("acme", "tts", requests=40, ok=40, rows=40, replica_seconds=60.0,
                      audio_seconds=90.0),
             UsageRow("beta", "tts", requests=20, ok=20, rows=20, replica_seconds=30.0,
                      audio_seconds=30.0)]
    report = allocate(usage, {"tts": 600.0}, (0.0, 600.0), INSTANCE)
    tts = report.deployments[0]
    assert tts.audio_seconds == 120.0
    # 600 billed replica-seconds over 2 audio-minutes (idle time included: it was paid for).
    assert tts.usd_per_audio_minute == pytest.approx(600 * PER_S / 2)
    assert "per audio-min" in format_report(report, "table")
    later = UsageRow.from_dict({"tenant": "acme", "deployment": "tts", "audio_seconds": 100.0})
    assert later.minus(usage[0]).audio_seconds == pytest.approx(10.0)
    assert allocate(_usage(), {}, (0.0, 1.0), INSTANCE).deployments[0].usd_per_audio_minute is None
