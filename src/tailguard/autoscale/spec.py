"""Per-deployment autoscaling settings in the serve config (``autoscaling:`` of a deployment).

Example::

    deployments:
      - name: minilm
        model: tailguard.models.minilm:MiniLM
        replicas: 1               # initial count
        p99_ms: 100               # the slo policy's objective unless options set slo_p99_s
        autoscaling:
          policy: slo             # slo | hpa | concurrency
          min_replicas: 1         # 0 = scale to zero
          max_replicas: 4
          tick_s: 1.0
          window_s: 10.0
          options:                # the policy's own config fields, and the bounds' ones
            rate_headroom: 0.2
            scale_down_stabilization_s: 60
            scale_up_cooldown_s: 0    # BoundsConfig: cooldowns, steps, scale_to_zero_grace_s

Options are checked when the config is loaded: an unknown name is an error that lists the
known ones.
"""

from __future__ import annotations

from dataclasses import fields
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from tailguard.autoscale.policies import Autoscaler, BoundsConfig, make_autoscaler

_BOUNDS_OPTIONS = frozenset(f.name for f in fields(BoundsConfig)) - {
    "min_replicas",
    "max_replicas",
}


class AutoscalingSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    policy: Literal["slo", "hpa", "concurrency"] = "slo"
    min_replicas: int = Field(1, ge=0, le=1000)
    max_replicas: int = Field(8, ge=1, le=1000)
    tick_s: float = Field(1.0, gt=0, description="controller period")
    window_s: float = Field(10.0, gt=0, description="metrics window of the snapshot")
    recent_window_s: float = Field(
        2.0, gt=0, description="short window of the recent arrival rate (capped at window_s)"
    )
    history: int = Field(20, ge=1, le=1000, description="scaling decisions kept for status")
    options: dict[str, Any] = Field(default_factory=dict, description="policy config fields")

    @model_validator(mode="after")
    def _bounds(self) -> AutoscalingSpec:
        if self.min_replicas > self.max_replicas:
            raise ValueError(f"min_replicas {self.min_replicas} > max_replicas {self.max_replicas}")
        self.autoscaler()  # an unknown or invalid option fails here, at config load
        return self

    def autoscaler(self, p99_ms: float | None = None) -> Autoscaler[Any, Any]:
        """The configured policy wrapped in its bounds.

        ``options`` naming a :class:`BoundsConfig` field (cooldowns, steps,
        ``scale_to_zero_grace_s``) go to the bounds, the rest to the policy. The ``slo``
        policy's objective ``slo_p99_s`` defaults to the deployment's ``p99_ms``.
        """
        bound_opts = {k: v for k, v in self.options.items() if k in _BOUNDS_OPTIONS}
        policy_opts = {k: v for k, v in self.options.items() if k not in _BOUNDS_OPTIONS}
        if self.policy == "slo" and "slo_p99_s" not in policy_opts and p99_ms is not None:
            policy_opts["slo_p99_s"] = p99_ms / 1000.0
        try:
            bounds = BoundsConfig(
                min_replicas=self.min_replicas, max_replicas=self.max_replicas, **bound_opts
            )
            return make_autoscaler(self.policy, bounds, **policy_opts)
        except TypeError as exc:  # a dataclass refusing a value of the wrong kind
            raise ValueError(f"autoscaling options: {exc}") from exc
        except ValueError as exc:
            if "unknown" not in str(exc):
                raise
            bounds_known = ", ".join(sorted(_BOUNDS_OPTIONS))
            raise ValueError(f"{exc}; bounds options are {bounds_known}") from exc
