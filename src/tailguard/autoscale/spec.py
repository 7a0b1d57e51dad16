"""Per-deployment autoscaling settings in the serve config (``autoscaling:`` of a deployment).

Example::

    deployments:
      - name: minilm
        model: tailguard.models.minilm:MiniLM
        replicas: 1               # initial count
        p99_ms: 100
        autoscaling:
          policy: slo             # slo | hpa | concurrency
          min_replicas: 1         # 0 = scale to zero
          max_replicas: 4
          tick_s: 1.0
          window_s: 10.0
          options: {headroom: 0.2}  # the policy's own config fields
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class AutoscalingSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    policy: Literal["slo", "hpa", "concurrency"] = "slo"
    min_replicas: int = Field(1, ge=0, le=1000)
    max_replicas: int = Field(8, ge=1, le=1000)
    tick_s: float = Field(1.0, gt=0, description="controller period")
    window_s: float = Field(10.0, gt=0, description="metrics window of the snapshot")
    options: dict[str, Any] = Field(default_factory=dict, description="policy config fields")

    @model_validator(mode="after")
    def _bounds(self) -> AutoscalingSpec:
        if self.min_replicas > self.max_replicas:
            raise ValueError(f"min_replicas {self.min_replicas} > max_replicas {self.max_replicas}")
        return self
