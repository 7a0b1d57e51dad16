"""Source files for ingest: expansion, fingerprints, schema sampling and row-checked reading.

A source is a local path or any fsspec URL (``s3://bucket/x.csv`` works once the user has
installed the driver, e.g. ``s3fs``). Directories expand to their supported files and globs to
their matches, both sorted, so the row order of a dataset is a function of its arguments.
Formats come from the file name: ``.csv``, ``.tsv``, ``.jsonl``/``.ndjson``/``.json`` (one
object per line), ``.parquet``/``.pq``; text formats may be compressed (``.gz``, ``.bz2``,
``.xz``, ``.zst``).

Readers yield Arrow tables already cast to the target :class:`~tailguard.data.schema.Schema`
and hand every malformed row to a callback as a :class:`BadRow` naming file and line (for
Parquet, the 1-based row number), so the caller decides when there are too many.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import json
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import IO, Any

import fsspec
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from tailguard.data.schema import (
    Column,
    DataError,
    Schema,
    converter,
    infer_python_type,
    infer_schema,
)

_COMPRESSION = {".gz": "gzip", ".bz2": "bz2", ".xz": "xz", ".zst": "zstd"}
_FORMATS = {
    ".csv": "csv",
    ".tsv": "tsv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "jsonl",
    ".parquet": "parquet",
    ".pq": "parquet",
}
SAMPLE_ROWS = 10_000
"""Rows of the first source used to infer a schema when none is given."""


class IngestError(DataError):
    """Ingest cannot proceed: a missing source, an unsupported format, a bad header."""


@dataclass(frozen=True)
class BadRow:
    """A malformed input row: ``source`` and 1-based ``line`` (Parquet: row), and why."""

    source: str
    line: int
    reason: str

    def __str__(self) -> str:
        return f"{self.source}:{self.line}: {self.reason}"


@dataclass(frozen=True)
class SourceFile:
    """One input file: fsspec URL (absolute path when local), format, compression, size."""

    url: str
    format: str
    compression: str | None
    size: int

    @contextlib.contextmanager
    def open_binary(self, *, decompress: bool = True) -> Iterator[IO[bytes]]:
        """The file's bytes (decompressed unless ``decompress=False``); closes every layer."""
        compression = self.compression if decompress else None
        with fsspec.open(self.url, "rb", compression=compression) as fh:
            yield fh

    def sha256(self) -> str:
        digest = hashlib.sha256()
        with self.open_binary(decompress=False) as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                digest.update(chunk)
        return digest.hexdigest()


def _classify(name: str) -> tuple[str, str | None] | None:
    stem, ext = os.path.splitext(name.lower())
    compression = _COMPRESSION.get(ext)
    if compression is not None:
        stem, ext = os.path.splitext(stem)
    fmt = _FORMATS.get(ext)
    if fmt is None or (fmt == "parquet" and compression is not None):
        return None
    return fmt, compression


def _hidden(path: str, root: str) -> bool:
    rel = path[len(root) :] if path.startswith(root) else path
    return any(part.startswith(".") for part in rel.split("/") if part)


def expand_sources(sources: Sequence[str], *, exclude: str | None = None) -> list[SourceFile]:
    """Resolve paths, directories and globs into sorted, classified source files.

    Directory expansion skips hidden files and folders, and everything under ``exclude``
    (a local directory: the ingest's own output, which may sit inside a source directory).
    """
    if not sources:
        raise IngestError("no sources given")
    skip = os.path.abspath(exclude) + os.sep if exclude is not None else None
    out: list[SourceFile] = []
    for src in sources:
        fs, path = fsspec.core.url_to_fs(src)
        local = "file" in (fs.protocol if isinstance(fs.protocol, tuple) else (fs.protocol,))
        if any(ch in path for ch in "*?["):
            paths = sorted(fs.glob(path))
        elif fs.isdir(path):
            paths = sorted(
                p for p in fs.find(path) if _classify(p) is not None and not _hidden(p, path)
            )
        elif fs.exists(path):
            paths = [path]
        else:
            raise IngestError(f"source {src!r} does not exist")
        if local and skip is not None:
            paths = [p for p in paths if not os.path.abspath(p).startswith(skip)]
        if not paths:
            raise IngestError(f"source {src!r} names no .csv/.tsv/.jsonl/.parquet files")
        for p in paths:
            kind = _classify(p)
            if kind is None:
                raise IngestError(
                    f"source {p!r}: unsupported file type; use .csv, .tsv, .jsonl, .ndjson, "
                    ".json (one object per line) or .parquet; text formats may be compressed "
                    "(.gz, .bz2, .xz, .zst)"
                )
            url = os.path.abspath(p) if local else fs.unstrip_protocol(p)
            out.append(SourceFile(url, kind[0], kind[1], int(fs.size(p))))
    return out


def fingerprint(files: Sequence[SourceFile], hashes: Sequence[str], options: dict[str, Any]) -> str:
    """sha256 over source URLs, sizes, content hashes and the ingest options."""
    payload = {
        "fingerprint_version": 1,
        "sources": [
            {"url": f.url, "size": f.size, "sha256": h} for f, h in zip(files, hashes, strict=True)
        ],
        "options": options,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


# --- schema inference ------------------------------------------------------------------------


def sample_schema(src: SourceFile) -> Schema:
    """Infer a schema from the first :data:`SAMPLE_ROWS` rows of ``src`` (bad rows skipped)."""
    with src.open_binary() as fh:
        if src.format in ("csv", "tsv"):
            reader = pacsv.open_csv(
                fh,
                read_options=pacsv.ReadOptions(block_size=1 << 22),
                parse_options=pacsv.ParseOptions(
                    delimiter="\t" if src.format == "tsv" else ",",
                    invalid_row_handler=lambda _row: "skip",
                ),
            )
            batches, rows = [], 0
            for batch in reader:
                batches.append(batch)
                rows += batch.num_rows
                if rows >= SAMPLE_ROWS:
                    break
            return infer_schema(pa.Table.from_batches(batches, schema=reader.schema))
        if src.format == "parquet":
            pf = pq.ParquetFile(fh)
            first = next(pf.iter_batches(batch_size=SAMPLE_ROWS), None)
            table = (
                pa.Table.from_batches([first])
                if first is not None
                else pf.schema_arrow.empty_table()
            )
            return infer_schema(table)
        return _sample_jsonl(fh, src.url)


def _sample_jsonl(fh: IO[bytes], url: str) -> Schema:
    records: list[dict[str, Any]] = []
    for raw in fh:
        try:
            rec = json.loads(raw)
        except ValueError:
            continue
        if isinstance(rec, dict):
            records.append(rec)
            if len(records) >= SAMPLE_ROWS:
                break
    names: dict[str, None] = {}
    for rec in records:
        names.update(dict.fromkeys(rec))
    if not names:
        raise IngestError(f"{url}: no JSON object lines to infer a schema from; pass --schema")
    columns = []
    for name in names:
        values = [rec.get(name) for rec in records]
        columns.append(
            Column(name, infer_python_type(values, name), any(v is None for v in values))
        )
    return Schema(tuple(columns))


# --- row-checked reading ---------------------------------------------------------------------


class _Buffer:
    """Column lists of good rows, turned into Arrow tables every ``chunk_rows`` rows."""

    def __init__(self, schema: Schema, chunk_rows: int) -> None:
        self.schema = schema
        self.arrow = schema.arrow_schema()
        self.chunk_rows = chunk_rows
        self.cols: list[list[Any]] = [[] for _ in schema.columns]

    def add(self, values: list[Any]) -> pa.Table | None:
        for col, value in zip(self.cols, values, strict=True):
            col.append(value)
        return self.flush() if len(self.cols[0]) >= self.chunk_rows else None

    def flush(self) -> pa.Table | None:
        if not self.cols[0]:
            return None
        table = pa.Table.from_arrays(
            [pa.array(c, type=f.type) for c, f in zip(self.cols, self.arrow, strict=True)],
            schema=self.arrow,
        )
        self.cols = [[] for _ in self.schema.columns]
        return table


_MISSING: Any = object()


def _convert_record(
    raws: Sequence[Any], schema: Schema, convs: Sequence[Callable[[Any], Any]]
) -> tuple[list[Any], str | None]:
    """Cast one record's raw values (``_MISSING`` where absent); a reason when it is bad."""
    values: list[Any] = []
    for raw, col, conv in zip(raws, schema.columns, convs, strict=True):
        if raw is _MISSING or raw is None:
            if not col.nullable:
                what = (
                    "missing required column" if raw is _MISSING else "no value for required column"
                )
                return values, f"{what} {col.name!r}"
            values.append(None)
            continue
        try:
            values.append(conv(raw))
        except ValueError as exc:
            return values, f"column {col.name!r}: {exc} (expected {col.type})"
    return values, None


def _read_csv(
    src: SourceFile, schema: Schema, on_bad: Callable[[BadRow], None], buf: _Buffer
) -> Iterator[pa.Table]:
    convs = [converter(c.type) for c in schema.columns]
    with src.open_binary() as raw, io.TextIOWrapper(raw, encoding="utf-8", newline="") as text:
        reader = csv.reader(text, delimiter="\t" if src.format == "tsv" else ",")
        try:
            header = next(reader)
        except StopIteration:
            return
        except (csv.Error, UnicodeDecodeError) as exc:
            raise IngestError(f"{src.url}:1: cannot read the CSV header: {exc}") from exc
        where = {name: i for i, name in enumerate(header)}
        missing = [c.name for c in schema.columns if c.name not in where and not c.nullable]
        if missing:
            raise IngestError(
                f"{src.url}:1: header {header} lacks required column(s) {missing}; "
                'fix the file or mark them nullable in --schema (e.g. "int64?")'
            )
        idx = [where.get(c.name, -1) for c in schema.columns]
        # An empty CSV field is a null for every type but string (where it is "").
        blank_is_null = [c.type != "string" for c in schema.columns]
        width = len(header)
        last_line = 1
        while True:
            start = last_line + 1
            try:
                row = next(reader)
            except StopIteration:
                break
            except csv.Error as exc:
                last_line = reader.line_num
                on_bad(BadRow(src.url, start, f"unparseable CSV: {exc}"))
                continue
            except UnicodeDecodeError as exc:
                raise IngestError(
                    f"{src.url}: not valid UTF-8 after line {last_line}: {exc}"
                ) from exc
            last_line = reader.line_num
            if not row:
                continue
            if len(row) != width:
                on_bad(BadRow(src.url, start, f"expected {width} fields, found {len(row)}"))
                continue
            raws = [
                _MISSING if j < 0 else (None if row[j] == "" and null_if_blank else row[j])
                for j, null_if_blank in zip(idx, blank_is_null, strict=True)
            ]
            values, reason = _convert_record(raws, schema, convs)
            if reason is not None:
                on_bad(BadRow(src.url, start, reason))
                continue
            table = buf.add(values)
            if table is not None:
                yield table


def _read_jsonl(
    src: SourceFile, schema: Schema, on_bad: Callable[[BadRow], None], buf: _Buffer
) -> Iterator[pa.Table]:
    convs = [converter(c.type) for c in schema.columns]
    names = schema.names
    with src.open_binary() as fh:
        for line_no, raw in enumerate(fh, start=1):
            if not raw.strip():
                continue
            try:
                rec = json.loads(raw)
            except UnicodeDecodeError:
                on_bad(BadRow(src.url, line_no, "not valid UTF-8"))
                continue
            except ValueError as exc:
                on_bad(BadRow(src.url, line_no, f"invalid JSON: {exc}"))
                continue
            if not isinstance(rec, dict):
                on_bad(
                    BadRow(src.url, line_no, f"expected a JSON object, found {type(rec).__name__}")
                )
                continue
            values, reason = _convert_record([rec.get(n, _MISSING) for n in names], schema, convs)
            if reason is not None:
                on_bad(BadRow(src.url, line_no, reason))
                continue
            table = buf.add(values)
            if table is not None:
                yield table


def _read_parquet(
    src: SourceFile, schema: Schema, on_bad: Callable[[BadRow], None], buf: _Buffer
) -> Iterator[pa.Table]:
    convs = [converter(c.type) for c in schema.columns]
    target = schema.arrow_schema()
    with src.open_binary() as fh:
        pf = pq.ParquetFile(fh)
        present = set(pf.schema_arrow.names)
        missing = [c.name for c in schema.columns if c.name not in present and not c.nullable]
        if missing:
            raise IngestError(f"{src.url}: lacks required column(s) {missing}")
        offset = 0
        for batch in pf.iter_batches(batch_size=buf.chunk_rows):
            fast = _cast_batch(batch, schema, target)
            if fast is not None:
                table = buf.flush()
                if table is not None:
                    yield table
                yield fast
            else:
                for i, rec in enumerate(batch.to_pylist()):
                    raws = [rec.get(n, _MISSING) for n in schema.names]
                    values, reason = _convert_record(raws, schema, convs)
                    if reason is not None:
                        on_bad(BadRow(src.url, offset + i + 1, reason))
                        continue
                    table = buf.add(values)
                    if table is not None:
                        yield table
            offset += batch.num_rows


def _cast_batch(batch: pa.RecordBatch, schema: Schema, target: pa.Schema) -> pa.Table | None:
    """Whole-batch cast when every value fits; ``None`` sends the batch down the per-row path."""
    arrays = []
    for col, field in zip(schema.columns, target, strict=True):
        if col.name not in batch.schema.names:
            arrays.append(pa.nulls(batch.num_rows, type=field.type))
            continue
        arr = batch.column(col.name)
        if not col.nullable and arr.null_count:
            return None
        if col.type == "string" and not (
            pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type)
        ):
            return None  # keep one stringification rule: the per-row path's
        try:
            arrays.append(pc.cast(arr, field.type, safe=True))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
            return None
    return pa.Table.from_arrays(arrays, schema=target)


def read_source(
    src: SourceFile, schema: Schema, on_bad: Callable[[BadRow], None], *, chunk_rows: int = 8192
) -> Iterator[pa.Table]:
    """Yield ``src``'s good rows as tables of ``schema``; report each bad row to ``on_bad``."""
    buf = _Buffer(schema, chunk_rows)
    reader = {"csv": _read_csv, "tsv": _read_csv, "jsonl": _read_jsonl, "parquet": _read_parquet}
    yield from reader[src.format](src, schema, on_bad, buf)
    tail = buf.flush()
    if tail is not None:
        yield tail
