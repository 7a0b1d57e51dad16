"""Ingest: CSV / JSONL / Parquet sources -> Parquet shards plus ``index.json``, atomically.

>>> result = ingest(["events.csv"], Path("data/events"), shard_rows=65536)  # doctest: +SKIP
>>> result.rows, result.shards, result.skipped                              # doctest: +SKIP
(1000000, 16, False)

Rows keep their source order (sources in the order given, directories and globs sorted) and
are cut into shards of ``shard_rows`` rows (the last may be shorter). Every row is cast to the
schema — the one given, or one inferred from the first source — and a row that cannot be is a
*bad row*, reported with file and line. More than ``max_bad_rows`` of them fails the ingest,
and no dataset is left behind: shards are written into a temporary directory beside ``out``
which replaces ``out`` only at the end (two renames; ``out`` is never half-written).

The *fingerprint* is a sha256 over the sources' URLs, sizes and content hashes plus the
options. When ``out/index.json`` already carries the same fingerprint (and its shards are
present) the call does nothing and returns ``skipped=True``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.parquet as pq

from tailguard.data.index import (
    INDEX_NAME,
    DatasetIndex,
    DatasetIndexError,
    ShardInfo,
    read_index,
    sha256_bytes,
)
from tailguard.data.schema import Schema, parse_schema
from tailguard.data.sources import (
    BadRow,
    IngestError,
    SourceFile,
    expand_sources,
    fingerprint,
    read_source,
    sample_schema,
)

if TYPE_CHECKING:
    from tailguard.data.checks import CheckReport, Rules

DEFAULT_SHARD_ROWS = 65536
BAD_ROW_SAMPLES = 20
"""How many bad rows an index and an error keep verbatim (the count is always exact)."""


class TooManyBadRows(IngestError):
    """More malformed rows than ``max_bad_rows``; ``bad_rows`` holds the first of them."""

    def __init__(self, bad_rows: list[BadRow], limit: int, count: int) -> None:
        self.bad_rows = bad_rows
        self.limit = limit
        self.count = count
        shown = "\n".join(f"  {row}" for row in bad_rows[:5])
        more = "" if count <= 5 else f"\n  … and {count - 5} more"
        super().__init__(
            f"more than {limit} bad row(s) (--max-bad-rows {limit}): stopped at bad row "
            f"{count}; no dataset was written:\n{shown}{more}\n"
            "Fix the input, pass a matching --schema, or raise --max-bad-rows to skip them."
        )


@dataclass(frozen=True)
class IngestResult:
    """What :func:`ingest` did. ``skipped`` means ``out`` already held this exact ingest."""

    out: Path
    rows: int
    shards: int
    bad_rows: int
    fingerprint: str
    skipped: bool
    schema: Mapping[str, Any]
    bad_row_samples: tuple[BadRow, ...] = ()
    check: CheckReport | None = None


class _ShardWriter:
    """Cuts a stream of tables into fixed-size Parquet shards inside ``directory``."""

    def __init__(self, directory: Path, shard_rows: int, schema: pa.Schema) -> None:
        self.directory = directory
        self.shard_rows = shard_rows
        self.schema = schema
        self.pending: list[pa.Table] = []
        self.pending_rows = 0
        self.shards: list[ShardInfo] = []

    def add(self, table: pa.Table) -> None:
        self.pending.append(table)
        self.pending_rows += table.num_rows
        while self.pending_rows >= self.shard_rows:
            combined = pa.concat_tables(self.pending)
            self._write(combined.slice(0, self.shard_rows))
            rest = combined.slice(self.shard_rows)
            self.pending = [rest] if rest.num_rows else []
            self.pending_rows = rest.num_rows

    def close(self) -> list[ShardInfo]:
        if self.pending_rows:
            self._write(pa.concat_tables(self.pending))
        self.pending, self.pending_rows = [], 0
        return self.shards

    def _write(self, table: pa.Table) -> None:
        name = f"shard-{len(self.shards):05d}.parquet"
        sink = pa.BufferOutputStream()
        pq.write_table(table.cast(self.schema).combine_chunks(), sink, compression="zstd")
        data = sink.getvalue().to_pybytes()
        (self.directory / name).write_bytes(data)
        self.shards.append(ShardInfo(name, table.num_rows, sha256_bytes(data)))


def _existing(out: Path, fp: str) -> DatasetIndex | None:
    """The index at ``out`` when it records fingerprint ``fp`` and its shards are present."""
    if not (out / INDEX_NAME).is_file():
        return None
    try:
        index = read_index(str(out))
    except DatasetIndexError:
        return None
    if index.fingerprint != fp:
        return None
    if not all((out / s.file).is_file() for s in index.shards):
        return None
    return index


def _replace_dir(tmp: Path, out: Path) -> None:
    if not out.exists():
        os.rename(tmp, out)
        return
    old = out.parent / f".{out.name}.old-{uuid.uuid4().hex[:8]}"
    os.rename(out, old)
    os.rename(tmp, out)
    shutil.rmtree(old, ignore_errors=True)


def ingest(
    sources: list[str],
    out: Path,
    *,
    shard_rows: int = DEFAULT_SHARD_ROWS,
    schema: Mapping[str, Any] | None = None,
    max_bad_rows: int = 0,
    progress: Callable[[int, int], None] | None = None,
    checks: Rules | None = None,
) -> IngestResult:
    """Ingest ``sources`` into the dataset directory ``out`` (see the module docs).

    ``progress(done, total)`` is called after each source file. Columns the schema declares
    ``pii: drop`` are not written, ``pii: hash`` ones are replaced by an HMAC keyed by
    ``TAILGUARD_PII_KEY`` (:mod:`tailguard.data.checks.pii`). With ``checks`` the new shards
    are checked before they replace ``out`` (the report is kept in ``out/checks/``); a
    failing check raises :class:`~tailguard.data.checks.DataCheckFailed` and leaves ``out``
    unchanged. Raises :class:`TooManyBadRows` or :class:`IngestError`; on any failure
    ``out`` is unchanged.
    """
    if shard_rows < 1:
        raise IngestError(f"shard_rows must be >= 1, got {shard_rows}")
    if max_bad_rows < 0:
        raise IngestError(f"max_bad_rows must be >= 0, got {max_bad_rows}")
    out = Path(out).absolute()
    files = expand_sources(sources, exclude=str(out))
    declared = parse_schema(schema) if schema is not None else None
    pii_actions = declared.pii if declared is not None else {}
    from tailguard.data.checks.pii import key_id, pii_key

    key = pii_key(required="hash" in pii_actions.values()) if pii_actions else None
    options: dict[str, Any] = {
        "shard_rows": shard_rows,
        "schema": declared.to_mapping() if declared is not None else None,
        "max_bad_rows": max_bad_rows,
    }
    if key is not None and "hash" in pii_actions.values():
        # the key's public id, not the key: another key must not pass for an unchanged ingest
        options["pii_key_id"] = key_id(key)
    hashes = [f.sha256() for f in files]
    fp = fingerprint(files, hashes, options)

    found = _existing(out, fp)
    if found is not None:
        return IngestResult(
            out,
            found.total_rows,
            len(found.shards),
            found.bad_rows,
            fp,
            True,
            found.schema.to_mapping(),
        )
    if out.exists() and not (out / INDEX_NAME).is_file() and any(out.iterdir()):
        raise IngestError(
            f"{out} exists, is not empty and is not a dataset directory; refusing to replace it"
        )

    resolved = declared if declared is not None else sample_schema(files[0])
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.tmp-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        shards, bad_count, samples = _write_shards(
            files, resolved, tmp, shard_rows, max_bad_rows, progress, pii_actions, key
        )
        index = DatasetIndex(
            schema=resolved.stored(),
            shards=tuple(shards),
            fingerprint=fp,
            sources=tuple(
                {"url": f.url, "size": f.size, "sha256": h}
                for f, h in zip(files, hashes, strict=True)
            ),
            options=options,
            bad_rows=bad_count,
            bad_row_samples=tuple(str(b) for b in samples),
            created_at=datetime.now(UTC).isoformat(),
            pii=dict(pii_actions),
            pii_key_id=options.get("pii_key_id"),
        )
        (tmp / INDEX_NAME).write_text(index.to_json(), encoding="utf-8")
        report = None
        if checks is not None:
            from tailguard.data.checks import DataCheckFailed, run_check

            report = run_check(str(tmp), checks, shown_as=str(out))
            if not report.passed:
                raise DataCheckFailed(report)
        _replace_dir(tmp, out)
    finally:
        with contextlib.suppress(FileNotFoundError):
            shutil.rmtree(tmp)
    return IngestResult(
        out,
        index.total_rows,
        len(shards),
        bad_count,
        fp,
        False,
        index.schema.to_mapping(),
        tuple(samples),
        report,
    )


def _write_shards(
    files: Iterable[SourceFile],
    schema: Schema,
    directory: Path,
    shard_rows: int,
    max_bad_rows: int,
    progress: Callable[[int, int], None] | None,
    pii_actions: Mapping[str, str],
    key: bytes | None,
) -> tuple[list[ShardInfo], int, list[BadRow]]:
    from tailguard.data.checks.pii import protect

    files = list(files)
    writer = _ShardWriter(directory, shard_rows, schema.stored().arrow_schema())
    samples: list[BadRow] = []
    count = 0

    def on_bad(row: BadRow) -> None:
        nonlocal count
        count += 1
        if len(samples) < BAD_ROW_SAMPLES:
            samples.append(row)
        if count > max_bad_rows:
            raise TooManyBadRows(samples, max_bad_rows, count)

    for done, src in enumerate(files, start=1):
        for table in read_source(src, schema, on_bad):
            writer.add(protect(table, pii_actions, key) if pii_actions else table)
        if progress is not None:
            progress(done, len(files))
    return writer.close(), count, samples
