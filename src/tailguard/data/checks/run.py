"""``run_check``: read the index(es), scan, evaluate, and keep the report with the dataset."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from tailguard.data.checks.evaluate import evaluate
from tailguard.data.checks.report import (
    REPORT_DIR,
    REPORT_HTML,
    REPORT_JSON,
    CheckReport,
    ColumnSummary,
)
from tailguard.data.checks.rules import Rules
from tailguard.data.checks.scan import DatasetScan, scan
from tailguard.data.index import read_index
from tailguard.data.schema import DataError

TOP_CATEGORIES = 12


class DataCheckFailed(DataError):
    """A check found failures; ``report`` holds them (rule, column, example rows)."""

    def __init__(self, report: CheckReport, *, role: str | None = None) -> None:
        self.report = report
        failures = report.failures
        lines = "\n".join(f"  {f.describe()}" for f in failures[:10])
        more = "" if len(failures) <= 10 else f"\n  … and {len(failures) - 10} more"
        head = f"data.{role} " if role else ""
        super().__init__(f"{head}{report.dataset}: {len(failures)} data check(s) failed:\n"
                         f"{lines}{more}")


def _summaries(scan_: DatasetScan) -> tuple[ColumnSummary, ...]:
    out = []
    for name, st in scan_.columns.items():
        top = None
        if st.counts is not None:
            top = sorted(st.counts.items(), key=lambda kv: (-kv[1], kv[0]))[:TOP_CATEGORIES]
        out.append(ColumnSummary(
            name=name, kind=st.kind, rows=st.rows, nulls=st.nulls.count,
            min=None if st.min is None else float(st.min),
            max=None if st.max is None else float(st.max),
            edges=None if st.edges is None else [float(e) for e in st.edges],
            hist=None if st.hist is None else [int(v) for v in st.hist],
            top=top, distinct=None if st.counts is None else len(st.counts)))
    return tuple(out)


def run_check(path: str, rules: Rules, *, against: str | None = None,
              label: str | None = None, keep: bool = True, shown_as: str | None = None,
              progress: Callable[[int], None] | None = None) -> CheckReport:
    """Check the dataset at ``path`` (against ``against`` for leakage and drift if given).

    With ``keep`` the report is written beside the dataset as ``checks/report.json`` and
    ``checks/report.html`` (local datasets). ``shown_as`` is the name messages use (ingest
    checks a temporary directory that becomes ``out``).
    """
    started = time.perf_counter()
    index = read_index(path)
    other = (against, read_index(against)) if against is not None else None
    result = scan(path, index, rules, against=other, progress=progress)
    findings = evaluate(result, rules, label=label)
    elapsed = time.perf_counter() - started
    rows = index.total_rows + (other[1].total_rows if other else 0)
    report = CheckReport(
        dataset=shown_as or path, fingerprint=index.fingerprint, rows=index.total_rows,
        shards=len(index.shards), against=against,
        against_fingerprint=other[1].fingerprint if other else None,
        findings=tuple(findings), columns=_summaries(result.dataset),
        rows_per_s=rows / elapsed if elapsed > 0 else 0.0, elapsed_s=elapsed,
        created_at=datetime.now(UTC).isoformat(), pii=dict(index.pii))
    if keep and "://" not in path:
        # a read-only dataset is still checked; the caller has the report
        with contextlib.suppress(OSError):
            write_report(report, Path(path) / REPORT_DIR)
    return report


def write_report(report: CheckReport, directory: Path) -> Path:
    """Write ``report.json`` and ``report.html`` into ``directory``; return the JSON path."""
    from tailguard.data.checks.render import to_html

    directory.mkdir(parents=True, exist_ok=True)
    (directory / REPORT_HTML).write_text(to_html(report), encoding="utf-8")
    target = directory / REPORT_JSON
    target.write_text(report.to_json(), encoding="utf-8")
    return target
