"""One streaming pass over a dataset (and the dataset it is checked against).

Produces, per dataset, the merged :class:`~.stats.ColumnStats` and per-shard ones (for drift
between shards), and, across both datasets, the groups of rows sharing a digest (exact rows,
and normalised text) for duplicates and leakage.
"""

from __future__ import annotations

import itertools
import os
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from tailguard.data.checks.hashing import DigestSpill, hash_rows, normalise_text
from tailguard.data.checks.rules import Rules
from tailguard.data.checks.stats import (
    ColumnStats,
    ShardScanner,
    footer_ranges,
    is_numeric,
    iter_batches,
    numeric_edges,
)
from tailguard.data.index import DatasetIndex

TAG_SHIFT = np.uint64(56)
ROW_MASK = np.uint64((1 << 56) - 1)
DATASET, AGAINST = 0, 1
SCAN_THREADS = max(1, min(4, os.cpu_count() or 1))
MAX_GROUPS = 1000
"""Digest groups kept verbatim per kind; counts are always exact."""


@dataclass
class DatasetScan:
    path: str
    index: DatasetIndex
    columns: dict[str, ColumnStats]
    shards: list[dict[str, ColumnStats]]

    @property
    def starts(self) -> np.ndarray:
        return np.concatenate([[0], np.cumsum(self.index.shard_rows)]).astype(np.int64)


@dataclass
class DigestGroups:
    """Rows (``(tag, row)`` pairs) that share a digest; ``within`` counts the extra copies of
    rows inside the dataset, ``across`` the against-rows also present in the dataset."""

    groups: list[list[tuple[int, int]]] = field(default_factory=list)
    within: int = 0
    across: int = 0


@dataclass
class ScanResult:
    dataset: DatasetScan
    against: DatasetScan | None
    rows: DigestGroups | None
    text: DigestGroups | None
    text_columns: list[str]


def _key_columns(index: DatasetIndex, rules: Rules) -> list[str]:
    ignore = set(rules.leakage.ignore_columns) if rules.leakage else set()
    return [c.name for c in index.schema.columns if c.name not in ignore]


_Digests = list[tuple[np.ndarray, np.ndarray]]


def _scan_one(path: str, index: DatasetIndex, tag: int, rules: Rules,
              edges: dict[str, np.ndarray], declared_pii: set[str],
              row_spill: DigestSpill | None, text_spill: DigestSpill | None,
              key: list[str], text_columns: list[str],
              progress: Callable[[int], None] | None) -> DatasetScan:
    scanner = ShardScanner(index, rules, edges, declared_pii)
    keep, cap = rules.examples, rules.max_categories
    tag_bits = np.uint64(tag) << TAG_SHIFT
    starts = np.concatenate([[0], np.cumsum(index.shard_rows)]).astype(np.int64)

    def one_shard(i: int) -> tuple[dict[str, ColumnStats], _Digests, _Digests]:
        stats = scanner.new()
        rows: _Digests = []
        texts: _Digests = []
        first = int(starts[i])
        for batch in iter_batches(path, index.shards[i].file):
            scanner.add(stats, batch, first)
            ids = np.arange(first, first + batch.num_rows, dtype=np.uint64) | tag_bits
            if row_spill is not None:
                rows.append((hash_rows([batch.column(n) for n in key]), ids))
            if text_spill is not None:
                normalised = [normalise_text(batch.column(n)) for n in text_columns]
                texts.append((hash_rows(normalised), ids))
            first += batch.num_rows
        for name, (lo, hi) in footer_ranges(path, index.shards[i].file).items():
            st = stats.get(name)
            if (st is not None and is_numeric(st.kind) and st.min is None
                    and st.rows > st.nulls.count):
                st.min, st.max = lo, hi
        return stats, rows, texts

    total = scanner.new()
    shards = []
    # Shards in parallel threads (Arrow and numpy release the GIL), at most 2 per thread in
    # flight so memory stays bounded; results are folded in shard order, so example rows
    # come out in row order.
    with ThreadPoolExecutor(max_workers=SCAN_THREADS, thread_name_prefix="tailguard-check"
                            ) as pool:
        pending: deque[Future[tuple[dict[str, ColumnStats], _Digests, _Digests]]] = deque()
        upcoming = iter(range(len(index.shards)))
        for i in itertools.islice(upcoming, 2 * SCAN_THREADS):
            pending.append(pool.submit(one_shard, i))
        while pending:
            stats, rows, texts = pending.popleft().result()
            nxt = next(upcoming, None)
            if nxt is not None:
                pending.append(pool.submit(one_shard, nxt))
            for spill, digests in ((row_spill, rows), (text_spill, texts)):
                for d, ids in digests:
                    assert spill is not None
                    spill.add(d, ids)
            for name, st in stats.items():
                total[name].merge(st, keep, cap)
            shards.append(stats)
            if progress is not None:
                progress(index.shards[len(shards) - 1].rows)
    return DatasetScan(path, index, total, shards)


def _collect(spill: DigestSpill) -> DigestGroups:
    out = DigestGroups()
    for rows in spill.groups():
        tags = (rows >> TAG_SHIFT).astype(np.int64)
        mine = int((tags == DATASET).sum())
        theirs = int((tags == AGAINST).sum())
        out.within += max(0, mine - 1)
        if mine and theirs:
            out.across += theirs
        if len(out.groups) < MAX_GROUPS:
            out.groups.append([(int(t), int(r)) for t, r in
                               zip(tags, (rows & ROW_MASK).astype(np.int64), strict=True)])
    out.groups.sort(key=lambda g: (g[0][0], g[0][1]))  # examples in row order
    return out


def scan(path: str, index: DatasetIndex, rules: Rules, *,
         against: tuple[str, DatasetIndex] | None = None,
         progress: Callable[[int], None] | None = None) -> ScanResult:
    """Read every shard of ``path`` (and of ``against``) once; see the module docs."""
    pairs = [(path, index)] + ([against] if against is not None else [])
    edges = numeric_edges(pairs, rules.histogram_bins)
    declared = set(index.pii)
    if against is not None:
        declared |= set(against[1].pii)
    rows_total = sum(i.total_rows for _, i in pairs)
    key = _key_columns(index, rules)
    if against is not None:  # both sides must hash the same columns in the same order
        theirs = set(_key_columns(against[1], rules))
        key = [n for n in key if n in theirs]
    want_rows = bool(key) and (rules.duplicates is not None
                               or (rules.leakage is not None and against is not None))
    kinds = {c.name: c.type for c in index.schema.columns}
    text_columns = [n for n in key if kinds.get(n) == "string"]
    want_text = (bool(text_columns) and against is not None and rules.leakage is not None
                 and rules.leakage.normalise_text)
    row_spill = DigestSpill(rows_total) if want_rows else None
    text_spill = DigestSpill(rows_total) if want_text else None
    try:
        mine = _scan_one(path, index, DATASET, rules, edges, declared, row_spill, text_spill,
                         key, text_columns, progress)
        other = None
        if against is not None:
            other = _scan_one(against[0], against[1], AGAINST, rules, edges, declared,
                              row_spill, text_spill, key, text_columns, progress)
        row_groups = _collect(row_spill) if row_spill is not None else None
        text_groups = _collect(text_spill) if text_spill is not None else None
    finally:
        for spill in (row_spill, text_spill):
            if spill is not None:
                spill.close()
    return ScanResult(mine, other, row_groups, text_groups, text_columns)
