"""Per-tenant demand and the max-min fair share: who is the overload, and how fast it drains."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tailguard.serve.deployment.demand import Demand
from tailguard.serve.gate.tenants import Priority

STD, CRIT, SHED = Priority.STANDARD, Priority.CRITICAL, Priority.SHEDDABLE


def _asking(d: Demand, tenant: str, rows_per_s: float, *, priority: Priority = STD,
            weight: float = 1.0, now: float = 0.0) -> None:
    """Give ``tenant`` a demand of ``rows_per_s`` at ``now`` (one burst of rate * tau rows)."""
    d.asked(priority, tenant, weight=weight, rows=round(rows_per_s * d.tau_s), now=now)


def test_a_light_tenant_is_within_its_share_and_the_flood_drains_at_what_is_left() -> None:
    d = Demand(tau_s=1.0)
    _asking(d, "light", 120)
    _asking(d, "flood", 1200)
    light = d.share(STD, "light", weight=1.0, capacity_rows_per_s=400, now=0.0)
    flood = d.share(STD, "flood", weight=1.0, capacity_rows_per_s=400, now=0.0)
    assert light.within and not flood.within
    assert flood.rows_per_s == pytest.approx(400 - 120)  # the light one takes all it asks
    assert flood.demand_rows_per_s == pytest.approx(1200)
    assert light.rows_per_s >= 120


def test_two_floods_split_the_capacity_by_weight() -> None:
    d = Demand(tau_s=1.0)
    _asking(d, "a", 1000, weight=1.0)
    _asking(d, "b", 1000, weight=3.0)
    a = d.share(STD, "a", weight=1.0, capacity_rows_per_s=400, now=0.0)
    b = d.share(STD, "b", weight=3.0, capacity_rows_per_s=400, now=0.0)
    assert not a.within and not b.within
    assert a.rows_per_s == pytest.approx(100) and b.rows_per_s == pytest.approx(300)


def test_a_higher_class_takes_what_it_asks_first_and_a_lower_one_takes_nothing() -> None:
    d = Demand(tau_s=1.0)
    _asking(d, "crit", 300, priority=CRIT)
    _asking(d, "low", 5000, priority=SHED)
    _asking(d, "std", 150)
    std = d.share(STD, "std", weight=1.0, capacity_rows_per_s=400, now=0.0)
    assert not std.within and std.rows_per_s == pytest.approx(100)
    crit = d.share(CRIT, "crit", weight=1.0, capacity_rows_per_s=400, now=0.0)
    assert crit.within  # the lower classes are invisible to it
    low = d.share(SHED, "low", weight=1.0, capacity_rows_per_s=400, now=0.0)
    assert not low.within and low.rows_per_s == 0.0


def test_every_demand_fits_so_everyone_is_within_and_may_use_the_spare() -> None:
    d = Demand(tau_s=1.0)
    _asking(d, "a", 100)
    _asking(d, "b", 50)
    a = d.share(STD, "a", weight=1.0, capacity_rows_per_s=400, now=0.0)
    assert a.within and a.rows_per_s == pytest.approx(400 - 50)


def test_tolerance_keeps_a_tenant_near_its_share_within() -> None:
    d = Demand(tolerance=1.25)
    _asking(d, "flood", 5000)
    _asking(d, "near", 240)  # its share is 200: 1.2x
    assert d.share(STD, "near", weight=1.0, capacity_rows_per_s=400, now=0.0).within
    _asking(d, "near", 20)  # 260: 1.3x
    assert not d.share(STD, "near", weight=1.0, capacity_rows_per_s=400, now=0.0).within
    strict = Demand(tolerance=1.0)
    _asking(strict, "flood", 5000)
    _asking(strict, "near", 210)
    assert not strict.share(STD, "near", weight=1.0, capacity_rows_per_s=400, now=0.0).within


def test_measured_service_overrides_a_low_capacity_estimate() -> None:
    d = Demand(tau_s=1.0)
    _asking(d, "a", 1000)
    _asking(d, "b", 1000)
    d.served(STD, "a", rows=300, now=0.0)
    d.served(STD, "b", rows=300, now=0.0)
    # The model says 400 rows/s, the replicas are serving 600: the larger is the capacity.
    a = d.share(STD, "a", weight=1.0, capacity_rows_per_s=400, now=0.0)
    assert a.capacity_rows_per_s == pytest.approx(600) and a.rows_per_s == pytest.approx(300)
    d.served(STD, "a", rows=100, now=0.0)  # a drains faster than its share: that counts
    a = d.share(STD, "a", weight=1.0, capacity_rows_per_s=400, now=0.0)
    assert a.rows_per_s == pytest.approx(400)


def test_demand_decays_when_a_tenant_stops_asking() -> None:
    d = Demand(tau_s=0.5)
    _asking(d, "a", 1000)
    _asking(d, "b", 100)
    assert not d.share(STD, "a", weight=1.0, capacity_rows_per_s=400, now=0.0).within
    assert d.asked_rows_per_s(STD, "a", 2.0) == pytest.approx(1000 * math.exp(-4), rel=1e-6)
    assert d.share(STD, "a", weight=1.0, capacity_rows_per_s=400, now=2.0).within
    assert d.served_rows_per_s(STD, "nobody", 2.0) == 0.0


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="tau_s"):
        Demand(tau_s=0.0)
    with pytest.raises(ValueError, match="tolerance"):
        Demand(tolerance=0.9)
    d = Demand(tau_s=1.0)
    with pytest.raises(ValueError, match="weight"):
        d.asked(STD, "a", weight=0.0, rows=1, now=0.0)
    with pytest.raises(ValueError, match="weight"):
        d.share(STD, "a", weight=math.inf, capacity_rows_per_s=1.0, now=0.0)


@settings(max_examples=200, deadline=None)
@given(
    demands=st.lists(st.tuples(st.integers(0, 2000), st.sampled_from([0.5, 1.0, 2.0, 3.0])),
                     min_size=1, max_size=6),
    capacity=st.floats(1.0, 3000.0),
)
def test_water_filling_shares_exactly_the_capacity_or_satisfies_everyone(
        demands: list[tuple[int, float]], capacity: float) -> None:
    d = Demand(tau_s=1.0, tolerance=1.0)
    for i, (rows, weight) in enumerate(demands):
        d.asked(STD, f"t{i}", weight=weight, rows=rows, now=0.0)
    shares = [d.share(STD, f"t{i}", weight=w, capacity_rows_per_s=capacity, now=0.0)
              for i, (_, w) in enumerate(demands)]
    got = [s.demand_rows_per_s if s.within else s.rows_per_s for s in shares]
    total = sum(rows for rows, _ in demands)
    assert sum(got) == pytest.approx(min(capacity, total), rel=1e-6, abs=1e-6)
    capped = [s.rows_per_s / w for s, (_, w) in zip(shares, demands, strict=True)
              if not s.within]
    for s, (_, w) in zip(shares, demands, strict=True):
        if s.within:  # nobody capped gets less per unit of weight than a satisfied one asks
            assert all(level >= s.demand_rows_per_s / w - 1e-6 for level in capped)
