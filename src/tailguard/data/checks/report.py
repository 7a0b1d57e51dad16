"""The typed result of a check: findings naming rule, column and example rows; a summary.

:class:`CheckReport` is what ``tailguard data check --json`` prints, what is kept beside the
dataset as ``checks/report.json`` (with ``checks/report.html``), and what a failing training
preflight quotes. :meth:`CheckReport.summary` is the part a model's ``manifest.json``
lineage records.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

from tailguard.data.checks.rules import Severity

REPORT_DIR = "checks"
REPORT_JSON = "report.json"
REPORT_HTML = "report.html"


@dataclass(frozen=True)
class RowRef:
    """One example row: which dataset (``dataset`` or ``against``), its shard and its row
    number within the shard and within the dataset (0-based, in ingest order)."""

    dataset: str
    shard: str
    shard_row: int
    row: int

    def __str__(self) -> str:
        prefix = "" if self.dataset == "dataset" else f"{self.dataset} "
        return f"{prefix}row {self.row} ({self.shard}:{self.shard_row})"


@dataclass(frozen=True)
class Finding:
    """One rule that did not hold. ``value`` is what was measured, ``limit`` the threshold."""

    rule: str
    severity: Severity
    column: str | None
    message: str
    value: float
    limit: float
    examples: tuple[RowRef, ...] = ()

    def describe(self) -> str:
        where = f" column {self.column!r}:" if self.column else ""
        rows = ""
        if self.examples:
            rows = "; e.g. " + ", ".join(str(r) for r in self.examples)
        return f"[{self.severity.value}] {self.rule}{where} {self.message}{rows}"


@dataclass(frozen=True)
class ColumnSummary:
    """What the report shows for one column (histogram edges and counts for the HTML)."""

    name: str
    kind: str
    rows: int
    nulls: int
    min: float | None = None
    max: float | None = None
    edges: list[float] | None = None
    hist: list[int] | None = None
    top: list[tuple[str, int]] | None = None
    distinct: int | None = None

    @property
    def null_rate(self) -> float:
        return self.nulls / self.rows if self.rows else 0.0


@dataclass(frozen=True)
class CheckReport:
    dataset: str
    fingerprint: str
    rows: int
    shards: int
    against: str | None
    against_fingerprint: str | None
    findings: tuple[Finding, ...]
    columns: tuple[ColumnSummary, ...]
    rows_per_s: float
    elapsed_s: float
    created_at: str
    pii: dict[str, str] = field(default_factory=dict)

    @property
    def failures(self) -> list[Finding]:
        return [f for f in self.findings if f.severity is Severity.FAIL]

    @property
    def warnings(self) -> list[Finding]:
        return [f for f in self.findings if f.severity is Severity.WARN]

    @property
    def passed(self) -> bool:
        return not self.failures

    def summary(self, report_path: str | None = None) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "fingerprint": self.fingerprint,
            "against": self.against_fingerprint,
            "failures": len(self.failures),
            "warnings": len(self.warnings),
            "failed_rules": sorted({f"{f.rule}:{f.column}" if f.column else f.rule
                                    for f in self.failures}),
            "created_at": self.created_at,
            "report": report_path,
        }

    def to_dict(self) -> dict[str, Any]:
        doc = asdict(self)
        doc["passed"] = self.passed
        doc["summary"] = self.summary()
        return doc

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, default=str) + "\n"


def read_summary(dataset_dir: str) -> dict[str, Any] | None:
    """The summary of the report kept beside a dataset, if there is one."""
    import fsspec

    where = f"{dataset_dir.rstrip('/')}/{REPORT_DIR}/{REPORT_JSON}"
    try:
        with fsspec.open(where, "r", encoding="utf-8") as fh:
            doc = json.load(fh)
    except (FileNotFoundError, ValueError):
        return None
    summary = doc.get("summary") if isinstance(doc, dict) else None
    if not isinstance(summary, dict):
        return None
    summary["report"] = where
    return summary
