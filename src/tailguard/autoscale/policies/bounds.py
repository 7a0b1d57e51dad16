"""Bounds, cooldowns and clamps: the one place that wraps every autoscaling policy.

A policy says how many replicas it wants; :func:`apply_bounds` turns that into what the
controller may do: clamp to ``[min_replicas, max_replicas]``, limit the step, respect the
scale-up / scale-down cooldowns, keep one replica while there is demand (scale *from* zero)
and allow zero only when ``min_replicas == 0`` and the deployment has been idle for
``scale_to_zero_grace_s`` (Knative's ``scale-to-zero-grace-period``, default 30 s).

:class:`Autoscaler` pairs a pure policy ``decide(snapshot, state, config, now)`` with its
config and a :class:`BoundsConfig`, so the live controller and the simulator call one thing::

    scaler = make_autoscaler("hpa", BoundsConfig(min_replicas=1, max_replicas=20))
    state = scaler.initial_state()
    replicas, state = scaler.decide(snapshot, state, now=12.0)
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, Self, TypeVar

from tailguard.autoscale.policies._history import STATE_VERSION
from tailguard.autoscale.snapshot import MetricsSnapshot

__all__ = ["Autoscaler", "AutoscalerState", "BoundsConfig", "BoundsState", "apply_bounds"]


class PolicyState(Protocol):
    def state_dict(self) -> dict[str, Any]: ...


StateT = TypeVar("StateT", bound=PolicyState)
_StateCo = TypeVar("_StateCo", bound=PolicyState, covariant=True)
ConfigT = TypeVar("ConfigT")
DecideFn = Callable[[MetricsSnapshot, StateT, ConfigT, float], tuple[int, StateT]]


@dataclass(frozen=True)
class BoundsConfig:
    """Limits applied to every policy's recommendation. Durations in seconds."""

    min_replicas: int = 1
    max_replicas: int = 100
    scale_up_cooldown_s: float = 0.0
    scale_down_cooldown_s: float = 0.0
    max_scale_up_step: int | None = None
    max_scale_down_step: int | None = None
    scale_to_zero_grace_s: float = 30.0

    def __post_init__(self) -> None:
        if self.min_replicas < 0:
            raise ValueError(f"min_replicas must be >= 0, got {self.min_replicas}")
        if self.max_replicas < max(self.min_replicas, 1):
            raise ValueError(f"max_replicas ({self.max_replicas}) must be >= max(min_replicas, 1)")
        for name in ("scale_up_cooldown_s", "scale_down_cooldown_s", "scale_to_zero_grace_s"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0")
        for name in ("max_scale_up_step", "max_scale_down_step"):
            step = getattr(self, name)
            if step is not None and step < 1:
                raise ValueError(f"{name} must be >= 1 or None")


@dataclass(frozen=True)
class BoundsState:
    """When the replica count last changed and when demand was last seen."""

    last_change_s: float | None = None
    last_demand_s: float | None = None

    def state_dict(self) -> dict[str, Any]:
        return {"last_change_s": self.last_change_s, "last_demand_s": self.last_demand_s}

    @classmethod
    def from_state_dict(cls, raw: dict[str, Any]) -> Self:
        return cls(raw.get("last_change_s"), raw.get("last_demand_s"))


def apply_bounds(
    desired: int,
    snapshot: MetricsSnapshot,
    state: BoundsState,
    config: BoundsConfig,
    now: float,
) -> tuple[int, BoundsState]:
    """Turn a policy's ``desired`` count into the count the controller may apply."""
    current = snapshot.current_replicas
    demand = snapshot.has_demand
    last_demand = now if demand else state.last_demand_s
    target = min(max(desired, config.min_replicas), config.max_replicas)
    if target > current and config.max_scale_up_step is not None:
        target = min(target, current + config.max_scale_up_step)
    if target < current and config.max_scale_down_step is not None:
        target = max(target, current - config.max_scale_down_step)
    since_change = math.inf if state.last_change_s is None else now - state.last_change_s
    from_zero = current == 0 and demand
    if target > current and since_change < config.scale_up_cooldown_s and not from_zero:
        target = current
    if target < current and since_change < config.scale_down_cooldown_s:
        target = current
    if target == 0:
        recently_busy = last_demand is not None and now - last_demand < config.scale_to_zero_grace_s
        # Zero is a state only an idle deployment may reach; demand at zero means scale up.
        if demand or (recently_busy and current > 0):
            target = 1
    target = min(max(target, config.min_replicas), config.max_replicas)
    if target == 0 and demand:
        target = 1
    changed = state.last_change_s if target == current else now
    return target, BoundsState(last_change_s=changed, last_demand_s=last_demand)


@dataclass(frozen=True)
class AutoscalerState(Generic[StateT]):
    """The wrapped policy's state and the bounds' state, saved and restored together."""

    policy: StateT
    bounds: BoundsState = field(default_factory=BoundsState)

    def state_dict(self) -> dict[str, Any]:
        return {
            "version": STATE_VERSION,
            "policy": self.policy.state_dict(),
            "bounds": self.bounds.state_dict(),
        }


class _StateType(Protocol[_StateCo]):
    def __call__(self) -> _StateCo: ...

    def from_state_dict(self, raw: dict[str, Any]) -> _StateCo: ...


@dataclass(frozen=True)
class Autoscaler(Generic[ConfigT, StateT]):
    """A pure policy bound to its config and wrapped once in :class:`BoundsConfig`."""

    name: str
    decide_fn: DecideFn[StateT, ConfigT]
    config: ConfigT
    state_type: _StateType[StateT]
    bounds: BoundsConfig = field(default_factory=BoundsConfig)

    def initial_state(self) -> AutoscalerState[StateT]:
        return AutoscalerState(policy=self.state_type())

    def decide(
        self, snapshot: MetricsSnapshot, state: AutoscalerState[StateT], now: float
    ) -> tuple[int, AutoscalerState[StateT]]:
        desired, inner = self.decide_fn(snapshot, state.policy, self.config, now)
        replicas, bounds_state = apply_bounds(desired, snapshot, state.bounds, self.bounds, now)
        return replicas, AutoscalerState(policy=inner, bounds=bounds_state)

    def load_state_dict(self, raw: dict[str, Any]) -> AutoscalerState[StateT]:
        if raw.get("version") != STATE_VERSION:
            raise ValueError(
                f"autoscaler state version {raw.get('version')!r} is not {STATE_VERSION}: "
                "start from a fresh state"
            )
        return AutoscalerState(
            policy=self.state_type.from_state_dict(raw["policy"]),
            bounds=BoundsState.from_state_dict(raw["bounds"]),
        )
