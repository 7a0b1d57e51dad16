"""Arrival generators: mean rate and burstiness over long seeded samples; TRACE parsing; CSV."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tailguard.autoscale import traces
from tailguard.autoscale.traces import generate, parse_trace


def _cv(times: np.ndarray) -> float:
    gaps = np.diff(times)
    return float(gaps.std() / gaps.mean())


@pytest.mark.parametrize(
    ("spec", "duration", "rate", "cv", "tol"),
    [
        ("constant:rate=100", 1000.0, 100.0, 0.0, 0.01),
        ("poisson:rate=200", 1000.0, 200.0, 1.0, 0.02),
        ("gamma:rate=200,cv=3", 2000.0, 200.0, 3.0, 0.06),
        ("gamma:rate=50,cv=0.5", 2000.0, 50.0, 0.5, 0.03),
    ],
)
def test_renewal_traces_have_the_asked_rate_and_cv(
    spec: str, duration: float, rate: float, cv: float, tol: float
) -> None:
    times = generate(spec, duration, seed=3)
    assert times.size / duration == pytest.approx(rate, rel=tol)
    assert _cv(times) == pytest.approx(cv, abs=max(tol * cv, 0.01))
    assert np.all(np.diff(times) >= 0) and times[0] >= 0 and times[-1] < duration


def test_mmpp_mean_rate_and_burstiness() -> None:
    times = generate("mmpp:low=50,high=500,switch=0.05", 20000.0, seed=1)
    # Symmetric switching: half the time in each state.
    assert times.size / 20000.0 == pytest.approx(275.0, rel=0.06)
    counts = np.bincount(times.astype(np.int64))
    # Over-dispersed per-second counts (a Poisson process would have variance == mean).
    assert counts.var() > 10 * counts.mean()


def test_diurnal_follows_the_sinusoid() -> None:
    period = 1000.0
    times = generate(f"diurnal:mean=200,amp=0.8,period={period:g}", 10 * period, seed=2)
    assert times.size / (10 * period) == pytest.approx(200.0, rel=0.02)
    phase = (times % period) / period
    peak = np.count_nonzero((phase > 0.2) & (phase < 0.3)) / (10 * period * 0.1)
    trough = np.count_nonzero((phase > 0.7) & (phase < 0.8)) / (10 * period * 0.1)
    # rate(0.25 period) = 200 * 1.8 * ~0.99, rate(0.75 period) = 200 * 0.2 * ~1.04
    assert peak == pytest.approx(356.0, rel=0.05)
    assert trough == pytest.approx(41.6, rel=0.1)


def test_spike_and_step_rates() -> None:
    times = generate("spike:base=100,peak=800,at=600,width=60", 1200.0, seed=4)
    inside = np.count_nonzero((times >= 600) & (times < 660)) / 60.0
    outside = np.count_nonzero(times < 600) / 600.0
    assert inside == pytest.approx(800.0, rel=0.05)
    assert outside == pytest.approx(100.0, rel=0.05)
    steps = generate("step:rates=100/400/100,every=300", 900.0, seed=4)
    per_step = np.bincount((steps // 300).astype(np.int64)) / 300.0
    assert per_step == pytest.approx([100.0, 400.0, 100.0], rel=0.05)


def test_superposition_adds_rates_and_stays_sorted() -> None:
    times = generate("poisson:rate=100+spike:base=0,peak=500,at=100,width=50", 400.0, seed=5)
    assert np.all(np.diff(times) >= 0)
    assert times.size == pytest.approx(100 * 400 + 500 * 50, rel=0.03)


def test_same_seed_same_trace_other_seed_other_trace() -> None:
    a = generate("gamma:rate=100,cv=2", 100.0, seed=7)
    b = generate("gamma:rate=100,cv=2", 100.0, seed=7)
    c = generate("gamma:rate=100,cv=2", 100.0, seed=8)
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_csv_timestamps(tmp_path: Path) -> None:
    path = tmp_path / "ts.csv"
    path.write_text("timestamp\n10.5\n11.0\n12.25\n400\n")
    times = generate(f"csv:{path}", 100.0)
    assert times.tolist() == [0.0, 0.5, 1.75]  # shifted to start at 0, cut at the duration


def test_csv_minute_counts_uniform_spread_is_exact(tmp_path: Path) -> None:
    path = tmp_path / "counts.csv"
    path.write_text("count\n60\n0\n120\n")
    times = generate(f"csv:{path},spread=uniform", 180.0)
    per_minute = np.bincount((times // 60).astype(np.int64), minlength=3)
    assert per_minute.tolist() == [60, 0, 120]


def test_csv_azure_functions_format_sums_rows(tmp_path: Path) -> None:
    path = tmp_path / "invocations_per_function_md.anon.d01.csv"
    header = "HashOwner,HashApp,HashFunction,Trigger," + ",".join(str(i) for i in range(1, 4))
    path.write_text(f"{header}\na,b,c,http,10,20,0\nd,e,f,timer,5,0,30\n")
    times = generate(f"csv:{path},spread=uniform,scale=2", 180.0)
    per_minute = np.bincount((times // 60).astype(np.int64), minlength=3)
    assert per_minute.tolist() == [30, 40, 60]
    poisson = generate(f"csv:{path},spread=poisson", 180.0, seed=1)
    assert 30 < poisson.size < 100


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("weibull:rate=3", "unknown trace"),
        ("poisson:rate", "key=value"),
        ("gamma:rate=100", "missing parameter"),
        ("csv:", "needs a path"),
        # Issue 19: unknown parameters used to be ignored (a default rate silently used).
        ("spike:base=100,peak=800,foo=3", r"no parameter 'foo'.*base, peak, at, width"),
        ("poisson:rat=200", r"no parameter 'rat'.*parameters are rate"),
        ("gamma:rate=100,cv=2+diurnal:mean=5,amplitude=1",
         r"'diurnal' has no parameter 'amplitude'.*mean, amp, period"),
    ],
)
def test_bad_trace_strings_say_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        generate(text, 10.0)


def test_parse_keeps_parameters() -> None:
    (spec,) = parse_trace("step:rates=1/2/3,every=10")
    assert spec.kind == "step" and dict(spec.params)["rates"] == "1/2/3"


def test_generators_are_plain_functions_for_the_load_generator() -> None:
    rng = np.random.default_rng(0)
    assert traces.poisson(10.0, 5.0, rng).dtype == np.float64
    assert traces.constant(0.0, 5.0).size == 0
    with pytest.raises(ValueError, match="duration_s"):
        traces.poisson(10.0, 0.0, rng)
