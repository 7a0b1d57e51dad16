"""Data quality, leakage, drift and personal-data checks over ingested datasets.

>>> rules = load_rules("rules.yaml")                                # doctest: +SKIP
>>> report = run_check("data/train", rules, against="data/test")   # doctest: +SKIP
>>> report.passed, [f.describe() for f in report.failures]         # doctest: +SKIP

One streaming pass over the Parquet shards (bounded memory, see :mod:`.stats` and
:mod:`.hashing`) feeds every rule; :mod:`.evaluate` turns the statistics into findings.
"""

from tailguard.data.checks.pii import PII_KEY_ENV, PiiKeyError
from tailguard.data.checks.report import CheckReport, Finding, RowRef, read_summary
from tailguard.data.checks.rules import Rules, RulesError, Severity, load_rules, parse_rules
from tailguard.data.checks.run import DataCheckFailed, run_check, write_report

__all__ = [
    "PII_KEY_ENV",
    "CheckReport",
    "DataCheckFailed",
    "Finding",
    "PiiKeyError",
    "RowRef",
    "Rules",
    "RulesError",
    "Severity",
    "load_rules",
    "parse_rules",
    "read_summary",
    "run_check",
    "write_report",
]
