"""Chaos: fault schedules (seeded = deterministic), SLO recovery from per-second buckets,
lost-request accounting, loopback-only targets."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tailguard.load.report import CODE_CLOSED, CODE_CONNECT, CODE_TIMEOUT, Recording
from tailguard.load.spec import LoadSpec
from tailguard.ops.chaos import (
    ChaosConfig,
    FaultKind,
    InjectedFault,
    SecondBucket,
    _report,
    check_loopback,
    latency_buckets,
    plan_faults,
    recovery_s,
)


def test_schedule_every_period_cycles_kinds_and_replicas() -> None:
    cfg = ChaosConfig(faults=(FaultKind.KILL, FaultKind.STOP), every_s=10.0)
    plan = plan_faults(cfg, 60.0)
    assert [f.at_s for f in plan] == [10, 20, 30, 40, 50]
    assert [f.kind for f in plan] == ["kill", "stop", "kill", "stop", "kill"]
    assert [f.pick for f in plan] == [0, 1, 2, 3, 4]
    assert [f.at_s for f in plan_faults(ChaosConfig(every_s=10.0, first_s=2.5), 30.0)] == [
        2.5, 12.5, 22.5]


def test_random_schedule_is_deterministic_in_its_seed() -> None:
    kinds = (FaultKind.KILL, FaultKind.STOP, FaultKind.DELAY, FaultKind.RESTART)
    a = plan_faults(ChaosConfig(faults=kinds, every_s=5.0, random=True, seed=7), 600.0)
    b = plan_faults(ChaosConfig(faults=kinds, every_s=5.0, random=True, seed=7), 600.0)
    c = plan_faults(ChaosConfig(faults=kinds, every_s=5.0, random=True, seed=8), 600.0)
    assert a == b and a != c
    times = np.array([f.at_s for f in a])
    assert np.all(np.diff(times) >= 0) and times[-1] < 600.0
    assert 60 < len(a) < 180  # Poisson, mean gap 5 s over 600 s: about 120
    assert {f.kind for f in a} == set(kinds)


def _buckets(p99s: list[float | None]) -> list[SecondBucket]:
    return [SecondBucket(float(i), 0 if p is None else 10, 10, p) for i, p in enumerate(p99s)]


@pytest.mark.parametrize(
    ("p99s", "fault_at", "until", "expected"),
    [
        ([20, 20, 20, 20], 1.5, 4.0, 0.0),  # never missed
        ([20, 20, 500, 300, 20, 20], 1.5, 6.0, 2.5),  # missed in s 2-3, back at s 4
        ([20, 500, math.inf, 20], 1.2, 4.0, 1.8),  # errors count as misses
        ([20, 20, 500, 500, 500], 1.5, 5.0, None),  # never came back
        ([20, 20, 20, 20, 500, 20], 1.5, 4.5, 0.0),  # s 4 holds the next fault: not ours
        ([20, 500, None, 20], 1.0, 4.0, 2.0),  # an empty second judges nothing
    ],
)
def test_recovery_from_per_second_buckets(p99s: list[float | None], fault_at: float,
                                          until: float, expected: float | None) -> None:
    assert recovery_s(_buckets(p99s), fault_at, until, slo_ms=100.0) == expected


def test_latency_buckets_count_server_errors_as_misses_and_skip_client_errors() -> None:
    # Second 0: 99 fast + 1 timeout -> P99 is the fast one's latency; second 1: 2 x 503 of 100.
    intended = np.concatenate([np.linspace(0, 0.99, 100), np.linspace(1, 1.99, 100)])
    done = intended + 0.010
    code = np.full(200, 200)
    code[5] = CODE_TIMEOUT
    code[100:102] = 503
    code[150:170] = 400  # the caller's fault: left out
    buckets = latency_buckets(intended, done, code, 3.0)
    assert [b.requests for b in buckets] == [100, 80, 0]
    assert buckets[0].p99_ms == pytest.approx(10.0)
    assert buckets[1].p99_ms == math.inf and buckets[1].ok == 78
    assert buckets[2].p99_ms is None


def test_report_counts_lost_requests_and_recovery() -> None:
    n = 400
    start = 1000.0
    intended = start + np.arange(n) / 100.0  # 100 req/s for 4 s
    sent = intended.copy()
    done = intended + 0.01
    code = np.full(n, 200, dtype=np.int32)
    done[120:125] = intended[120:125] + 0.5  # slow second after the fault at 1.1 s
    code[300] = CODE_CLOSED  # sent, connection dropped: lost
    code[301] = CODE_CONNECT  # never sent
    sent[301] = np.nan
    rec = Recording(intended_s=intended, sent_s=sent, done_s=done, code=code,
                    window_start_s=start, window_end_s=start + 4.0, mode="open",
                    offered_rps=100.0)
    spec = LoadSpec(url="http://127.0.0.1:1", model="m", rate_rps=100.0, duration_s=4.0)
    report = _report("m", 100.0, rec, [InjectedFault(1.1, "kill", 42, 0, "SIGKILL")], spec)
    assert report.sent == 399 and report.answered == 398 and report.lost == 1
    assert report.not_sent == 1
    assert report.errors == {"closed": 1, "connect": 1}
    # Second 1 missed (5 % at 500 ms), second 2 met the SLO again (second 3's two failures
    # come after the recovery).
    assert report.recovery_s == (0.9,)
    assert [b.meets(100.0) for b in report.buckets] == [True, False, True, False]
    assert any("never answered" in w for w in report.warnings)
    assert report.to_dict()["buckets"][1]["p99_ms"] == pytest.approx(500.0, abs=1.0)


@pytest.mark.parametrize("url", ["http://127.0.0.1:8000", "http://localhost:1",
                                 "http://[::1]:8000", "http://127.0.0.2"])
def test_loopback_urls_are_accepted(url: str) -> None:
    check_loopback(url)


@pytest.mark.parametrize("url", ["http://10.0.0.5:8000", "http://example.com", "http://0.0.0.0"])
def test_remote_urls_are_refused(url: str) -> None:
    with pytest.raises(ValueError, match="loopback"):
        check_loopback(url)


def test_config_is_validated() -> None:
    with pytest.raises(ValueError, match="at least one"):
        ChaosConfig(faults=())
    with pytest.raises(ValueError, match="every_s"):
        ChaosConfig(every_s=0)
    with pytest.raises(ValueError):
        FaultKind("explode")
