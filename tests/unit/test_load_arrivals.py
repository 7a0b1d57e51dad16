"""The open-loop schedules the load generator builds from TRACE arrivals (LoadSpec.offsets)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tailguard.load.spec import LoadSpec


def _offsets(arrival: str, duration_s: float, rate_rps: float | None = None,
             seed: int = 11, warmup_s: float = 0.0) -> np.ndarray:
    spec = LoadSpec(arrival=arrival, rate_rps=rate_rps, duration_s=duration_s, seed=seed,
                    warmup_s=warmup_s)
    assert spec.mode == "open"
    offsets = spec.offsets()
    assert np.all(np.diff(offsets) >= 0)
    assert offsets.size == 0 or (offsets[0] >= 0 and offsets[-1] < warmup_s + duration_s)
    return offsets


def _cv(offsets: np.ndarray) -> float:
    gaps = np.diff(offsets)
    return float(gaps.std() / gaps.mean())


@pytest.mark.parametrize(
    ("arrival", "rate", "duration", "cv", "rate_tol", "cv_tol"),
    [
        ("constant:rate=1000", 1000.0, 20.0, 0.0, 0.001, 0.01),
        ("poisson:rate=1000", 1000.0, 60.0, 1.0, 0.02, 0.03),
        ("gamma:rate=500,cv=3", 500.0, 400.0, 3.0, 0.05, 0.12),
        ("gamma:rate=500,cv=0.5", 500.0, 100.0, 0.5, 0.02, 0.03),
    ],
)
def test_renewal_processes_have_their_rate_and_cv(
    arrival: str, rate: float, duration: float, cv: float, rate_tol: float, cv_tol: float
) -> None:
    offsets = _offsets(arrival, duration)
    assert offsets.size / duration == pytest.approx(rate, rel=rate_tol)
    assert _cv(offsets) == pytest.approx(cv, abs=cv_tol)


def test_rate_option_fills_in_a_missing_rate() -> None:
    spec = LoadSpec(arrival="gamma:cv=2", rate_rps=300.0, duration_s=100.0, seed=3)
    assert spec.trace_text() == "gamma:cv=2,rate=300"
    offsets = spec.offsets()
    assert offsets.size / 100.0 == pytest.approx(300.0, rel=0.06)
    assert _cv(offsets) == pytest.approx(2.0, abs=0.15)
    assert LoadSpec(arrival="poisson:", rate_rps=5.0).trace_text() == "poisson:rate=5"


def test_mmpp_bursts_average_the_two_rates_and_are_burstier_than_poisson() -> None:
    offsets = _offsets("mmpp:low=100,high=1000,switch=1", 600.0)
    assert offsets.size / 600.0 == pytest.approx(550.0, rel=0.1)
    assert _cv(offsets) > 1.2
    per_second = np.bincount(offsets.astype(int), minlength=600)
    # Seconds spent in each state: both rates show up.
    assert np.count_nonzero(per_second < 250) > 100
    assert np.count_nonzero(per_second > 700) > 100


def test_diurnal_rate_follows_the_sine() -> None:
    offsets = _offsets("diurnal:mean=500,amp=0.8,period=10", 100.0)
    assert offsets.size / 100.0 == pytest.approx(500.0, rel=0.03)
    phase = (offsets % 10.0) / 10.0
    # 1 s windows around the crest and the trough, over 10 periods; sin averages 0.984 there.
    crest = np.count_nonzero((phase > 0.2) & (phase < 0.3)) / 10.0
    trough = np.count_nonzero((phase > 0.7) & (phase < 0.8)) / 10.0
    assert crest == pytest.approx(500 * (1 + 0.8 * 0.984), rel=0.05)
    assert trough == pytest.approx(500 * (1 - 0.8 * 0.984), rel=0.3)


def test_step_and_spike_change_the_rate_where_asked() -> None:
    steps = _offsets("step:rates=100/400/100,every=10", 30.0)
    counts = np.bincount((steps // 10).astype(int), minlength=3)
    for got, want in zip(counts, (1000, 4000, 1000), strict=True):
        assert abs(got - want) < 5 * np.sqrt(want)
    spike = _offsets("spike:base=100,peak=1000,at=5,width=2", 10.0)
    inside = np.count_nonzero((spike >= 5) & (spike < 7))
    assert abs(inside - 2000) < 5 * np.sqrt(2000)
    assert abs(spike.size - inside - 800) < 5 * np.sqrt(800)


def test_superposed_traces_add_up() -> None:
    offsets = _offsets("poisson:rate=200+spike:base=0,peak=300,at=2,width=1", 10.0)
    assert abs(offsets.size - 2300) < 5 * np.sqrt(2300)


def test_trace_schedule_is_seeded_and_covers_the_warmup() -> None:
    a = _offsets("gamma:rate=100,cv=2", 5.0, seed=1, warmup_s=1.0)
    b = _offsets("gamma:rate=100,cv=2", 5.0, seed=1, warmup_s=1.0)
    c = _offsets("gamma:rate=100,cv=2", 5.0, seed=2, warmup_s=1.0)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert a[0] < 1.0  # the warm-up second has arrivals too


def test_csv_timestamps_replay_exactly(tmp_path: Path) -> None:
    path = tmp_path / "ts.csv"
    stamps = [100.0, 100.25, 100.5, 101.0, 103.75, 109.0]
    path.write_text("timestamp\n" + "\n".join(str(t) for t in stamps) + "\n")
    offsets = _offsets(f"csv:{path}", 5.0)  # shifted to start at 0; 9.0 is past the end
    np.testing.assert_allclose(offsets, [0.0, 0.25, 0.5, 1.0, 3.75])


def test_csv_per_minute_counts_are_spread_over_each_minute(tmp_path: Path) -> None:
    path = tmp_path / "counts.csv"
    path.write_text("count\n600\n1200\n")
    offsets = _offsets(f"csv:{path},spread=uniform", 120.0)
    assert np.count_nonzero(offsets < 60) == 600
    assert np.count_nonzero(offsets >= 60) == 1200
    azure = tmp_path / "azure.csv"
    azure.write_text("HashOwner,HashApp,HashFunction,Trigger,1,2\n"
                     "a,b,c,http,30,0\na,b,d,timer,30,60\n")
    offsets = _offsets(f"csv:{azure},spread=uniform", 120.0)
    assert np.count_nonzero(offsets < 60) == 60
    assert np.count_nonzero(offsets >= 60) == 60


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"arrival": "gamma:rate=5,cv=1", "rate_rps": 3.0}, "sets its own rates"),
        ({"arrival": "gamma:rate=5,cv=1", "concurrency": 2}, "exactly one"),
        ({"arrival": "mmpp:low=3"}, "missing parameter 'high'"),
        ({"arrival": "wave:rate=3"}, "unknown trace 'wave'"),
        ({"arrival": "csv:/nonexistent/trace.csv"}, "not found"),
        ({"arrival": "poisson:rate=3", "slo_ms": 0.0}, "slo_ms"),
    ],
)
def test_bad_traces_say_what_is_wrong(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        LoadSpec(**kwargs)  # type: ignore[arg-type]
