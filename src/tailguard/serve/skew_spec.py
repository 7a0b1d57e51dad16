"""The ``skew:`` section of a deployment spec (see :mod:`tailguard.serve.skew`)."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field


class SkewSpec(BaseModel):
    """Where the training statistics are and which served columns they describe."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    reference: Path = Field(description="training dataset directory (its checks/report.json) "
                            "or a report.json")
    tensor: str = Field(description="served input tensor holding the features")
    features: list[str] = Field(min_length=1, description="training column of each tensor "
                                "column, in order")
    sample_every: int = Field(10, ge=1, description="bin one request in this many")
    window_rows: int = Field(10_000, ge=100, description="sampled rows per window")
    min_rows: int = Field(200, ge=1, description="no PSI below this many sampled rows")
