"""Assemble a simulation from CLI flags and an optional YAML file, run it, format the result.

YAML layout (every section and key optional; flags given on the command line win)::

    service:                      # the service-time profile
      fixed_ms: 20                #   a + b * batch ...
      per_row_ms: 2
      max_batch_size: 16
      # table_ms: {1: 22, 4: 28, 16: 52}   ... or measured points (ms per batch size)
    sim: {max_wait_ms: 5, cold_start_s: 10, tick_s: 1, metrics_window_s: 10,
          initial_replicas: 1, warmup_s: 0}
    bounds: {min_replicas: 1, max_replicas: 100}
    policies:                     # per-policy options (fields of SloConfig, HpaConfig, ...)
      hpa: {target_utilization: 0.6}
      concurrency: {target_ongoing_requests: 2, panic: true}
"""

from __future__ import annotations

import types
import typing
from dataclasses import dataclass, fields, replace
from enum import Enum
from pathlib import Path
from typing import Any

import yaml

from tailguard.autoscale.policies import BoundsConfig, make_autoscaler
from tailguard.autoscale.policies.slo import SloConfig
from tailguard.autoscale.sim import SimConfig, SimResult, simulate
from tailguard.autoscale.snapshot import ServiceProfile
from tailguard.autoscale.traces import generate

__all__ = ["Scenario", "build_scenario", "format_result", "parse_options", "run_scenario"]


@dataclass(frozen=True)
class Scenario:
    """Everything one simulation run needs."""

    policy: str
    trace: str
    seed: int
    sim: SimConfig
    bounds: BoundsConfig
    policy_options: tuple[tuple[str, Any], ...] = ()


def _coerce(value: Any, annotation: Any) -> Any:
    """Convert a CLI/YAML scalar to a dataclass field's annotated type."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if value is None or (isinstance(value, str) and value.lower() in {"none", "null"}):
            return None
        return _coerce(value, args[0])
    if annotation is bool:
        if isinstance(value, str):
            if value.lower() not in {"true", "false", "1", "0", "yes", "no", "on", "off"}:
                raise ValueError(f"{value!r} is not a boolean")
            return value.lower() in {"true", "1", "yes", "on"}
        return bool(value)
    if annotation in (int, float, str):
        return annotation(value)
    if isinstance(annotation, type) and issubclass(annotation, Enum):
        return annotation(value)
    return value


def _typed(config_type: type, options: dict[str, Any], what: str) -> dict[str, Any]:
    hints = typing.get_type_hints(config_type)
    known = {f.name for f in fields(config_type)}
    unknown = sorted(set(options) - known)
    if unknown:
        raise ValueError(f"unknown {what} option(s) {unknown}: known are {sorted(known)}")
    return {k: _coerce(v, hints[k]) for k, v in options.items()}


def parse_options(items: list[str]) -> dict[str, str]:
    """``["key=value", ...]`` -> dict; an item without ``=`` is an error that says so."""
    out = {}
    for item in items:
        key, eq, value = item.partition("=")
        if not eq or not key.strip():
            raise ValueError(f"option {item!r} is not key=value")
        out[key.strip()] = value.strip()
    return out


def _profile(section: dict[str, Any], flags: dict[str, Any]) -> ServiceProfile:
    max_batch = int(flags.get("max_batch_size") or section.get("max_batch_size", 16))
    table = section.get("table_ms")
    if table and not (flags.get("fixed_ms") or flags.get("per_row_ms")):
        return ServiceProfile.from_table(
            {int(k): float(v) / 1e3 for k, v in table.items()}, max_batch_size=max_batch
        )
    fixed_ms = flags.get("fixed_ms")
    per_row_ms = flags.get("per_row_ms")
    return ServiceProfile(
        fixed_s=float(section.get("fixed_ms", 20.0) if fixed_ms is None else fixed_ms) / 1e3,
        per_row_s=float(section.get("per_row_ms", 2.0) if per_row_ms is None else per_row_ms) / 1e3,
        max_batch_size=max_batch,
    )


def build_scenario(
    policy: str,
    trace: str,
    duration_s: float,
    seed: int = 0,
    slo_ms: float | None = None,
    config_path: str | Path | None = None,
    policy_options: dict[str, str] | None = None,
    **flags: Any,
) -> Scenario:
    """Merge defaults < YAML < flags. ``flags``: service (fixed_ms, per_row_ms,
    max_batch_size), sim (SimConfig fields) and bounds (BoundsConfig fields); None = unset."""
    doc: dict[str, Any] = {}
    if config_path is not None:
        loaded = yaml.safe_load(Path(config_path).read_text())
        if loaded is not None and not isinstance(loaded, dict):
            raise ValueError(f"{config_path}: expected a mapping at the top level")
        doc = loaded or {}
    set_flags = {k: v for k, v in flags.items() if v is not None}
    profile = _profile(doc.get("service") or {}, set_flags)
    sim_keys = {f.name for f in fields(SimConfig)} - {"duration_s", "profile", "slo_p99_ms"}
    bound_keys = {f.name for f in fields(BoundsConfig)}
    sim_opts = {**(doc.get("sim") or {}), **{k: v for k, v in set_flags.items() if k in sim_keys}}
    bound_opts = {
        **(doc.get("bounds") or {}),
        **{k: v for k, v in set_flags.items() if k in bound_keys},
    }
    stray = set(set_flags) - sim_keys - bound_keys - {"fixed_ms", "per_row_ms", "max_batch_size"}
    if stray:
        raise ValueError(f"unknown setting(s) {sorted(stray)}")
    slo = float(slo_ms if slo_ms is not None else (doc.get("sim") or {}).get("slo_p99_ms", 200.0))
    sim_opts.pop("slo_p99_ms", None)
    sim = SimConfig(
        duration_s=duration_s,
        profile=profile,
        slo_p99_ms=slo,
        **_typed(SimConfig, sim_opts, "sim"),
    )
    bounds = BoundsConfig(**_typed(BoundsConfig, bound_opts, "bounds"))
    opts = {**((doc.get("policies") or {}).get(policy) or {}), **(policy_options or {})}
    return Scenario(policy, trace, seed, sim, bounds, tuple(sorted(opts.items())))


def run_scenario(scenario: Scenario) -> SimResult:
    """Generate the trace and simulate the policy on it."""
    base = make_autoscaler(scenario.policy, scenario.bounds)
    options = _typed(type(base.config), dict(scenario.policy_options), scenario.policy)
    if isinstance(base.config, SloConfig) and "slo_p99_s" not in options:
        options["slo_p99_s"] = scenario.sim.slo_p99_ms / 1e3  # ours aims at the run's SLO
    scaler = replace(base, config=replace(base.config, **options)) if options else base
    arrivals = generate(scenario.trace, scenario.sim.duration_s, scenario.seed)
    return simulate(arrivals, scaler, scenario.sim)


def format_result(result: SimResult) -> str:
    """A few aligned lines for the terminal."""
    d = result.to_dict()
    rows = [
        ("policy", d["policy"]),
        ("requests", f"{d['n_requests']:,}"),
        (f"within SLO ({d['slo_ms']:g} ms)", f"{100 * d['slo_attainment']:.3f} %"),
        ("P50 / P99 / P99.9", f"{d['p50_ms']:.1f} / {d['p99_ms']:.1f} / {d['p999_ms']:.1f} ms"),
        ("replica-seconds", f"{d['replica_seconds']:,.0f}"),
        ("mean / max replicas", f"{d['mean_replicas']:.2f} / {d['max_replicas']}"),
        ("scaling events", str(d["scaling_events"])),
        ("unserved", str(d["unserved"])),
        ("simulated in", f"{d['wall_s']:.2f} s"),
    ]
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)
