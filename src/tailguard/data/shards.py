"""Reading shards: lazy sha256 checks, decoding to numpy columns, a bounded prefetching LRU.

A decoded shard is ``dict[column, numpy.ndarray]`` (strings as object arrays of ``str``; a
list column of fixed width as a 2-D array, of varying width as an object array of arrays).
:class:`ShardCache` holds at most ``prefetch + 1`` of them: the one being read and the next
``prefetch`` ones, which a single background thread decodes ahead of need.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import fsspec
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from tailguard.data.index import DatasetIndex, ShardInfo, read_shard_bytes

Decoded = dict[str, np.ndarray]


class ShardReader:
    """Decodes the shards of one dataset; verifies each shard's sha256 on its first open.

    Picklable (it is copied into each DataLoader worker); every process keeps its own record
    of the shards it has verified.
    """

    def __init__(self, path: str, index: DatasetIndex, columns: Sequence[str]) -> None:
        self.path = path.rstrip("/")
        self.shards: tuple[ShardInfo, ...] = index.shards
        self.columns = list(columns)
        # Only set.add and `in` (atomic under the GIL): no lock that a fork could copy held.
        self._verified: set[int] = set()

    def decode(self, shard_id: int) -> Decoded:
        shard = self.shards[shard_id]
        if shard_id not in self._verified:
            # One read serves both the hash and the decode.
            data = read_shard_bytes(self.path, shard, verify=True)
            table = _read_columns(pa.BufferReader(data), self.columns)
            self._verified.add(shard_id)
        else:
            with fsspec.open(f"{self.path}/{shard.file}", "rb") as fh:
                table = _read_columns(fh, self.columns)
        if table.num_rows != shard.rows:
            raise ValueError(f"shard {shard.file}: {table.num_rows} rows, index says {shard.rows}")
        return {name: _to_numpy(table.column(name)) for name in self.columns}


def _read_columns(source: Any, columns: list[str]) -> pa.Table:
    """One shard's columns. ``ParquetFile`` reads a single file directly; ``pq.read_table``
    would build a ``pyarrow.dataset`` around it (and import that module, ~7 ms, on the first
    read of a process: inside the time-to-accuracy clock)."""
    with pq.ParquetFile(source) as parquet:
        return parquet.read(columns=columns)


def _to_numpy(column: pa.ChunkedArray) -> np.ndarray:
    """A column as numpy; a list column whose rows all have one length becomes a writable
    2-D array (row ``i`` is sample ``i``), other list columns object arrays of *writable*
    numpy arrays.

    (Arrow's zero-copy views are read-only, and torch warns when collating those.)
    """
    if not (pa.types.is_list(column.type) or pa.types.is_large_list(column.type)):
        return np.asarray(column.to_numpy())
    lists = column.combine_chunks()
    out = np.empty(len(lists), dtype=object)
    if len(lists) == 0:
        return out
    if lists.null_count:
        dtype = column.type.value_type.to_pandas_dtype()
        for i, value in enumerate(lists.to_pylist()):
            out[i] = None if value is None else np.asarray(value, dtype=dtype)
        return out
    flat = np.array(lists.flatten().to_numpy(zero_copy_only=False))  # one writable copy
    offsets = lists.offsets.to_numpy()
    widths = np.diff(offsets)
    if len(flat) == len(lists) * int(widths[0]) and (widths == widths[0]).all():
        # every row the same length (pixels, embeddings): one 2-D array, row i = sample i;
        # a batch is then a slice, not a stack of small arrays
        return flat.reshape(len(lists), int(widths[0]))
    parts = np.split(flat, offsets[1:-1] - offsets[0])
    for i, part in enumerate(parts):
        out[i] = part
    return out


class ShardCache:
    """An LRU of decoded shards with background prefetch; capacity ``prefetch + 1``.

    Use from one thread: :meth:`get` the shard needed now, then :meth:`prefetch` the ones
    needed next. Call :meth:`close` when done: pending prefetches are cancelled and the
    prefetch thread has exited when it returns.
    """

    def __init__(self, decode: Callable[[int], Decoded], prefetch: int) -> None:
        if prefetch < 0:
            raise ValueError(f"prefetch must be >= 0, got {prefetch}")
        self._decode = decode
        self.prefetch_depth = prefetch
        self.capacity = prefetch + 1
        self._entries: OrderedDict[int, Future[Decoded]] = OrderedDict()
        # created on the first prefetch: an iteration with nothing to prefetch (a one-shard
        # epoch) never starts or joins a thread
        self._pool: ThreadPoolExecutor | None = None
        self.decodes = 0

    def get(self, shard_id: int) -> Decoded:
        entry = self._entries.get(shard_id)
        if entry is None:
            entry = Future()
            try:
                entry.set_result(self._decode(shard_id))
            except BaseException as exc:  # keep the failure: the caller sees it below
                entry.set_exception(exc)
            self.decodes += 1
            self._entries[shard_id] = entry
        self._entries.move_to_end(shard_id)
        self._evict()
        return entry.result()

    def prefetch(self, upcoming: Sequence[int]) -> None:
        """Start decoding the first ``prefetch`` shards of ``upcoming`` (most urgent first)."""
        for shard_id in list(dict.fromkeys(upcoming))[: self.prefetch_depth]:
            if shard_id in self._entries:
                self._entries.move_to_end(shard_id)
            else:
                if self._pool is None:
                    self._pool = ThreadPoolExecutor(max_workers=1,
                                                    thread_name_prefix="tailguard-prefetch")
                self._entries[shard_id] = self._pool.submit(self._decode, shard_id)
                self.decodes += 1
        self._evict()

    def cached(self) -> list[int]:
        return list(self._entries)

    def _evict(self) -> None:
        while len(self._entries) > self.capacity:
            _, old = self._entries.popitem(last=False)
            old.cancel()

    def close(self) -> None:
        for entry in self._entries.values():
            entry.cancel()
        self._entries.clear()
        if self._pool is not None:
            # Wait for the one decode in flight: no thread outlives the iterator, so a later
            # fork (DataLoader workers) never copies a thread's half-held locks.
            self._pool.shutdown(wait=True, cancel_futures=True)
