"""Column statistics computed in one streaming pass over a dataset's Parquet shards.

Each shard is read in record batches of ``BATCH_ROWS`` rows and every batch folds into small
fixed-size accumulators: null counts, histograms over *fixed* bin edges, capped category
counts, counts and example row numbers of rule violations, and PII matches on a sample. The
edges come from the shards' Parquet footers (min/max statistics, no data read), taken over
every dataset a check compares, so shards, splits and a reference bin identically and the
histograms merge and compare bin for bin. Memory is one batch plus ``shards x columns x
(bins + max_categories)`` counters, whatever the number of rows; the row digests for
duplicates and leakage go to :class:`~.hashing.DigestSpill` (bounded as documented there).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from tailguard.data.checks import pii
from tailguard.data.checks.rules import Rules
from tailguard.data.index import DatasetIndex

BATCH_ROWS = 65536


def is_numeric(kind: str) -> bool:
    return kind in ("int64", "int32", "float64", "float32")


def is_categorical(kind: str) -> bool:
    return kind in ("int64", "int32", "bool", "string")


@dataclass
class Violations:
    """How many rows broke one column rule, and the first few of them (global row numbers)."""

    count: int = 0
    rows: list[int] = field(default_factory=list)

    def add(self, mask: pa.Array, first_row: int, keep: int) -> None:
        hits = int(pc.sum(pc.cast(mask, pa.int64())).as_py() or 0)
        if not hits:
            return
        self.count += hits
        if len(self.rows) < keep:
            idx = pc.indices_nonzero(mask).to_numpy()[: keep - len(self.rows)]
            self.rows.extend(int(first_row + i) for i in idx)

    def merge(self, other: Violations, keep: int) -> None:
        self.count += other.count
        self.rows.extend(other.rows[: max(0, keep - len(self.rows))])


@dataclass
class ColumnStats:
    """One column's accumulators over a shard or (merged) a dataset."""

    name: str
    kind: str
    rows: int = 0
    nulls: Violations = field(default_factory=Violations)
    min: float | None = None
    max: float | None = None
    hist: np.ndarray | None = None
    edges: np.ndarray | None = None
    counts: dict[str, int] | None = None
    overflow: bool = False
    out_of_range: Violations = field(default_factory=Violations)
    unknown: Violations = field(default_factory=Violations)
    pii_sampled: int = 0
    pii: dict[str, Violations] = field(default_factory=dict)

    def merge(self, other: ColumnStats, keep: int, cap: int) -> None:
        self.rows += other.rows
        self.nulls.merge(other.nulls, keep)
        if other.min is not None:
            self.min = other.min if self.min is None else min(self.min, other.min)
            self.max = other.max if self.max is None else max(self.max, other.max)  # type: ignore[type-var]
        if other.hist is not None:
            self.hist = other.hist.copy() if self.hist is None else self.hist + other.hist
            self.edges = other.edges
        if other.counts is not None and not self.overflow:
            merged = dict(self.counts or {})
            for key, n in other.counts.items():
                merged[key] = merged.get(key, 0) + n
            self.counts = merged
            if len(merged) > cap:
                self.overflow, self.counts = True, None
        self.overflow = self.overflow or other.overflow
        if self.overflow:
            self.counts = None
        self.out_of_range.merge(other.out_of_range, keep)
        self.unknown.merge(other.unknown, keep)
        self.pii_sampled += other.pii_sampled
        for kind, hits in other.pii.items():
            self.pii.setdefault(kind, Violations()).merge(hits, keep)


def numeric_edges(indexes: Sequence[tuple[str, DatasetIndex]], bins: int
                  ) -> dict[str, np.ndarray]:
    """Histogram edges per numeric column from the footers of every shard of every dataset."""
    lo: dict[str, float] = {}
    hi: dict[str, float] = {}
    for path, index in indexes:
        wanted = {c.name for c in index.schema.columns if is_numeric(c.type)}
        for shard in index.shards:
            meta = pq.ParquetFile(_shard_path(path, shard.file)).metadata
            names = [meta.schema.column(i).name for i in range(meta.num_columns)]
            for g in range(meta.num_row_groups):
                group = meta.row_group(g)
                for i, name in enumerate(names):
                    st = group.column(i).statistics
                    if name not in wanted or st is None or not st.has_min_max:
                        continue
                    lo[name] = min(lo.get(name, st.min), st.min)
                    hi[name] = max(hi.get(name, st.max), st.max)
    edges = {}
    for name, low in lo.items():
        high = hi[name]
        if not np.isfinite(low) or not np.isfinite(high):
            continue
        if high <= low:
            high = low + 1.0
        edges[name] = np.linspace(float(low), float(high), bins + 1)
    return edges


def footer_ranges(path: str, file: str) -> dict[str, tuple[float, float]]:
    """Min and max per column of one shard from its Parquet footer (no data read; exact, as
    written by ingest, NaN left out)."""
    where = _shard_path(path, file)
    if "://" in where:
        import fsspec

        with fsspec.open(where, "rb") as fh:
            meta = pq.ParquetFile(fh).metadata
    else:
        meta = pq.ParquetFile(where).metadata
    out: dict[str, tuple[float, float]] = {}
    for g in range(meta.num_row_groups):
        group = meta.row_group(g)
        for i in range(meta.num_columns):
            st = group.column(i).statistics
            if st is None or not st.has_min_max or not isinstance(st.min, int | float):
                continue
            name = meta.schema.column(i).name
            lo, hi = out.get(name, (st.min, st.max))
            out[name] = (min(lo, st.min), max(hi, st.max))
    # Parquet writes a float min of 0 as -0.0 (its spec's rule for signed zeros)
    return {k: (lo + 0 if isinstance(lo, float) else lo, hi) for k, (lo, hi) in out.items()}


def _shard_path(path: str, file: str) -> str:
    return path.rstrip("/") + "/" + file


def _histogram(values: pa.Array, edges: np.ndarray) -> np.ndarray:
    if values.null_count:
        values = pc.drop_null(values)
    x = values.to_numpy(zero_copy_only=False)
    if x.dtype.kind == "f" and not np.isfinite(x).all():
        x = x[np.isfinite(x)]
    bins = len(edges) - 1
    scale = bins / (edges[-1] - edges[0])
    idx = ((x - edges[0]) * scale).astype(np.int64)
    np.clip(idx, 0, bins - 1, out=idx)
    return np.bincount(idx, minlength=bins)


class ShardScanner:
    """Accumulates one shard's :class:`ColumnStats`, batch by batch."""

    def __init__(self, index: DatasetIndex, rules: Rules, edges: dict[str, np.ndarray],
                 declared_pii: set[str]) -> None:
        self.rules = rules
        self.edges = edges
        self.kinds = {c.name: c.type for c in index.schema.columns}
        self.declared_pii = declared_pii
        # free-text columns: once too many distinct values are seen, later shards skip them
        self.free_text: set[str] = set()
        self.allowed: dict[str, pa.Array] = {}
        self.ranges: dict[str, tuple[float | None, float | None]] = {}
        for name in self.kinds:
            for rule in rules.column_rules(name):
                if rule.categories is not None:
                    self.allowed[name] = pa.array(rule.categories, pa.string())
                if rule.min is not None or rule.max is not None:
                    self.ranges[name] = (rule.min, rule.max)

    def new(self) -> dict[str, ColumnStats]:
        return {name: ColumnStats(name, kind) for name, kind in self.kinds.items()}

    def add(self, stats: dict[str, ColumnStats], batch: pa.RecordBatch, first_row: int) -> None:
        keep, cap = self.rules.examples, self.rules.max_categories
        for name, col in zip(batch.schema.names, batch.columns, strict=True):
            st = stats.get(name)
            if st is None:
                continue
            st.rows += len(col)
            if col.null_count:
                st.nulls.add(col.is_null(), first_row, keep)
            kind = st.kind
            if is_numeric(kind):
                self._numeric(st, col, first_row, keep)
            if is_categorical(kind) and name in self.free_text:
                st.overflow = True
            elif is_categorical(kind) and not st.overflow:
                self._categories(st, col, cap)
                if st.overflow:
                    self.free_text.add(name)
            if name in self.allowed:
                as_text = pc.cast(col, pa.string()) if kind != "string" else col
                bad = pc.and_(pc.is_valid(as_text),
                              pc.invert(pc.is_in(as_text, value_set=self.allowed[name])))
                st.unknown.add(bad, first_row, keep)
            if (kind == "string" and self.rules.pii is not None
                    and name not in self.declared_pii):
                self._pii(st, col, first_row, keep)

    def _numeric(self, st: ColumnStats, col: pa.Array, first_row: int, keep: int) -> None:
        if col.null_count == len(col):
            return
        bounds = self.ranges.get(st.name)
        lo = hi = None
        if bounds is not None:  # else min/max come from the footer (see footer_ranges)
            mm = pc.min_max(col)
            lo, hi = mm["min"].as_py(), mm["max"].as_py()
            if lo is not None:
                st.min = lo if st.min is None else min(st.min, lo)
                st.max = hi if st.max is None else max(st.max, hi)
        edges = self.edges.get(st.name)
        if edges is not None:
            h = _histogram(col, edges)
            st.hist = h if st.hist is None else st.hist + h
            st.edges = edges
        if bounds is not None:
            rmin, rmax = bounds
            if (rmin is not None and lo is not None and lo < rmin) or (
                    rmax is not None and hi is not None and hi > rmax):
                mask = pa.array(np.zeros(len(col), bool))
                if rmin is not None:
                    mask = pc.or_(mask, pc.fill_null(pc.less(col, rmin), False))
                if rmax is not None:
                    mask = pc.or_(mask, pc.fill_null(pc.greater(col, rmax), False))
                st.out_of_range.add(mask, first_row, keep)

    @staticmethod
    def _categories(st: ColumnStats, col: pa.Array, cap: int) -> None:
        counts = st.counts if st.counts is not None else {}
        vc = pc.value_counts(pc.drop_null(col))
        if len(vc) > cap:
            st.overflow, st.counts = True, None
            return
        values = vc.field("values").to_pylist()
        for value, n in zip(values, vc.field("counts").to_pylist(), strict=True):
            key = str(value).lower() if isinstance(value, bool) else str(value)
            counts[key] = counts.get(key, 0) + n
        if len(counts) > cap:
            st.overflow, st.counts = True, None
        else:
            st.counts = counts

    def _pii(self, st: ColumnStats, col: pa.Array, first_row: int, keep: int) -> None:
        assert self.rules.pii is not None
        room = self.rules.pii.sample_rows - st.pii_sampled
        if room <= 0:
            return
        sample = col.slice(0, room)
        st.pii_sampled += len(sample) - sample.null_count
        for kind, mask in pii.detect(sample).items():
            st.pii.setdefault(kind, Violations()).add(mask, first_row, keep)


def iter_batches(path: str, file: str, columns: list[str] | None = None
                 ) -> Iterator[pa.RecordBatch]:
    """A shard's record batches (local paths are read natively, URLs through fsspec)."""
    where = _shard_path(path, file)
    if "://" in where:
        import fsspec

        with fsspec.open(where, "rb") as fh, pq.ParquetFile(fh) as parquet:
            yield from parquet.iter_batches(batch_size=BATCH_ROWS, columns=columns)
        return
    with pq.ParquetFile(where) as parquet:
        yield from parquet.iter_batches(batch_size=BATCH_ROWS, columns=columns)
