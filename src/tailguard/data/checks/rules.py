"""The rules a dataset check applies: typed, read from YAML, every rule says warn or fail.

A rules file (every key optional; what is left out takes the defaults shown)::

    columns:                      # per column (names or shell globs such as "px*")
      age:   {max_null_rate: 0.0, min: 0, max: 120}
      country: {categories: [fr, de, us], severity: warn}
    duplicates: {max_rate: 0.0, severity: warn}       # identical rows within one dataset
    label: {column: label, min_share: 0.02, severity: warn}   # label balance
    leakage: {severity: fail, max_rows: 0, normalise_text: true}   # rows of OTHER in DATASET
    drift: {psi_warn: 0.1, psi_fail: 0.25, ks_fail: null, share_change_fail: 0.2,
            between_shards: true}
    pii: {severity: fail, min_match_rate: 0.05, sample_rows: 2000}

Thresholds are fractions (0.05 = 5 %). ``psi`` is the population stability index over ten
bins holding equal shares of the baseline; ``ks`` the largest gap between the two cumulative
distributions at the histogram's bin edges; ``share_change`` the largest absolute change of
one category's share of the rows.
"""

from __future__ import annotations

import fnmatch
from enum import StrEnum
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from tailguard.data.schema import DataError


class RulesError(DataError):
    """A rules file is missing or invalid; the message names the field."""


class Severity(StrEnum):
    WARN = "warn"
    FAIL = "fail"


class _Rule(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ColumnRule(_Rule):
    """Checks on one column (or every column a glob matches)."""

    max_null_rate: float | None = Field(default=None, ge=0, le=1)
    min: float | None = None
    max: float | None = None
    categories: list[str] | None = Field(
        default=None, description="allowed values (compared as text); others are findings")
    severity: Severity = Severity.FAIL

    @model_validator(mode="after")
    def _ordered(self) -> ColumnRule:
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min ({self.min}) must be <= max ({self.max})")
        return self


class DuplicatesRule(_Rule):
    max_rate: float = Field(default=0.0, ge=0, le=1, description="duplicate rows / rows")
    severity: Severity = Severity.WARN


class LabelRule(_Rule):
    """Label balance: the rarest class must hold at least ``min_share`` of the rows."""

    column: str | None = None
    min_share: float = Field(default=0.01, ge=0, le=1)
    severity: Severity = Severity.WARN


class LeakageRule(_Rule):
    """Rows of the other dataset (eval, reference) found in this one."""

    max_rows: int = Field(default=0, ge=0)
    normalise_text: bool = Field(
        default=True, description="also match string columns after lower-casing and "
        "collapsing punctuation and whitespace")
    ignore_columns: list[str] = Field(
        default_factory=list, description="left out of the row key (ids, timestamps)")
    severity: Severity = Severity.FAIL


class DriftRule(_Rule):
    psi_warn: float | None = Field(default=0.1, ge=0)
    psi_fail: float | None = Field(default=0.25, ge=0)
    ks_fail: float | None = Field(default=None, ge=0, le=1)
    share_change_warn: float | None = Field(default=0.1, ge=0, le=1)
    share_change_fail: float | None = Field(default=0.2, ge=0, le=1)
    between_shards: bool = Field(
        default=True, description="each shard against the median shard (needs 3 or more)")
    min_rows: int = Field(
        default=500, ge=1, description="shards or datasets with fewer rows are not compared "
        "(the PSI of a small sample is noise)")


class PiiRule(_Rule):
    """Undeclared string columns that look like e-mails, phone or card numbers."""

    min_match_rate: float = Field(default=0.05, ge=0, le=1)
    sample_rows: int = Field(default=2000, ge=1, description="values sampled per shard")
    severity: Severity = Severity.FAIL


class Rules(_Rule):
    """Everything one check applies; ``Rules()`` is the default set."""

    columns: dict[str, ColumnRule] = Field(default_factory=dict)
    duplicates: DuplicatesRule | None = DuplicatesRule()
    label: LabelRule | None = LabelRule()
    leakage: LeakageRule | None = LeakageRule()
    drift: DriftRule | None = DriftRule()
    pii: PiiRule | None = PiiRule()
    histogram_bins: int = Field(default=64, ge=10, le=1024)
    max_categories: int = Field(
        default=1000, ge=1, description="distinct values counted per column; past it the "
        "column is treated as free text (no category or share checks)")
    examples: int = Field(default=5, ge=1, le=100, description="example rows per finding")

    def column_rules(self, name: str) -> list[ColumnRule]:
        return [rule for pattern, rule in self.columns.items()
                if pattern == name or fnmatch.fnmatchcase(name, pattern)]


def parse_rules(data: Any, *, where: str = "rules") -> Rules:
    if data is None:
        return Rules()
    if not isinstance(data, dict):
        raise RulesError(f"{where}: expected a mapping of rules")
    try:
        return Rules.model_validate(data)
    except ValidationError as exc:
        raise RulesError(f"{where}: invalid rules: {exc}") from exc


def load_rules(source: Path | str | dict[str, Any] | bool | None) -> Rules:
    """Rules from a YAML file path, an inline mapping, or the defaults (``None``/``True``)."""
    if source is None or source is True:
        return Rules()
    if source is False:
        raise RulesError("checks are disabled (false); there are no rules to load")
    if isinstance(source, dict):
        return parse_rules(source)
    path = Path(source)
    if not path.is_file():
        raise RulesError(f"rules file {path} not found")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise RulesError(f"{path}: not valid YAML: {exc}") from exc
    return parse_rules(data, where=str(path))
