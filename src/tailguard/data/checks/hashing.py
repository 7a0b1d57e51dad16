"""64-bit row digests computed on Arrow buffers with numpy, and a bounded-memory store that
finds digests seen more than once.

Digests: every column hashes to one ``uint64`` per row — fixed-width values by their bits,
strings and lists by a polynomial hash of their bytes modulo 2**64 (see :func:`_hash_bytes`)
— and the columns are folded together with splitmix64. No Python code runs per row. These
are digests for finding copies in ordinary data, not a defence against crafted collisions.

Memory: a digest and its row id are 16 bytes. :class:`DigestSpill` keeps at most
``buffer_entries`` of them in memory and appends the rest to ``partitions`` files under a
temporary directory, routed by the digest's top bits; finding duplicates then loads one
partition at a time. With ``partitions = ceil(rows / 2**20)`` a partition holds about a
million entries (16 MiB, plus a sort's copy) whatever the dataset's size, so peak memory
does not grow with it; the disk holds 16 bytes per row while the check runs.
"""

from __future__ import annotations

import math
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

_U64 = np.uint64
_NULL = _U64(0x9E3779B97F4A7C15)
_ENTRY = np.dtype([("digest", "<u8"), ("row", "<u8")])
PARTITION_ENTRIES = 2**20


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser, elementwise on a uint64 array (wrapping arithmetic)."""
    x = x ^ (x >> _U64(30))
    x = x * _U64(0xBF58476D1CE4E5B9)
    x = x ^ (x >> _U64(27))
    x = x * _U64(0x94D049BB133111EB)
    out: np.ndarray = x ^ (x >> _U64(31))
    return out


_R = 0x9E3779B97F4A7C15 | 1  # odd, so invertible modulo 2**64
_R_INV = pow(_R, -1, 2**64)
_powers: list[np.ndarray] = []


def _power_tables(n: int) -> tuple[np.ndarray, np.ndarray]:
    """``R**i`` and ``R**-i`` modulo 2**64 for ``i < n`` (cached, grown by doubling)."""
    if not _powers or len(_powers[0]) < n:
        size = 1 << max(16, math.ceil(math.log2(max(n, 1))))
        with np.errstate(over="ignore"):
            fwd = np.cumprod(np.full(size, _R, np.uint64), dtype=np.uint64)
            inv = np.cumprod(np.full(size, _R_INV, np.uint64), dtype=np.uint64)
        # shift by one so that index i holds R**i (R**0 == 1)
        fwd = np.concatenate([np.ones(1, np.uint64), fwd[:-1]])
        inv = np.concatenate([np.ones(1, np.uint64), inv[:-1]])
        _powers[:] = [fwd, inv]
    return _powers[0], _powers[1]


def _hash_bytes(data: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """One digest per variable-length value given its bytes and ``n + 1`` offsets.

    A polynomial hash modulo 2**64 computed for all values at once: one prefix sum of
    ``byte_i * R**i`` over the whole buffer, each value's slice of it, scaled back by
    ``R**-start`` (``R`` is odd, so it has an inverse) so that equal values hash equally
    wherever they sit in the buffer; then mixed with the length.
    """
    offsets = offsets.astype(np.int64)
    lengths = np.diff(offsets)
    base = int(offsets[0])
    total = int(offsets[-1]) - base
    seed = _mix(lengths.astype(np.uint64) + _U64(1))
    if total == 0:
        return seed
    fwd, inv = _power_tables(total + 1)
    contrib = data[base:base + total].astype(np.uint64) * fwd[:total]
    sums = np.empty(total + 1, np.uint64)
    sums[0] = 0
    np.cumsum(contrib, dtype=np.uint64, out=sums[1:])
    starts = offsets[:-1] - base
    rel = (sums[offsets[1:] - base] - sums[starts]) * inv[starts]
    return _mix(rel ^ seed)


def hash_column(column: pa.Array) -> np.ndarray:
    """A uint64 digest per row of one Arrow array (nulls share one digest)."""
    arr = column
    kind = arr.type
    if pa.types.is_dictionary(kind):
        arr = arr.cast(kind.value_type)
        kind = arr.type
    if pa.types.is_boolean(kind) or pa.types.is_integer(kind) or pa.types.is_floating(kind):
        # floats hash by their float64 bits, so 1.0 (float) and 1 (int) differ: types count
        target = pa.float64() if pa.types.is_floating(kind) else pa.int64()
        values = pc.fill_null(arr.cast(target), 0).to_numpy(zero_copy_only=False)
        out = _mix(values.view(np.uint64) ^ _U64(0x51ED27))
    elif pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_binary(kind):
        # read the Arrow buffers in place: int32 offsets for string/binary, int64 for large
        wide = pa.types.is_large_string(kind)
        _, offsets_buf, data_buf = arr.buffers()
        offsets = np.frombuffer(offsets_buf, np.int64 if wide else np.int32)[
            arr.offset:arr.offset + len(arr) + 1]
        data = np.frombuffer(data_buf, np.uint8) if data_buf is not None else np.zeros(0, np.uint8)
        out = _hash_bytes(data, offsets)
    elif pa.types.is_list(kind) or pa.types.is_large_list(kind):
        arr = arr.cast(pa.large_list(pa.float64()))
        offsets = arr.offsets.to_numpy().astype(np.int64)
        flat = arr.values.to_numpy(zero_copy_only=False)
        raw = np.ascontiguousarray(flat).view(np.uint8)
        out = _hash_bytes(raw, offsets * 8)
    else:
        return hash_column(arr.cast(pa.string()))
    if arr.null_count:
        out = np.where(arr.is_valid().to_numpy(zero_copy_only=False), out, _NULL)
    return out


def hash_rows(columns: list[pa.Array]) -> np.ndarray:
    """A uint64 digest per row over ``columns`` (order matters)."""
    if not columns:
        raise ValueError("hash_rows needs at least one column")
    acc = np.full(len(columns[0]), _U64(0x2545F4914F6CDD1D), np.uint64)
    for col in columns:
        acc = _mix(acc * _U64(0x100000001B3) + hash_column(col))
    return acc


def normalise_text(column: pa.Array) -> pa.Array:
    """Lower case, punctuation and runs of whitespace to one space, trimmed (Arrow kernels)."""
    lowered = pc.utf8_lower(column)
    collapsed = pc.replace_substring_regex(lowered, pattern=r"[\W_]+", replacement=" ")
    return pc.utf8_trim_whitespace(collapsed)


class DigestSpill:
    """Collects (digest, row id) pairs; yields the groups of row ids that share a digest.

    See the module docs for the memory bound. Use as a context manager (it owns a temporary
    directory) or call :meth:`close`.
    """

    def __init__(self, expected_rows: int, *, buffer_entries: int = 2**18,
                 partition_entries: int = PARTITION_ENTRIES) -> None:
        self.partitions = max(1, math.ceil(expected_rows / partition_entries))
        self._shift = _U64(64 - max(1, math.ceil(math.log2(self.partitions))))
        self._buffer_entries = buffer_entries
        self._pending: list[np.ndarray] = []
        self._pending_n = 0
        self._dir: Path | None = None
        self.entries = 0

    def add(self, digests: np.ndarray, rows: np.ndarray) -> None:
        block = np.empty(len(digests), _ENTRY)
        block["digest"] = digests
        block["row"] = rows
        self._pending.append(block)
        self._pending_n += len(block)
        self.entries += len(block)
        if self._pending_n >= self._buffer_entries and self.partitions > 1:
            self._flush()

    def _part(self, digests: np.ndarray) -> np.ndarray:
        if self.partitions == 1:
            return np.zeros(len(digests), np.int64)
        return (digests >> self._shift).astype(np.int64) % self.partitions

    def _flush(self) -> None:
        if not self._pending:
            return
        if self._dir is None:
            self._dir = Path(tempfile.mkdtemp(prefix="tailguard-digests-"))
        block = np.concatenate(self._pending)
        self._pending, self._pending_n = [], 0
        parts = self._part(block["digest"])
        order = np.argsort(parts, kind="stable")
        block, parts = block[order], parts[order]
        bounds = np.searchsorted(parts, np.arange(self.partitions + 1))
        for p in range(self.partitions):
            lo, hi = bounds[p], bounds[p + 1]
            if hi > lo:
                with open(self._dir / f"part-{p:05d}.bin", "ab") as fh:
                    block[lo:hi].tofile(fh)

    def groups(self) -> Iterator[np.ndarray]:
        """Row-id arrays (sorted), one per digest seen at least twice."""
        if self._dir is None:  # everything still in memory
            parts: Iterator[np.ndarray] = iter(
                [np.concatenate(self._pending)] if self._pending else [])
        else:
            self._flush()
            parts = (np.fromfile(path, _ENTRY) for path in sorted(self._dir.glob("part-*.bin")))
        for block in parts:
            digests = block["digest"]
            if len(digests) < 2:
                continue
            # sort the bare digests (fast) to find repeated values; only the few rows that
            # carry one are gathered and ordered (a structured sort of all is ~20x slower)
            ordered = np.sort(digests)
            repeated = ordered[1:][ordered[1:] == ordered[:-1]]
            if not len(repeated):
                continue
            hits = block[np.isin(digests, repeated)]
            hits = hits[np.argsort(hits["digest"], kind="stable")]  # rows stay ascending
            same = hits["digest"][1:] == hits["digest"][:-1]
            starts = np.flatnonzero(np.concatenate([[True], ~same]))
            ends = np.concatenate([starts[1:], [len(hits)]])
            for s, e in zip(starts, ends, strict=True):
                yield hits["row"][s:e]

    def close(self) -> None:
        self._pending = []
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    def __enter__(self) -> DigestSpill:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
