"""Deterministic, resumable data: ingest to Parquet shards, stream them exactly once per epoch."""

from typing import TYPE_CHECKING

from tailguard.data.index import (
    INDEX_NAME,
    DatasetIndex,
    DatasetIndexError,
    ShardInfo,
    ShardIntegrityError,
    read_index,
    verify_dataset,
)
from tailguard.data.ingest import IngestResult, TooManyBadRows, ingest
from tailguard.data.order import SHUFFLE_WINDOW_SHARDS, EpochOrder, Partition
from tailguard.data.schema import DataError, Schema, SchemaError, load_schema_option, parse_schema
from tailguard.data.sources import BadRow, IngestError
from tailguard.lazy import lazy_getattr

if TYPE_CHECKING:
    from tailguard.data.dataset import StreamingDataset

# StreamingDataset is a torch IterableDataset: importing torch costs over a second, which
# ``tailguard data show`` and the CLI's start-up should not pay.
__getattr__ = lazy_getattr(__name__, {"StreamingDataset": ".dataset"})

__all__ = [
    "INDEX_NAME",
    "SHUFFLE_WINDOW_SHARDS",
    "BadRow",
    "DataError",
    "DatasetIndex",
    "DatasetIndexError",
    "EpochOrder",
    "IngestError",
    "IngestResult",
    "Partition",
    "Schema",
    "SchemaError",
    "ShardInfo",
    "ShardIntegrityError",
    "StreamingDataset",
    "TooManyBadRows",
    "ingest",
    "load_schema_option",
    "parse_schema",
    "read_index",
    "verify_dataset",
]
