"""Autoscaling policies (pure) and the bounds that wrap them all."""

from __future__ import annotations

from dataclasses import fields, is_dataclass, replace
from typing import Any

from tailguard.autoscale.policies import concurrency, hpa, slo
from tailguard.autoscale.policies.bounds import (
    Autoscaler,
    AutoscalerState,
    BoundsConfig,
    BoundsState,
    apply_bounds,
)

__all__ = [
    "POLICY_NAMES",
    "Autoscaler",
    "AutoscalerState",
    "BoundsConfig",
    "BoundsState",
    "apply_bounds",
    "make_autoscaler",
]

_REGISTRY: dict[str, tuple[Any, Any, Any]] = {
    "slo": (slo.decide, slo.SloConfig, slo.SloState),
    "hpa": (hpa.decide, hpa.HpaConfig, hpa.HpaState),
    "concurrency": (
        concurrency.decide,
        concurrency.ConcurrencyConfig,
        concurrency.ConcurrencyState,
    ),
}
POLICY_NAMES: tuple[str, ...] = tuple(_REGISTRY)


def make_autoscaler(
    name: str, bounds: BoundsConfig | None = None, config: Any = None, **overrides: Any
) -> Autoscaler[Any, Any]:
    """The named policy with its default config (or ``config``), ``overrides`` applied."""
    if name not in _REGISTRY:
        raise ValueError(f"unknown policy {name!r}: choose one of {', '.join(POLICY_NAMES)}")
    decide, config_type, state_type = _REGISTRY[name]
    cfg = config if config is not None else config_type()
    if overrides:
        known = {f.name for f in fields(config_type)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise ValueError(
                f"unknown {name} option(s) {unknown}: known are {', '.join(sorted(known))}"
            )
        assert is_dataclass(cfg) and not isinstance(cfg, type)
        cfg = replace(cfg, **overrides)
    return Autoscaler(name, decide, cfg, state_type, bounds or BoundsConfig())
