"""Capacity planning: replicas, instances and cost per instance type, checked by simulation.

For a target load (a rate, or a trace of arrival times), a P99 objective, a measured service
profile (``tailguard profile``) and a price table (:mod:`tailguard.ops.prices`), each
instance type gets:

1. its service profile (the measured one moved to that hardware by the table's speedup or
   factors);
2. a first replica count from the queueing model
   (:func:`~tailguard.autoscale.queueing.min_replicas_for_latency`);
3. the discrete-event simulator (:func:`~tailguard.autoscale.sim.simulate`) run on the very
   arrivals at a fixed count: up (galloping) until the simulated P99 meets the SLO, then
   bisected down to the fewest replicas that still meet it;
4. instances = ceil(replicas / replicas_per_instance), cost per hour and per million requests.

The cheapest type that meets the SLO is marked; warnings say when a GPU would be paid for a
load a CPU meets more cheaply, and the reverse::

    arrivals = plan_arrivals(rate_rps=300, duration_s=60)
    plan = plan_capacity(arrivals, 60, slo_ms=100, profile=measured, prices=load_prices())
    print(format_plan(plan))
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from tailguard.autoscale.policies import BoundsConfig, make_autoscaler
from tailguard.autoscale.queueing import min_replicas_for_latency
from tailguard.autoscale.sim import SimConfig, SimResult, simulate
from tailguard.autoscale.snapshot import ServiceProfile
from tailguard.autoscale.traces import generate
from tailguard.ops.prices import InstanceType, PriceTable

__all__ = ["Plan", "PlanChoice", "PlanConfig", "format_plan", "plan_arrivals", "plan_capacity",
           "sim_p99_ms"]


@dataclass(frozen=True)
class PlanConfig:
    """How a plan is computed. Durations in seconds unless the name says otherwise."""

    max_wait_ms: float = 2.0  # the deployment's batch wait
    warmup_fraction: float = 0.1  # of the simulated span, left out of the P99
    max_replicas: int = 1000  # per instance type: beyond it the type is infeasible
    overhead_ms: float = 0.0  # per-request gateway overhead added to the simulated latency
    chosen: str | None = None  # the instance type in use or intended (warned about)

    def __post_init__(self) -> None:
        if self.max_wait_ms < 0 or self.overhead_ms < 0:
            raise ValueError("max_wait_ms and overhead_ms must be >= 0")
        if not 0 <= self.warmup_fraction < 1:
            raise ValueError("warmup_fraction must be in [0, 1)")
        if self.max_replicas < 1:
            raise ValueError("max_replicas must be >= 1")


@dataclass(frozen=True)
class PlanChoice:
    """One instance type's answer. ``replicas`` is None when it cannot meet the SLO."""

    instance: str
    kind: str
    meets_slo: bool
    replicas: int | None
    instances: int | None
    max_batch_size: int
    predicted_p50_ms: float | None
    predicted_p99_ms: float | None
    analytic_replicas: int | None
    hourly_usd: float | None
    usd_per_million: float | None
    cheapest: bool = False
    note: str = ""


@dataclass(frozen=True)
class Plan:
    """Every instance type's choice, the cheapest that meets the SLO, and warnings."""

    mean_rps: float
    peak_rps: float
    slo_ms: float
    simulated_s: float
    choices: tuple[PlanChoice, ...]
    cheapest: str | None
    warnings: tuple[str, ...] = field(default_factory=tuple)

    def choice(self, instance: str) -> PlanChoice:
        return next(c for c in self.choices if c.instance == instance)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["choices"] = [asdict(c) for c in self.choices]
        data["warnings"] = list(self.warnings)
        return data


def plan_arrivals(rate_rps: float | None = None, trace: str | None = None,
                  duration_s: float = 60.0, seed: int = 0) -> np.ndarray:
    """Arrival times of the target load: Poisson at ``rate_rps``, or a TRACE string."""
    if (rate_rps is None) == (trace is None):
        raise ValueError("give exactly one of a rate or a trace")
    if rate_rps is not None:
        if not rate_rps > 0:
            raise ValueError(f"rate must be > 0, got {rate_rps}")
        trace = f"poisson:rate={rate_rps}"
    assert trace is not None
    return generate(trace, duration_s, seed)


def _simulate(arrivals: np.ndarray, duration_s: float, profile: ServiceProfile, replicas: int,
              slo_ms: float, cfg: PlanConfig) -> SimResult:
    fixed = make_autoscaler("concurrency", BoundsConfig(min_replicas=replicas,
                                                        max_replicas=replicas))
    sim_cfg = SimConfig(
        duration_s=duration_s, profile=profile, max_wait_ms=cfg.max_wait_ms, cold_start_s=0.0,
        tick_s=max(duration_s / 4, 1.0), slo_p99_ms=slo_ms, initial_replicas=replicas,
        warmup_s=duration_s * cfg.warmup_fraction, drain_limit_s=max(60.0, duration_s),
    )
    return simulate(arrivals, fixed, sim_cfg)


def sim_p99_ms(arrivals: np.ndarray, duration_s: float, profile: ServiceProfile, replicas: int,
               cfg: PlanConfig | None = None) -> float:
    """Simulated P99 (ms, overhead included) at a fixed replica count; inf when unstable."""
    cfg = cfg or PlanConfig()
    res = _simulate(arrivals, duration_s, profile, replicas, 1e9, cfg)
    if res.unserved:
        return math.inf
    return res.p99_s * 1e3 + cfg.overhead_ms


class _Search:
    """Simulated runs at fixed counts, cached: the fewest replicas whose P99 meets the SLO."""

    def __init__(self, arrivals: np.ndarray, duration_s: float, profile: ServiceProfile,
                 slo_ms: float, cfg: PlanConfig) -> None:
        self._args = (arrivals, duration_s, profile)
        self._slo_ms = slo_ms
        self._cfg = cfg
        self.runs: dict[int, SimResult] = {}

    def p99_ms(self, n: int) -> float:
        if n not in self.runs:
            self.runs[n] = _simulate(*self._args, n, self._slo_ms, self._cfg)
        res = self.runs[n]
        return math.inf if res.unserved else res.p99_s * 1e3 + self._cfg.overhead_ms

    def meets(self, n: int) -> bool:
        return n >= 1 and self.p99_ms(n) <= self._slo_ms

    def fewest(self, start: int) -> int | None:
        limit = self._cfg.max_replicas
        start = min(max(start, 1), limit)
        if self.meets(start):
            lo, hi = 0, start  # invariant: meets(hi), not meets(lo) (0 never meets)
        else:
            lo, step = start, 1
            hi = min(start + step, limit)
            while not self.meets(hi):
                if hi >= limit:
                    return None
                lo, step = hi, step * 2
                hi = min(lo + step, limit)
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if self.meets(mid):
                hi = mid
            else:
                lo = mid
        return hi


def _choice(inst: InstanceType, base: ServiceProfile, arrivals: np.ndarray, duration_s: float,
            mean_rps: float, slo_ms: float, cfg: PlanConfig) -> PlanChoice:
    profile = inst.service_profile(base)
    kmax = profile.max_batch_size
    slo_s = slo_ms / 1e3
    if profile.service_time_s(1) + cfg.overhead_ms / 1e3 > slo_s:
        return PlanChoice(inst.name, inst.kind, False, None, None, kmax, None, None, None, None,
                          None, note=f"one request alone takes "
                                     f"{profile.service_time_s(1) * 1e3:.1f} ms > SLO")
    analytic = min_replicas_for_latency(mean_rps, profile, slo_s, batch_wait_s=cfg.max_wait_ms
                                        / 1e3, max_replicas=cfg.max_replicas)
    search = _Search(arrivals, duration_s, profile, slo_ms, cfg)
    n = search.fewest(analytic)
    if n is None:
        return PlanChoice(inst.name, inst.kind, False, None, None, kmax, None, None, analytic,
                          None, None, note=f"more than {cfg.max_replicas} replicas")
    res = search.runs[n]
    instances = math.ceil(n / inst.replicas_per_instance)
    hourly = instances * inst.hourly_usd
    per_million = hourly / (mean_rps * 3600.0) * 1e6 if mean_rps > 0 else math.inf
    return PlanChoice(
        inst.name, inst.kind, True, n, instances, kmax,
        round(res.p50_s * 1e3 + cfg.overhead_ms, 3), round(search.p99_ms(n), 3), analytic,
        round(hourly, 4), round(per_million, 4),
    )


def _warnings(choices: list[PlanChoice], cheapest: PlanChoice | None,
              chosen: str | None) -> list[str]:
    out: list[str] = []
    feasible = [c for c in choices if c.meets_slo and c.hourly_usd is not None]
    if not feasible:
        return ["no instance type meets the SLO: relax the SLO, or profile faster hardware"]
    assert cheapest is not None and cheapest.hourly_usd is not None
    by_kind = {k: min((c for c in feasible if c.kind == k), key=lambda c: c.hourly_usd or 0.0,
                      default=None) for k in ("cpu", "gpu")}
    cpu, gpu = by_kind["cpu"], by_kind["gpu"]
    if cpu is not None and gpu is not None:
        assert cpu.hourly_usd is not None and gpu.hourly_usd is not None
        if cpu.hourly_usd < gpu.hourly_usd:
            out.append(f"a CPU meets this load more cheaply: {cpu.instance} "
                       f"${cpu.hourly_usd:.2f}/h vs the best GPU {gpu.instance} "
                       f"${gpu.hourly_usd:.2f}/h "
                       f"({gpu.hourly_usd / cpu.hourly_usd:.1f}x): do not buy a GPU for it")
        elif gpu.hourly_usd < cpu.hourly_usd:
            out.append(f"a GPU meets this load more cheaply: {gpu.instance} ${gpu.hourly_usd:.2f}/h"
                       f" vs the best CPU {cpu.instance} ${cpu.hourly_usd:.2f}/h "
                       f"({cpu.hourly_usd / gpu.hourly_usd:.1f}x): scaling out CPUs costs more")
    if chosen is not None:
        pick = next((c for c in choices if c.instance == chosen), None)
        if pick is None:
            out.append(f"the chosen instance type {chosen!r} is not in the price table")
        elif not pick.meets_slo:
            out.append(f"the chosen instance type {chosen} cannot meet the SLO: {pick.note}")
        elif pick.kind != cheapest.kind and pick.hourly_usd is not None:
            out.append(f"the chosen {pick.kind.upper()} type {chosen} costs ${pick.hourly_usd:.2f}"
                       f"/h where the {cheapest.kind.upper()} type {cheapest.instance} meets the "
                       f"same SLO for ${cheapest.hourly_usd:.2f}/h")
    return out


def plan_capacity(arrivals: np.ndarray, duration_s: float, slo_ms: float,
                  profile: ServiceProfile, prices: PriceTable,
                  config: PlanConfig | None = None) -> Plan:
    """Plan every instance type of ``prices`` for ``arrivals`` (seconds, sorted, in
    ``[0, duration_s)``) under a P99 of ``slo_ms``; mark the cheapest that meets it."""
    cfg = config or PlanConfig()
    if slo_ms <= 0:
        raise ValueError(f"slo_ms must be > 0, got {slo_ms}")
    arr = np.asarray(arrivals, dtype=np.float64)
    if arr.size == 0:
        raise ValueError("the target load has no arrivals")
    mean_rps = arr.size / duration_s
    peak_rps = float(np.bincount(arr.astype(np.int64)).max())
    choices = [_choice(inst, profile, arr, duration_s, mean_rps, slo_ms, cfg)
               for inst in prices.instances]
    feasible = [c for c in choices if c.meets_slo]
    cheapest = min(feasible, key=lambda c: (c.hourly_usd or 0.0, c.instances or 0),
                   default=None)
    if cheapest is not None:
        choices = [c if c is not cheapest else PlanChoice(**{**asdict(c), "cheapest": True})
                   for c in choices]
        cheapest = next(c for c in choices if c.cheapest)
    return Plan(
        mean_rps=round(mean_rps, 3), peak_rps=peak_rps, slo_ms=slo_ms, simulated_s=duration_s,
        choices=tuple(choices), cheapest=cheapest.instance if cheapest else None,
        warnings=tuple(_warnings(choices, cheapest, cfg.chosen)),
    )


def _f(x: float | int | None, fmt: str = "{:.1f}") -> str:
    return "-" if x is None else fmt.format(x)


def format_plan(plan: Plan) -> str:
    """The table ``tailguard plan`` prints (warnings last, where they are read)."""
    lines = [f"target {plan.mean_rps:g} req/s mean, {plan.peak_rps:g} peak (1 s), "
             f"P99 <= {plan.slo_ms:g} ms, simulated {plan.simulated_s:g} s",
             f"{'':2}{'instance':<12}{'kind':<5}{'replicas':>9}{'instances':>10}{'batch':>6}"
             f"{'P50 ms':>9}{'P99 ms':>9}{'$/hour':>9}{'$/1M req':>10}  note"]
    for c in plan.choices:
        mark = "* " if c.cheapest else "  "
        note = c.note or ("meets SLO" if c.meets_slo else "")
        lines.append(
            f"{mark}{c.instance:<12}{c.kind:<5}{_f(c.replicas, '{:d}'):>9}"
            f"{_f(c.instances, '{:d}'):>10}{c.max_batch_size:>6}{_f(c.predicted_p50_ms):>9}"
            f"{_f(c.predicted_p99_ms):>9}{_f(c.hourly_usd, '{:.2f}'):>9}"
            f"{_f(c.usd_per_million, '{:.3f}'):>10}  {note}"
        )
    lines.append("* cheapest that meets the SLO" if plan.cheapest else "no type meets the SLO")
    lines.extend(f"WARNING: {w}" for w in plan.warnings)
    return "\n".join(lines)
