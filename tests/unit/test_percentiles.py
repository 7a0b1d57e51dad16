"""The project's one percentile: nearest rank, ``q`` in percent."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tailguard.observe.percentiles import grouped_percentiles, percentile, percentiles


def test_definition_on_known_arrays() -> None:
    values = np.arange(1, 101, dtype=float)  # 1..100
    assert percentile(values, 99) == 99.0  # linear interpolation would say 99.01
    assert percentile(values, 50) == 50.0  # ... and 50.5
    assert percentiles(values, (0, 90, 99.9, 100)) == [1.0, 90.0, 100.0, 100.0]
    thousand = np.arange(1, 1001, dtype=float)
    # 99.9 % of 1000 is rank 999 exactly; numpy's inverted_cdf says 1000 (float error).
    assert percentiles(thousand, (50, 99, 99.9)) == [500.0, 990.0, 999.0]
    shuffled = np.random.default_rng(1).permutation(thousand)
    assert percentile(shuffled, 99.9) == 999.0  # order does not matter
    assert percentiles(np.array([7.0]), (0, 50, 99.9)) == [7.0, 7.0, 7.0]
    assert percentile([3.0, 1.0, 2.0], 50) == 2.0  # any array-like


def test_nothing_has_no_percentile() -> None:
    assert percentile(np.array([]), 99) is None
    assert percentiles([], (50, 99)) == [None, None]


def test_infinite_samples_count_like_any_other() -> None:
    # Chaos runs count a failed request as infinitely late.
    values = np.array([1.0, 2.0, np.inf, np.inf])
    assert percentiles(values, (50, 99)) == [2.0, np.inf]


def test_input_is_not_reordered() -> None:
    values = np.array([3.0, 1.0, 2.0])
    percentiles(values, (50,))
    np.testing.assert_array_equal(values, [3.0, 1.0, 2.0])


@pytest.mark.parametrize("q", [-1.0, 100.5, 0.99 * 1000, float("nan")])
def test_q_outside_percent_is_refused(q: float) -> None:
    with pytest.raises(ValueError, match="in percent"):
        percentile([1.0, 2.0], q)
    with pytest.raises(ValueError, match="in percent"):
        grouped_percentiles(np.array([0, 0]), np.array([1.0, 2.0]), 1, (q,))


def test_agrees_with_numpy_inverted_cdf_away_from_float_ties() -> None:
    rng = np.random.default_rng(0)
    for n in (1, 2, 3, 7, 64, 999, 4096):
        values = rng.exponential(1.0, size=n)
        expected = np.percentile(values, (1, 50, 90, 99), method="inverted_cdf")
        assert percentiles(values, (1, 50, 90, 99)) == expected.tolist()


# q with one decimal (P99.9) as an exact Fraction, so the checks below are exact arithmetic.
tenths = st.integers(0, 1000).map(lambda k: Fraction(k, 10))
samples = st.lists(st.integers(-50, 50).map(float), min_size=1, max_size=300)


@given(samples, tenths)
def test_result_is_the_nearest_rank_sample(values: list[float], q: Fraction) -> None:
    p = percentile(values, float(q))
    assert p is not None
    assert p in values
    arr = np.asarray(values)
    n = len(values)
    at_or_below = int(np.count_nonzero(arr <= p))
    below = int(np.count_nonzero(arr < p))
    assert at_or_below * 100 >= q * n  # at least q % of samples are <= it
    if q > 0:
        assert below * 100 < q * n  # fewer than q % are < it: no smaller sample qualifies
    else:
        assert p == min(values)


@given(
    st.lists(st.tuples(st.integers(-1, 5), st.integers(0, 30).map(float)), max_size=300),
    st.lists(tenths, min_size=1, max_size=4),
)
def test_grouped_twin_agrees_group_by_group(
    pairs: list[tuple[int, float]], qs: list[Fraction]
) -> None:
    group = np.array([g for g, _ in pairs], dtype=np.int64)
    values = np.array([v for _, v in pairs], dtype=np.float64)
    fq = [float(q) for q in qs]
    per_group = grouped_percentiles(group, values, 6, fq)
    assert len(per_group) == len(fq)
    for g in range(6):
        expected = percentiles(values[group == g], fq)
        got = [None if np.isnan(col[g]) else float(col[g]) for col in per_group]
        assert got == expected


def test_grouped_on_no_samples_is_nan_everywhere() -> None:
    (p99,) = grouped_percentiles(np.array([], dtype=np.int64), np.array([]), 3, (99,))
    assert p99.shape == (3,) and np.isnan(p99).all()
