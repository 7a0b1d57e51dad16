"""Tenant mixes, traces, SLO figures, /metrics scraping and the HTML report, against a real
echo target (a uvicorn process that counts the keys it receives and serves /metrics)."""

from __future__ import annotations

import asyncio
import gc
import json
import re
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from tailguard.commands import load as load_command
from tailguard.load import (
    LoadSpec,
    Tenant,
    TenantMix,
    run_load_recording,
    run_load_recording_async,
    timeline,
)
from tests.support import ECHO_SERVER


@pytest.fixture(scope="module")
def metrics_url() -> Iterator[str]:
    proc = subprocess.Popen([sys.executable, str(ECHO_SERVER), "--metrics"],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    url = f"http://127.0.0.1:{int(proc.stdout.readline())}"  # printed once it listens
    try:
        deadline = time.monotonic() + 15.0
        while True:  # poll readiness with a deadline: uvicorn starts after the bind
            try:
                with urllib.request.urlopen(f"{url}/v2/health/ready", timeout=1) as r:
                    if r.status == 200:
                        break
            except OSError:
                if time.monotonic() > deadline:
                    raise
            time.sleep(0.02)
        # Collect what earlier tests left behind now, not in a timed run: finalisers of
        # leaked objects can block for seconds (a DataLoader iterator with live workers
        # joins each one with a 5 s timeout when it is finally collected).
        gc.collect()
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        proc.stdout.close()


def _keys_seen(url: str) -> dict[str, int]:
    with urllib.request.urlopen(f"{url}/stats", timeout=5) as r:
        data: dict[str, dict[str, int]] = json.loads(r.read())
    return data["auth"]


def _delta(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    return {k: n - before.get(k, 0) for k, n in after.items() if n - before.get(k, 0)}


MIX = TenantMix((Tenant("gold", "k-gold", 3.0), Tenant("free", "k-free", 1.0)))


@pytest.mark.parametrize("mode", [{"rate_rps": 400.0, "arrival": "constant"},
                                  {"concurrency": 3}])
def test_each_tenant_sends_its_own_key_in_its_share(metrics_url: str,
                                                    mode: dict[str, Any]) -> None:
    before = _keys_seen(metrics_url)
    result, rec = run_load_recording(LoadSpec(metrics_url, model="echo", duration_s=0.6,
                                              tenants=MIX, **mode))
    seen = _delta(before, _keys_seen(metrics_url))
    assert set(seen) == {"Bearer k-gold", "Bearer k-free"}
    assert rec.tenant is not None and rec.tenant_names == ("gold", "free")
    assert rec.tenant.size == rec.code.size
    # Every request the server saw with a key is one the generator sent as that tenant.
    for name, key in (("gold", "k-gold"), ("free", "k-free")):
        sent_as = int(np.count_nonzero((rec.tenant == rec.tenant_names.index(name))
                                       & np.isfinite(rec.sent_s)))
        assert seen[f"Bearer {key}"] == sent_as
        assert result.tenants[name].ok == result.tenants[name].requests > 0
    share = seen["Bearer k-gold"] / sum(seen.values())
    assert share == pytest.approx(0.75, abs=0.08)


def test_recording_api_with_a_trace_and_metrics(metrics_url: str) -> None:
    spec = LoadSpec(metrics_url, model="echo", arrival="gamma:rate=300,cv=2", duration_s=1.2,
                    warmup_s=0.3, scrape_metrics=True, metrics_interval_s=0.25, slo_ms=1000.0)
    result, rec = run_load_recording(spec)
    assert result.errors == {}
    assert result.offered_rps is not None and 100 < result.offered_rps < 600
    assert rec.intended_s.size == rec.code.size > result.requests  # the warm-up is recorded
    assert result.slo_attainment_pct == pytest.approx(100.0)
    assert rec.server is not None and rec.server.error is None
    assert rec.server.scrapes >= 4
    assert set(rec.server.replicas) == {"echo"}
    assert np.all(rec.server.replicas["echo"] == 1.0)
    assert result.server_metrics is not None and "replicas 1..1" in result.server_metrics
    tl = timeline(rec, slo_ms=1000.0)
    assert tl.offered_rps.sum() == rec.intended_s.size
    assert tl.server_t_s is not None and tl.server_t_s.size == rec.server.scrapes


def test_recording_api_on_plain_asyncio(metrics_url: str) -> None:
    async def main() -> int:
        result, rec = await run_load_recording_async(
            LoadSpec(metrics_url, model="echo", rate_rps=200, duration_s=0.3))
        assert rec.mode == "open"
        return result.ok

    assert asyncio.run(main()) > 20


def _cli() -> typer.Typer:
    app = typer.Typer()
    load_command.register(app)

    @app.command("noop")
    def _noop() -> None:  # a second command keeps "load" a named subcommand
        """Nothing."""

    return app


def test_cli_replays_a_csv_trace_with_tenants_slo_and_report(metrics_url: str,
                                                             tmp_path: Path) -> None:
    trace = tmp_path / "trace.csv"
    stamps = 1000.0 + np.arange(60) * 0.01  # 60 arrivals over 0.6 s, shifted to start at 0
    trace.write_text("timestamp\n" + "\n".join(f"{t:.3f}" for t in stamps) + "\n")
    tenants = tmp_path / "tenants.yaml"
    tenants.write_text("zipf: 1.0\ntenants:\n  - {name: t1, api_key: k1}\n"
                       "  - {name: t2, api_key: k2}\n")
    report = tmp_path / "out.html"
    before = _keys_seen(metrics_url)
    out = CliRunner().invoke(_cli(), [
        "load", metrics_url, "-m", "echo", "--trace", f"csv:{trace}", "--duration", "1.5",
        "--tenants", str(tenants), "--slo-ms", "1000", "--report", str(report), "--json"])
    assert out.exit_code == 0, out.output
    data = json.loads(out.stdout)
    assert data["requests"] == data["ok"] == 60  # exactly the replayed arrivals
    assert data["slo_attainment_pct"] == 100.0
    assert data["goodput_rps"] == pytest.approx(60 / 1.5)
    assert set(data["tenants"]) == {"t1", "t2"}
    assert data["tenants"]["t1"]["requests"] + data["tenants"]["t2"]["requests"] == 60
    assert _delta(before, _keys_seen(metrics_url)) == {
        "Bearer k1": data["tenants"]["t1"]["requests"],
        "Bearer k2": data["tenants"]["t2"]["requests"]}
    page = report.read_text()
    refs = re.findall(r"""(?:src|href)\s*=\s*["']?([^"' >]*)""", page, flags=re.I)
    assert refs and all(r.startswith("data:image/png;base64,") for r in refs)
    assert 'alt="Replicas ready' in page and 'alt="Queue depth' in page
    assert "<td>t2</td>" in page


def test_cli_rejects_bad_trace_and_tenant_options(metrics_url: str, tmp_path: Path) -> None:
    both = CliRunner().invoke(_cli(), ["load", metrics_url, "-m", "echo", "--arrival",
                                       "gamma:rate=5,cv=1", "--trace", "x.csv"])
    assert both.exit_code == 2 and "not both" in both.stderr
    missing = CliRunner().invoke(_cli(), ["load", metrics_url, "-m", "echo", "--trace",
                                          str(tmp_path / "none.csv")])
    assert missing.exit_code == 2 and "not found" in missing.stderr
    bad = tmp_path / "t.yaml"
    bad.write_text("- {name: a, weight: -1}\n")
    tenants = CliRunner().invoke(_cli(), ["load", metrics_url, "-m", "echo", "-r", "10",
                                          "--tenants", str(bad)])
    assert tenants.exit_code == 2 and "weight must be > 0" in tenants.stderr
