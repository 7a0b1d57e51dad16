"""Admission settings: the one config class of the gate (YAML ``admission:`` and ``decide``).

A request is shed (429, reason ``shed``) when its predicted finish exceeds a fraction of its
SLO budget (the tenant's ``p99_ms``, else the deployment's, else its timeout). The fraction is
per priority class — ``shed_fraction_sheddable`` (0.5), ``shed_fraction_standard`` (0.65),
critical never — and applies to a caller *over* its max-min fair share of the capacity (the
overload). A caller within its share is shed only once it would miss the whole budget: it is
not the cause, and its rows go ahead of the heavier callers'.

0.65 for standard: measured on ``benchmarks/noisy_neighbor.py``, the finish of an over-share
tenant's request runs up to ~1.5x its prediction at P99 (batch times vary under load), and 0.8
left 6-14% of its admitted requests late. ``enabled: false`` turns off rate limits,
concurrency caps and shedding alike, for every caller.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator

from tailguard.serve.gate.tenants import Priority

__all__ = ["AdmissionSettings"]


class AdmissionSettings(BaseModel):
    """Admission control before a request is queued; read by :func:`~.decide.decide`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = True
    shed_fraction_sheddable: float = Field(0.5, gt=0)
    shed_fraction_standard: float = Field(0.65, gt=0)
    shed_fraction_critical: float | None = Field(
        None, gt=0, description="None: critical requests are never shed by feasibility")
    starvation_s: float = Field(
        1.0, gt=0, description="the queue's starvation guard: lower-class wait before promotion")
    min_retry_after_s: float = Field(0.05, gt=0)
    max_retry_after_s: float = Field(60.0, gt=0)
    default_retry_after_s: float = Field(
        1.0, gt=0, description="Retry-After when nothing better is known (cold deployment)")

    @model_validator(mode="after")
    def _retry_bounds(self) -> AdmissionSettings:
        if self.min_retry_after_s > self.max_retry_after_s:
            raise ValueError("admission: need min_retry_after_s <= max_retry_after_s")
        return self

    def shed_fraction(self, priority: Priority, *, within_share: bool = False) -> float | None:
        """The share of its SLO budget a request may be predicted to take (None: never shed).
        A caller within its fair share gets its whole budget, at least."""
        if priority is Priority.SHEDDABLE:
            fraction: float | None = self.shed_fraction_sheddable
        elif priority is Priority.STANDARD:
            fraction = self.shed_fraction_standard
        else:
            fraction = self.shed_fraction_critical
        if fraction is None or not within_share:
            return fraction
        return max(fraction, 1.0)

    def clamp_retry(self, seconds: float) -> float:
        return min(self.max_retry_after_s, max(self.min_retry_after_s, seconds))
