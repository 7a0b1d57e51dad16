"""``index.json``: what a dataset directory holds and how to check it.

Layout of a dataset directory written by :func:`tailguard.data.ingest`::

    DIR/index.json            this index (schema, shards, fingerprint, provenance)
    DIR/shard-00000.parquet   rows 0 .. rows_0-1, in source order
    DIR/shard-00001.parquet   ...

Every shard is listed with its row count and sha256. Readers check the hash the first time
they open a shard, so a tampered or truncated shard fails with its name instead of feeding a
model wrong data.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import fsspec

from tailguard.data.schema import DataError, Schema, parse_schema

INDEX_NAME = "index.json"
INDEX_FORMAT_VERSION = 1


class DatasetIndexError(DataError):
    """``index.json`` is missing or malformed."""


class ShardIntegrityError(DataError):
    """A shard is missing or its content does not match the sha256 in ``index.json``."""


@dataclass(frozen=True)
class ShardInfo:
    """One Parquet shard: file name relative to the dataset directory, row count, sha256."""

    file: str
    rows: int
    sha256: str


@dataclass(frozen=True)
class DatasetIndex:
    """The typed content of ``index.json``."""

    schema: Schema
    shards: tuple[ShardInfo, ...]
    fingerprint: str
    sources: tuple[dict[str, Any], ...] = ()
    options: dict[str, Any] = field(default_factory=dict)
    bad_rows: int = 0
    bad_row_samples: tuple[str, ...] = ()
    created_at: str = ""
    pii: dict[str, str] = field(default_factory=dict)
    """Columns ingest dropped or replaced by an HMAC (``column -> "drop"|"hash"``)."""
    pii_key_id: str | None = None
    """A public id of the HMAC key (never the key): which key hashed the ``hash`` columns."""

    @property
    def total_rows(self) -> int:
        return sum(s.rows for s in self.shards)

    @property
    def shard_rows(self) -> list[int]:
        return [s.rows for s in self.shards]

    def to_json(self) -> str:
        doc = {
            "format_version": INDEX_FORMAT_VERSION,
            "schema": self.schema.to_mapping(),
            "total_rows": self.total_rows,
            "shards": [asdict(s) for s in self.shards],
            "fingerprint": self.fingerprint,
            "sources": list(self.sources),
            "options": self.options,
            "bad_rows": self.bad_rows,
            "bad_row_samples": list(self.bad_row_samples),
            "created_at": self.created_at,
            "pii": self.pii,
            "pii_key_id": self.pii_key_id,
        }
        return json.dumps(doc, indent=2) + "\n"

    @classmethod
    def from_json(cls, text: str, *, where: str = INDEX_NAME) -> DatasetIndex:
        try:
            doc = json.loads(text)
            if doc.get("format_version") != INDEX_FORMAT_VERSION:
                raise DatasetIndexError(
                    f"{where}: format_version {doc.get('format_version')!r} is not "
                    f"{INDEX_FORMAT_VERSION}; re-ingest with this version of tailguard"
                )
            shards = tuple(
                ShardInfo(str(s["file"]), int(s["rows"]), str(s["sha256"])) for s in doc["shards"]
            )
            index = cls(
                schema=parse_schema(doc["schema"]),
                shards=shards,
                fingerprint=str(doc["fingerprint"]),
                sources=tuple(doc.get("sources", ())),
                options=dict(doc.get("options", {})),
                bad_rows=int(doc.get("bad_rows", 0)),
                bad_row_samples=tuple(str(s) for s in doc.get("bad_row_samples", ())),
                created_at=str(doc.get("created_at", "")),
                pii={str(k): str(v) for k, v in dict(doc.get("pii") or {}).items()},
                pii_key_id=doc.get("pii_key_id"),
            )
        except DatasetIndexError:
            raise
        except (ValueError, KeyError, TypeError, DataError) as exc:
            raise DatasetIndexError(f"{where}: malformed dataset index: {exc!r}") from exc
        if "total_rows" in doc and int(doc["total_rows"]) != index.total_rows:
            raise DatasetIndexError(
                f"{where}: total_rows {doc['total_rows']} != sum of shard rows {index.total_rows}"
            )
        return index


def _join(base: str, name: str) -> str:
    return base.rstrip("/") + "/" + name


def read_index(path: str) -> DatasetIndex:
    """Read ``PATH/index.json`` (``path`` is a local directory or an fsspec URL)."""
    where = _join(str(path), INDEX_NAME)
    try:
        with fsspec.open(where, "r", encoding="utf-8") as fh:
            text = fh.read()
    except FileNotFoundError:
        raise DatasetIndexError(
            f"{path}: no {INDEX_NAME} — not a dataset directory (create one with "
            "`tailguard data ingest SRC... --out DIR`)"
        ) from None
    return DatasetIndex.from_json(text, where=where)


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def read_shard_bytes(path: str, shard: ShardInfo, *, verify: bool) -> bytes:
    """The raw bytes of a shard; with ``verify`` they are checked against the index."""
    where = _join(str(path), shard.file)
    try:
        with fsspec.open(where, "rb") as fh:
            data: bytes = fh.read()
    except FileNotFoundError:
        raise ShardIntegrityError(f"shard {shard.file} is missing ({where})") from None
    if verify:
        got = sha256_bytes(data)
        if got != shard.sha256:
            raise ShardIntegrityError(
                f"shard {shard.file} fails its sha256 check (expected {shard.sha256[:12]}…, "
                f"found {got[:12]}…): tampered or truncated; re-ingest the dataset"
            )
    return data


def verify_dataset(path: str, shards: Sequence[ShardInfo] | None = None) -> DatasetIndex:
    """Check every (or the given) shard's sha256 now; raise naming the first bad one."""
    index = read_index(path)
    for shard in shards if shards is not None else index.shards:
        read_shard_bytes(path, shard, verify=True)
    return index
