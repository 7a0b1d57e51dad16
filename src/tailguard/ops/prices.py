"""Instance price tables for ``tailguard plan`` and ``tailguard cost`` (YAML, typed).

A table lists instance types: an hourly price, how many model replicas one instance holds, and
how fast a replica runs there relative to the measured profile (``tailguard profile``). The
default table, ``prices.yaml`` next to this module, holds EXAMPLE prices only::

    table = load_prices(None)                       # the shipped example table
    gpu = table.get("gpu-t4")
    gpu.service_profile(measured)                   # the measured profile, moved to a T4
    gpu.replica_hourly_usd                          # hourly_usd / replicas_per_instance
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from tailguard.autoscale.snapshot import ServiceProfile

__all__ = ["InstanceType", "PriceTable", "ServiceOverride", "load_prices"]


class ServiceOverride(BaseModel):
    """An absolute service time ``fixed_ms + per_row_ms * batch`` for one instance type."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    fixed_ms: float = Field(ge=0)
    per_row_ms: float = Field(ge=0)


class InstanceType(BaseModel):
    """One rentable machine and how a replica of the profiled model performs on it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    kind: Literal["cpu", "gpu"]
    hourly_usd: float = Field(gt=0, description="price of one instance for one hour")
    replicas_per_instance: int = Field(1, ge=1, description="replicas one instance holds")
    speedup: float | None = Field(None, gt=0, description="batch time = measured / speedup")
    fixed_factor: float | None = Field(None, gt=0, description="scales a in a + b*batch")
    per_row_factor: float | None = Field(None, gt=0, description="scales b in a + b*batch")
    service: ServiceOverride | None = None
    max_batch_size: int | None = Field(None, ge=1)

    @model_validator(mode="after")
    def _one_speed_model(self) -> InstanceType:
        factors = self.fixed_factor is not None or self.per_row_factor is not None
        given = [self.speedup is not None, factors, self.service is not None]
        if sum(given) > 1:
            raise ValueError(f"instance {self.name!r}: give one of speedup, "
                             "fixed_factor/per_row_factor, or service")
        return self

    @property
    def replica_hourly_usd(self) -> float:
        """What one replica costs per hour: the instance price split over its replicas."""
        return self.hourly_usd / self.replicas_per_instance

    def service_profile(self, measured: ServiceProfile) -> ServiceProfile:
        """The measured profile as it would run on this instance type."""
        kmax = self.max_batch_size or measured.max_batch_size
        if self.service is not None:
            return ServiceProfile(self.service.fixed_ms / 1e3, self.service.per_row_ms / 1e3, kmax)
        if self.fixed_factor is not None or self.per_row_factor is not None:
            fit = ServiceProfile.fit(dict(measured.table)) if measured.table else measured
            fixed = fit.fixed_s * (self.fixed_factor or 1.0)
            per_row = fit.per_row_s * (self.per_row_factor or 1.0)
            if fixed + per_row <= 0:  # a table that fits a flat zero line: keep its mean
                fixed = measured.service_time_s(1) * (self.fixed_factor or 1.0)
            return ServiceProfile(fixed, per_row, kmax)
        speedup = self.speedup or 1.0
        if measured.table:
            return ServiceProfile.from_table({b: s / speedup for b, s in measured.table}, kmax)
        return ServiceProfile(measured.fixed_s / speedup, measured.per_row_s / speedup, kmax)


class PriceTable(BaseModel):
    """Instance types to plan and cost with; ``default_instance`` is what ``cost`` charges."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    instances: tuple[InstanceType, ...] = Field(min_length=1)
    default_instance: str | None = None

    @model_validator(mode="after")
    def _names(self) -> PriceTable:
        names = [i.name for i in self.instances]
        if len(set(names)) != len(names):
            raise ValueError(f"instance names must be unique: {names}")
        if self.default_instance is not None and self.default_instance not in names:
            raise ValueError(f"default_instance {self.default_instance!r} is not one of {names}")
        return self

    def get(self, name: str | None = None) -> InstanceType:
        """The named type (``None``: the default, else the first listed)."""
        name = name or self.default_instance or self.instances[0].name
        for inst in self.instances:
            if inst.name == name:
                return inst
        raise ValueError(f"unknown instance type {name!r}: the price table has "
                         f"{[i.name for i in self.instances]}")


def load_prices(path: Path | None = None) -> PriceTable:
    """Read a price table (``None``: the shipped example table). Raises ValueError."""
    try:
        if path is None:
            text = resources.files("tailguard.ops").joinpath("prices.yaml").read_text()
            where = "the default price table"
        else:
            text = Path(path).read_text()
            where = str(path)
        data = yaml.safe_load(text)
    except (OSError, yaml.YAMLError) as exc:
        raise ValueError(f"cannot read price table {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise ValueError(f"price table {where}: expected a mapping with `instances:`")
    try:
        return PriceTable.model_validate(data)
    except ValidationError as exc:
        raise ValueError(f"price table {where}: {exc}") from exc
