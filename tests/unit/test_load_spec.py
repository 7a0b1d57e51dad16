"""Arrival schedules and load-spec validation."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tailguard.load.spec import LoadSpec, arrival_offsets


def test_poisson_schedule_has_the_rate_and_cv_of_poisson() -> None:
    rate, duration = 2000.0, 50.0
    offsets = arrival_offsets(rate, duration, "poisson", seed=7)
    expected = rate * duration
    assert abs(offsets.size - expected) < 4 * np.sqrt(expected)  # 4 sigma of a Poisson count
    gaps = np.diff(offsets)
    assert gaps.mean() == pytest.approx(1 / rate, rel=0.02)
    cv = gaps.std() / gaps.mean()
    assert cv == pytest.approx(1.0, abs=0.03)  # exponential gaps: CV = 1


def test_poisson_schedule_is_seeded() -> None:
    a = arrival_offsets(500.0, 2.0, "poisson", seed=3)
    b = arrival_offsets(500.0, 2.0, "poisson", seed=3)
    c = arrival_offsets(500.0, 2.0, "poisson", seed=4)
    np.testing.assert_array_equal(a, b)
    assert a.size != c.size or not np.array_equal(a, c)


def test_constant_schedule_is_evenly_spaced() -> None:
    offsets = arrival_offsets(100.0, 1.5, "constant", seed=0)
    assert offsets.size == 150
    np.testing.assert_allclose(np.diff(offsets), 0.01)
    assert offsets[0] == 0.0


def test_unknown_arrival_is_rejected() -> None:
    with pytest.raises(ValueError, match="arrival"):
        arrival_offsets(10.0, 1.0, "bursty", seed=0)


@settings(max_examples=40, deadline=None)
@given(
    rate=st.floats(min_value=0.5, max_value=5000.0),
    duration=st.floats(min_value=0.01, max_value=5.0),
    arrival=st.sampled_from(["poisson", "constant"]),
    seed=st.integers(min_value=0, max_value=2**32 - 1),
)
def test_schedules_are_sorted_and_inside_the_run(
    rate: float, duration: float, arrival: str, seed: int
) -> None:
    offsets = arrival_offsets(rate, duration, arrival, seed)
    assert np.all(np.diff(offsets) >= 0)
    assert offsets.size == 0 or (offsets[0] >= 0 and offsets[-1] < duration)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({}, "exactly one"),
        ({"concurrency": 4, "rate_rps": 10.0}, "exactly one"),
        ({"concurrency": 0}, "concurrency"),
        ({"rate_rps": -1.0}, "rate_rps"),
        ({"rate_rps": 10.0, "protocol": "grpc"}, "protocol"),
        ({"rate_rps": 10.0, "arrival": "bursty"}, "arrival"),
        ({"rate_rps": 10.0, "duration_s": 0.0}, "duration_s"),
        ({"rate_rps": 10.0, "timeout_s": 0.0}, "timeout_s"),
        ({"rate_rps": 10.0, "max_connections": 0}, "max_connections"),
        ({"rate_rps": 100_000.0, "duration_s": 3600.0}, "split the run"),
    ],
)
def test_invalid_specs_say_what_is_wrong(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        LoadSpec(**kwargs)  # type: ignore[arg-type]


def test_mode_and_api_key_headers() -> None:
    assert LoadSpec(concurrency=2).mode == "closed"
    spec = LoadSpec(rate_rps=5.0, api_key="k1")
    assert spec.mode == "open"
    assert spec.headers() == (("Authorization", "Bearer k1"),)
    assert LoadSpec(rate_rps=5.0).headers() == ()
