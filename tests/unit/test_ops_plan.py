"""Capacity planning: cheapest type meeting the SLO, minimal counts, GPU/CPU warnings, prices."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest

from tailguard.autoscale.snapshot import ServiceProfile
from tailguard.ops.plan import (
    Plan,
    PlanConfig,
    format_plan,
    plan_arrivals,
    plan_capacity,
    sim_p99_ms,
)
from tailguard.ops.prices import InstanceType, PriceTable, ServiceOverride, load_prices

# A CPU replica: 10 ms + 2 ms/row; the GPU type below: 4 ms + 0.1 ms/row, batches up to 64.
CPU_PROFILE = ServiceProfile(fixed_s=0.010, per_row_s=0.002, max_batch_size=16)


def _table(cpu_hourly: float = 0.10, gpu_hourly: float = 0.50) -> PriceTable:
    return PriceTable(instances=(
        InstanceType(name="cpu", kind="cpu", hourly_usd=cpu_hourly, replicas_per_instance=4,
                     speedup=1.0),
        InstanceType(name="gpu", kind="gpu", hourly_usd=gpu_hourly, replicas_per_instance=1,
                     fixed_factor=0.4, per_row_factor=0.05, max_batch_size=64),
    ))


def _plan(rate: float, slo_ms: float, table: PriceTable, **cfg: Any) -> Plan:
    arrivals = plan_arrivals(rate_rps=rate, duration_s=30.0, seed=1)
    return plan_capacity(arrivals, 30.0, slo_ms, CPU_PROFILE, table, PlanConfig(**cfg))


def test_low_load_picks_the_cpu_and_warns_against_the_gpu() -> None:
    plan = _plan(100, slo_ms=80, table=_table())
    cpu, gpu = plan.choice("cpu"), plan.choice("gpu")
    assert cpu.meets_slo and gpu.meets_slo
    assert plan.cheapest == "cpu" and cpu.cheapest and not gpu.cheapest
    assert cpu.instances == math.ceil(cpu.replicas / 4)
    assert cpu.hourly_usd == pytest.approx(cpu.instances * 0.10)
    assert cpu.usd_per_million == pytest.approx(
        cpu.hourly_usd / (plan.mean_rps * 3600) * 1e6, rel=1e-3)
    assert any("CPU meets this load more cheaply" in w for w in plan.warnings)
    assert "* cpu" in format_plan(plan)


def test_high_load_with_a_tight_slo_picks_the_gpu_and_warns_against_scaling_out_cpus() -> None:
    # 4000 req/s: a CPU replica tops out at 16/(42 ms) = 380 rows/s, so ~11+ replicas
    # (3 instances at $0.40/h each); one GPU ($0.50/h) serves it.
    plan = _plan(4000, slo_ms=60, table=_table(cpu_hourly=0.40))
    assert plan.cheapest == "gpu"
    assert any("GPU meets this load more cheaply" in w for w in plan.warnings)


def test_chosen_instance_of_the_wrong_kind_is_warned_about() -> None:
    plan = _plan(100, slo_ms=80, table=_table(), chosen="gpu")
    assert any("the chosen GPU type gpu" in w and "cpu" in w for w in plan.warnings)


def test_planned_count_is_the_fewest_that_meet_the_slo_in_simulation() -> None:
    arrivals = plan_arrivals(rate_rps=600, duration_s=30.0, seed=3)
    table = PriceTable(instances=(InstanceType(name="cpu", kind="cpu", hourly_usd=1.0),))
    plan = plan_capacity(arrivals, 30.0, 50.0, CPU_PROFILE, table)
    n = plan.choice("cpu").replicas
    assert n is not None and n >= 2
    cfg = PlanConfig()
    assert sim_p99_ms(arrivals, 30.0, CPU_PROFILE, n, cfg) <= 50.0
    assert sim_p99_ms(arrivals, 30.0, CPU_PROFILE, n - 1, cfg) > 50.0
    assert plan.choice("cpu").predicted_p99_ms == pytest.approx(
        sim_p99_ms(arrivals, 30.0, CPU_PROFILE, n, cfg), abs=1e-2)


def test_an_slo_below_one_request_alone_is_infeasible() -> None:
    table = PriceTable(instances=(InstanceType(name="cpu", kind="cpu", hourly_usd=1.0),))
    plan = _plan(50, slo_ms=5, table=table)
    assert plan.cheapest is None and not plan.choice("cpu").meets_slo
    assert plan.choice("cpu").replicas is None
    assert any("no instance type meets the SLO" in w for w in plan.warnings)


def test_overhead_is_added_to_the_prediction() -> None:
    table = PriceTable(instances=(InstanceType(name="cpu", kind="cpu", hourly_usd=1.0),))
    base = _plan(100, slo_ms=200, table=table).choice("cpu")
    more = _plan(100, slo_ms=200, table=table, overhead_ms=7.0).choice("cpu")
    assert base.replicas == more.replicas
    assert more.predicted_p99_ms == pytest.approx(base.predicted_p99_ms + 7.0, abs=1e-6)


def test_trace_and_rate_are_exclusive() -> None:
    with pytest.raises(ValueError, match="exactly one"):
        plan_arrivals(rate_rps=10, trace="poisson:rate=10")
    arr = plan_arrivals(trace="constant:rate=10", duration_s=5)
    assert arr.size == 50


def test_instance_service_profiles() -> None:
    measured = ServiceProfile.from_table({1: 0.010, 8: 0.024})  # 8 ms + 2 ms/row
    fast = InstanceType(name="f", kind="cpu", hourly_usd=1, speedup=2.0).service_profile(measured)
    assert fast.service_time_s(8) == pytest.approx(0.012)
    gpu = InstanceType(name="g", kind="gpu", hourly_usd=1, fixed_factor=0.5, per_row_factor=0.1,
                       max_batch_size=32).service_profile(measured)
    assert gpu.max_batch_size == 32
    assert gpu.service_time_s(10) == pytest.approx(0.004 + 10 * 0.0002)
    fixed = InstanceType(name="o", kind="gpu", hourly_usd=1,
                         service=ServiceOverride(fixed_ms=3, per_row_ms=0.5)
                         ).service_profile(measured)
    assert fixed.service_time_s(4) == pytest.approx(0.005)
    with pytest.raises(ValueError, match="one of speedup"):
        InstanceType(name="x", kind="cpu", hourly_usd=1, speedup=2, fixed_factor=0.5)


def test_default_price_table_has_cpu_and_gpu_examples(tmp_path: Path) -> None:
    table = load_prices()
    assert {i.kind for i in table.instances} == {"cpu", "gpu"}
    assert table.get().name == table.default_instance
    text = (Path(__file__).parents[2] / "src/tailguard/ops/prices.yaml").read_text()
    assert "EXAMPLE PRICES" in text
    bad = tmp_path / "bad.yaml"
    bad.write_text("instances:\n  - {name: a, kind: tpu, hourly_usd: 1}\n")
    with pytest.raises(ValueError, match="bad.yaml"):
        load_prices(bad)
    with pytest.raises(ValueError, match="unknown instance type"):
        table.get("nope")
