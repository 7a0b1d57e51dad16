"""Rules applied to the statistics of a scan: a list of findings. No I/O."""

from __future__ import annotations

import numpy as np

from tailguard.data.checks.compare import ks, psi, share_change
from tailguard.data.checks.report import Finding, RowRef
from tailguard.data.checks.rules import DriftRule, Rules, Severity
from tailguard.data.checks.scan import AGAINST, DATASET, DatasetScan, DigestGroups, ScanResult
from tailguard.data.checks.stats import ColumnStats


def _refs(scan: DatasetScan, rows: list[int], role: str = "dataset") -> tuple[RowRef, ...]:
    starts = scan.starts
    out = []
    for row in rows:
        shard = int(np.searchsorted(starts, row, side="right") - 1)
        out.append(RowRef(role, scan.index.shards[shard].file, int(row - starts[shard]), row))
    return tuple(out)


def _pct(x: float) -> str:
    return f"{100 * x:.2f}%"


def _columns(scan: DatasetScan, rules: Rules) -> list[Finding]:
    out: list[Finding] = []
    for name, st in scan.columns.items():
        for rule in rules.column_rules(name):
            rate = st.nulls.count / st.rows if st.rows else 0.0
            if rule.max_null_rate is not None and rate > rule.max_null_rate:
                out.append(Finding("null_rate", rule.severity, name,
                                   f"{st.nulls.count} null(s) in {st.rows} rows ({_pct(rate)} > "
                                   f"{_pct(rule.max_null_rate)})", rate, rule.max_null_rate,
                                   _refs(scan, st.nulls.rows)))
            if (rule.min is not None or rule.max is not None) and st.out_of_range.count:
                out.append(Finding("range", rule.severity, name,
                                   f"{st.out_of_range.count} value(s) outside "
                                   f"[{rule.min}, {rule.max}] (seen {st.min} .. {st.max})",
                                   st.out_of_range.count, 0, _refs(scan, st.out_of_range.rows)))
            if rule.categories is not None and st.unknown.count:
                out.append(Finding("categories", rule.severity, name,
                                   f"{st.unknown.count} value(s) not in {rule.categories}",
                                   st.unknown.count, 0, _refs(scan, st.unknown.rows)))
    return out


def _label(scan: DatasetScan, rules: Rules, label: str | None) -> list[Finding]:
    rule = rules.label
    if rule is None:
        return []
    column = rule.column or label or ("label" if "label" in scan.columns else None)
    st = scan.columns.get(column) if column else None
    if st is None or not st.counts:
        return []
    total = sum(st.counts.values())
    rarest, n = min(st.counts.items(), key=lambda kv: (kv[1], kv[0]))
    share = n / total
    if share >= rule.min_share:
        return []
    return [Finding("label_balance", rule.severity, column,
                    f"class {rarest!r} holds {n} of {total} rows ({_pct(share)} < "
                    f"{_pct(rule.min_share)}); {len(st.counts)} classes", share, rule.min_share)]


def _pii(scan: DatasetScan, rules: Rules) -> list[Finding]:
    rule = rules.pii
    if rule is None:
        return []
    out = []
    for name, st in scan.columns.items():
        if not st.pii_sampled:
            continue
        for kind, hits in sorted(st.pii.items()):
            rate = hits.count / st.pii_sampled
            if hits.count and rate >= rule.min_match_rate:
                out.append(Finding(
                    "pii", rule.severity, name,
                    f"{hits.count} of {st.pii_sampled} sampled values look like {kind}s "
                    f"({_pct(rate)}) and the column is not declared; declare it "
                    "{type: string, pii: hash|drop} in the ingest schema",
                    rate, rule.min_match_rate, _refs(scan, hits.rows)))
    return out


def _dupes(result: ScanResult, rules: Rules) -> list[Finding]:
    out: list[Finding] = []
    scan = result.dataset
    rows = scan.index.total_rows
    if rules.duplicates is not None and result.rows is not None and rows:
        rate = result.rows.within / rows
        if result.rows.within and rate > rules.duplicates.max_rate:
            examples = [[r for t, r in g if t == DATASET] for g in result.rows.groups]
            examples = [g for g in examples if len(g) > 1][:rules.examples]
            shown = "; ".join("rows " + " = ".join(str(r) for r in g[:4]) for g in examples)
            out.append(Finding("duplicates", rules.duplicates.severity, None,
                               f"{result.rows.within} duplicate row(s) ({_pct(rate)}): {shown}",
                               rate, rules.duplicates.max_rate,
                               _refs(scan, [r for g in examples for r in g[:2]])))
    leak = rules.leakage
    if leak is None or result.against is None:
        return out
    if result.rows is not None and result.rows.across > leak.max_rows:
        out.append(_leak("leakage", result.rows, "identical rows", result, leak.severity,
                         result.rows.across, leak.max_rows, rules.examples, set()))
    if result.text is not None:
        # exact copies match after normalising too: report only the rows that differ
        exact = result.rows.across if result.rows is not None else 0
        extra = result.text.across - exact
        if extra > leak.max_rows:
            seen = set() if result.rows is None else _pairs(result.rows, 10**9)
            out.append(_leak("leakage_text", result.text,
                             f"the same normalised text in {result.text_columns} (but are not "
                             "identical rows)", result, leak.severity, extra, leak.max_rows,
                             rules.examples, seen))
    return out


def _pairs(groups: DigestGroups, keep: int, skip: set[tuple[int, int]] | None = None
           ) -> set[tuple[int, int]]:
    return set(_pair_list(groups, keep, skip or set()))


def _pair_list(groups: DigestGroups, keep: int, skip: set[tuple[int, int]]
               ) -> list[tuple[int, int]]:
    pairs = []
    for g in groups.groups:
        mine = [r for t, r in g if t == DATASET]
        for theirs in (r for t, r in g if t == AGAINST):
            if mine and (mine[0], theirs) not in skip:
                pairs.append((mine[0], theirs))
        if len(pairs) >= keep:
            break
    return pairs[:keep]


def _leak(rule: str, groups: DigestGroups, what: str, result: ScanResult, severity: Severity,
          count: int, limit: int, keep: int, skip: set[tuple[int, int]]) -> Finding:
    assert result.against is not None
    pairs = _pair_list(groups, keep, skip)
    shown = "; ".join(f"row {a} = against row {b}" for a, b in pairs)
    refs = []
    for a, b in pairs:
        refs += [*_refs(result.dataset, [a]), *_refs(result.against, [b], "against")]
    return Finding(rule, severity, None,
                   f"{count} row(s) of {result.against.path} share {what} with "
                   f"{result.dataset.path}: {shown}", count, limit, tuple(refs))


def _drift_one(rule: DriftRule, base: ColumnStats, other: ColumnStats, kind: str, where: str,
               column: str) -> list[Finding]:
    out = []
    if base.hist is not None and other.hist is not None:
        value = psi(base.hist, other.hist)
        for limit, sev in ((rule.psi_fail, Severity.FAIL), (rule.psi_warn, Severity.WARN)):
            if limit is not None and value > limit:
                out.append(Finding(kind, sev, column, f"{where}: PSI {value:.3f} > {limit}",
                                   value, limit))
                break
        if rule.ks_fail is not None:
            dist = ks(base.hist, other.hist)
            if dist > rule.ks_fail:
                out.append(Finding(kind, Severity.FAIL, column,
                                   f"{where}: KS {dist:.3f} > {rule.ks_fail}", dist, rule.ks_fail))
    elif base.counts and other.counts and base.hist is None:
        change, which = share_change(base.counts, other.counts)
        for limit, sev in ((rule.share_change_fail, Severity.FAIL),
                           (rule.share_change_warn, Severity.WARN)):
            if limit is not None and change > limit:
                out.append(Finding(kind, sev, column,
                                   f"{where}: the share of {which!r} changed by {_pct(change)} "
                                   f"(> {_pct(limit)})", change, limit))
                break
    return out


def _shard_baseline(shards: list[ColumnStats], categorical: bool) -> ColumnStats:
    """The per-bin (per-category) median share across shards: what a typical shard looks
    like. A median, not the dataset's total, so that one drifted shard does not drag the
    baseline and make every other shard look drifted too."""
    base = ColumnStats(shards[0].name, shards[0].kind)
    hists = [s.hist / s.hist.sum() for s in shards if s.hist is not None and s.hist.sum()]
    if hists:
        base.hist = np.round(np.median(np.stack(hists), axis=0) * 1e6).astype(np.int64)
    counted = [s.counts for s in shards if s.counts]
    if categorical and counted and len(counted) == len(shards):
        keys = sorted({k for c in counted for k in c})
        totals = [sum(c.values()) for c in counted]
        shares = np.array([[c.get(k, 0) / t for k in keys]
                           for c, t in zip(counted, totals, strict=True)])
        base.counts = {k: round(float(v) * 1e6)
                       for k, v in zip(keys, np.median(shares, axis=0), strict=True)}
    return base


def _drift(result: ScanResult, rules: Rules) -> list[Finding]:
    rule = rules.drift
    if rule is None:
        return []
    out: list[Finding] = []
    scan = result.dataset
    big = [i for i, info in enumerate(scan.index.shards) if info.rows >= rule.min_rows]
    if rule.between_shards and len(big) > 2:
        starts = scan.starts
        for name in scan.columns:
            # free text (too many distinct values in the whole dataset) has no shares to compare
            categorical = scan.columns[name].counts is not None
            base = _shard_baseline([scan.shards[i][name] for i in big], categorical)
            for i in big:
                info = scan.index.shards[i]
                where = (f"shard {info.file} (rows {starts[i]}..{starts[i + 1] - 1}) vs the "
                         "median shard")
                for f in _drift_one(rule, base, scan.shards[i][name], "drift_shard", where,
                                    name):
                    out.append(Finding(f.rule, f.severity, f.column, f.message, f.value,
                                       f.limit, _refs(scan, [int(starts[i])])))
    other = result.against
    if other is not None and min(scan.index.total_rows, other.index.total_rows) >= rule.min_rows:
        for name, st in scan.columns.items():
            theirs = other.columns.get(name)
            if theirs is not None:
                out += _drift_one(rule, st, theirs, "drift", f"against {other.path}", name)
    return out


def evaluate(result: ScanResult, rules: Rules, *, label: str | None = None) -> list[Finding]:
    """Every finding of ``rules`` on ``result``, failures first."""
    found = (_columns(result.dataset, rules) + _label(result.dataset, rules, label)
             + _pii(result.dataset, rules) + _dupes(result, rules) + _drift(result, rules))
    return sorted(found, key=lambda f: f.severity is not Severity.FAIL)
