"""Sample order and partitioning: pure functions of (dataset, seed, epoch) and of the cluster.

**Global order.** Samples are numbered in ingest order (shard 0's rows, then shard 1's, …).
For epoch ``e`` the global order is a permutation fixed by ``(seed, e)`` and the shard sizes,
built by a two-level shuffle that keeps reads shard-local:

1. the shard order is permuted with ``rng(seed, e)``;
2. the permuted shards are cut into *windows* of :data:`SHUFFLE_WINDOW_SHARDS` consecutive
   shards, and the rows of each window are permuted with ``rng(seed, e, window)``.

The epoch's order is window 0's rows, then window 1's, … With ``shuffle=False`` both
permutations are the identity and the order is the ingest order. Nothing else (world size,
DataLoader workers, prefetch depth, selected columns) changes the order.

**Partition.** Training consumes the order in global batches of ``B = batch_size * world_size``
from the resume position ``start`` (the global count already consumed this epoch). In global
step ``s``, rank ``r`` takes positions ``start + s*B + r*b … + b - 1`` (``b = batch_size``),
clipped to the epoch's end: the last step's batches can be short and the high ranks' empty.
With ``k`` DataLoader workers, worker ``j`` of a rank produces that rank's batches
``j, j+k, j+2k, …`` so the DataLoader's round-robin over workers restores the rank's order.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property

import numpy as np

SHUFFLE_WINDOW_SHARDS = 4
"""Shards whose rows are mixed together; part of the order's definition (changing it changes
every shuffled order). Memory per DataLoader worker grows with it, see ``StreamingDataset``."""


def _rng(*key: int) -> np.random.Generator:
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(list(key))))


@dataclass(frozen=True)
class EpochOrder:
    """The global order of one epoch, kept as windows so that it is never materialised whole."""

    shard_rows: tuple[int, ...]
    seed: int
    epoch: int
    shuffle: bool
    window_shards: int = SHUFFLE_WINDOW_SHARDS

    def __post_init__(self) -> None:
        if self.seed < 0 or self.epoch < 0:
            raise ValueError(
                f"seed and epoch must be >= 0, got seed={self.seed} epoch={self.epoch}"
            )
        if self.window_shards < 1:
            raise ValueError(f"window_shards must be >= 1, got {self.window_shards}")

    @property
    def num_samples(self) -> int:
        return sum(self.shard_rows)

    @cached_property
    def shard_offsets(self) -> np.ndarray:
        """Global sample id of each shard's first row (ingest order)."""
        return np.concatenate([[0], np.cumsum(self.shard_rows, dtype=np.int64)])[:-1]

    @cached_property
    def windows(self) -> tuple[tuple[int, ...], ...]:
        """Shard ids of each window, in epoch order."""
        n = len(self.shard_rows)
        order = _rng(self.seed, self.epoch, 0).permutation(n) if self.shuffle else np.arange(n)
        w = self.window_shards
        return tuple(tuple(int(s) for s in order[i : i + w]) for i in range(0, n, w))

    @cached_property
    def window_starts(self) -> np.ndarray:
        """Global position of each window's first sample, plus the end (length windows + 1)."""
        sizes = [sum(self.shard_rows[s] for s in win) for win in self.windows]
        return np.concatenate([[0], np.cumsum(sizes, dtype=np.int64)]).astype(np.int64)

    def window_permutation(self, window: int) -> np.ndarray | None:
        """Window-local row order (``None`` = identity, when not shuffling)."""
        if not self.shuffle:
            return None
        size = int(self.window_starts[window + 1] - self.window_starts[window])
        return _rng(self.seed, self.epoch, 1, window).permutation(size)

    def locate(
        self, window: int, positions: np.ndarray, perm: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """(shard id, row within shard) of each global ``position`` inside ``window``.

        Pass ``perm`` (from :meth:`window_permutation`) to avoid recomputing it per call.
        """
        offsets = positions - self.window_starts[window]
        if self.shuffle:
            if perm is None:
                perm = self.window_permutation(window)
            assert perm is not None
            offsets = perm[offsets]
        shards = np.asarray(self.windows[window], dtype=np.int64)
        sizes = np.asarray([self.shard_rows[s] for s in shards], dtype=np.int64)
        starts = np.concatenate([[0], np.cumsum(sizes)])
        which = np.searchsorted(starts, offsets, side="right") - 1
        return shards[which], offsets - starts[which]

    def global_order(self) -> np.ndarray:
        """All sample ids in epoch order. Materialises N integers: for tests and tools."""
        parts = []
        for k in range(len(self.windows)):
            pos = np.arange(self.window_starts[k], self.window_starts[k + 1], dtype=np.int64)
            shards, rows = self.locate(k, pos)
            parts.append(self.shard_offsets[shards] + rows)
        return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)


@dataclass(frozen=True)
class Partition:
    """Which global positions one DataLoader worker of one rank yields, in yield order."""

    num_samples: int
    batch_size: int
    world_size: int = 1
    rank: int = 0
    start: int = 0
    num_workers: int = 1
    worker: int = 0

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.world_size < 1 or not 0 <= self.rank < self.world_size:
            raise ValueError(f"need 0 <= rank < world_size, got {self.rank}/{self.world_size}")
        if self.num_workers < 1 or not 0 <= self.worker < self.num_workers:
            raise ValueError(
                f"need 0 <= worker < num_workers, got {self.worker}/{self.num_workers}"
            )
        if not 0 <= self.start <= self.num_samples:
            raise ValueError(
                f"resume position {self.start} is outside the epoch's 0..{self.num_samples} samples"
            )

    @property
    def global_batch(self) -> int:
        return self.batch_size * self.world_size

    @property
    def global_steps(self) -> int:
        """Global steps left in the epoch: the same on every rank."""
        return -(-(self.num_samples - self.start) // self.global_batch)

    def rank_samples(self) -> int:
        """Samples this rank yields from ``start`` to the end of the epoch (all its workers)."""
        remaining = self.num_samples - self.start
        full, rem = divmod(remaining, self.global_batch)
        return full * self.batch_size + min(
            max(rem - self.rank * self.batch_size, 0), self.batch_size
        )

    def rank_batches(self) -> int:
        """Non-empty batches this rank yields (its last may be short)."""
        return -(-self.rank_samples() // self.batch_size)

    def positions_between(self, lo: int, hi: int) -> np.ndarray:
        """This worker's positions in ``[lo, hi)``, ascending (= yield order)."""
        b, big = self.batch_size, self.global_batch
        stride = big * self.num_workers
        base = self.start + self.rank * b + self.worker * big
        hi = min(hi, self.num_samples)
        lo = max(lo, base)
        if hi <= lo:
            return np.zeros(0, dtype=np.int64)
        # batch m covers [base + m*stride, base + m*stride + b): those overlapping [lo, hi)
        m_lo = max(0, (lo - b - base) // stride + 1)
        m_hi = -((base - hi) // stride)
        if m_hi <= m_lo:
            return np.zeros(0, dtype=np.int64)
        starts = base + np.arange(m_lo, m_hi, dtype=np.int64) * stride
        pos = (starts[:, None] + np.arange(b, dtype=np.int64)[None, :]).ravel()
        return pos[(pos >= lo) & (pos < hi)]

    def positions(self) -> np.ndarray:
        """All of this worker's positions for the epoch (for tests and small datasets)."""
        return self.positions_between(0, self.num_samples)


def rank_positions(partitions: Sequence[Partition]) -> np.ndarray:
    """Merge the workers of one rank back into the rank's order (DataLoader's round-robin)."""
    if not partitions:
        return np.zeros(0, dtype=np.int64)
    b = partitions[0].batch_size
    per_worker = [
        np.array_split(p.positions(), range(b, len(p.positions()), b)) for p in partitions
    ]
    out: list[np.ndarray] = []
    for i in range(max(len(w) for w in per_worker)):
        for batches in per_worker:
            if i < len(batches) and len(batches[i]):
                out.append(batches[i])
    return np.concatenate(out) if out else np.zeros(0, dtype=np.int64)
