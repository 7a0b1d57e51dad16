"""``StreamingDataset``: a resumable, exactly-once ``IterableDataset`` over a dataset directory.

Quick start::

    ds = StreamingDataset("data/events", batch_size=32, seed=0)  # rank, world: torch.distributed
    loader = DataLoader(ds, batch_size=32, num_workers=2)
    for epoch in range(start_epoch, epochs):
        ds.set_epoch(epoch)
        for step, batch in enumerate(loader):
            ...
            ckpt["data"] = ds.state_dict(ds.consumed_after(step + 1))  # global position

    # after a restart, possibly with another world size:
    ds.load_state_dict(ckpt["data"])     # then set_epoch(ckpt["data"]["epoch"]) and iterate

The order of an epoch and how it is split across ranks and DataLoader workers is defined in
:mod:`tailguard.data.order`. In short: every sample exactly once per epoch across all ranks and
workers, in an order fixed by ``(seed, epoch)``; the concatenation over global steps of
(rank 0's batch, rank 1's batch, …) is that order, so resuming with another world size
continues it exactly.

**The end of an epoch.** When fewer than ``batch_size * world_size`` samples remain, rank ``r``
gets the ``r``-th slice of ``batch_size`` of what is left: short, or empty for high ranks. A
rank with an empty final slice yields nothing for that step, so ranks can see one batch
fewer than rank 0. ``ds.global_steps`` is the same on every rank; ``len(ds)`` (samples) and
``ds.num_batches`` are this rank's. A DDP trainer must make the step collective on every rank
anyway: run ``global_steps`` steps and, on a rank with no batch left, join with a zero-weight
step (e.g. ``torch.distributed.algorithms.Join`` or a loss multiplied by 0 on a dummy batch),
and weight each rank's loss by ``its batch size / global batch size`` so short batches average
correctly. Trainers that prefer equal batches can stop after ``len(ds) // batch_size`` batches
(drop_last semantics) and count the dropped tail as consumed.

**Memory.** Shards are read lazily with pyarrow, only the ones holding this worker's samples,
and only the selected ``columns``. Per DataLoader worker at most ``prefetch_shards + 1`` decoded
shards are held (an LRU; one thread decodes the next ``prefetch_shards`` ahead), plus the
worker's share of the current shuffle window: at most ``SHUFFLE_WINDOW_SHARDS`` shards' rows
divided by ``world_size * num_workers`` (rounded up to whole batches). The whole dataset is
never loaded, and the epoch's permutation is never materialised: one window's at a time.

**Reads.** A global batch draws from the whole current window, so every DataLoader worker of
every rank reads (and decodes) each shard of the windows it has samples in: an epoch reads
the selected columns up to ``world_size * num_workers`` times in total. That is the price of an
order that does not depend on the cluster's shape; select ``columns`` to keep it small.

**DataLoader.** Pass ``batch_size=ds.batch_size`` to the DataLoader (the worker interleaving
is defined per batch) and leave ``drop_last=False``; ``len(loader)`` is then ``ds.num_batches``.

**Integrity.** Each shard's sha256 is checked against ``index.json`` the first time a process
opens it; a mismatch raises :class:`~tailguard.data.index.ShardIntegrityError` naming the shard.

**Persistent workers.** ``set_epoch``/``load_state_dict`` act on the dataset object that
DataLoader copies into its workers when an iteration starts; with ``persistent_workers=True``
the copies never see a later epoch. Keep the default ``persistent_workers=False``.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.utils.data import IterableDataset, get_worker_info

from tailguard.data.index import DatasetIndex, read_index
from tailguard.data.order import SHUFFLE_WINDOW_SHARDS, EpochOrder, Partition
from tailguard.data.schema import DataError
from tailguard.data.shards import Decoded, ShardCache, ShardReader

STATE_VERSION = 1


@dataclass(frozen=True)
class _WindowPlan:
    """The rows one worker takes from one shuffle window, in yield order."""

    shards: tuple[int, ...]  # distinct shards needed, in read order
    shard_of: np.ndarray  # per yielded sample: its shard id
    row_of: np.ndarray  # per yielded sample: its row within that shard


def _resolve_world(rank: int | None, world_size: int | None) -> tuple[int, int]:
    dist = torch.distributed
    if dist.is_available() and dist.is_initialized():
        rank = dist.get_rank() if rank is None else rank
        world_size = dist.get_world_size() if world_size is None else world_size
    return (0 if rank is None else rank), (1 if world_size is None else world_size)


class StreamingDataset(IterableDataset[dict[str, Any]]):
    """Samples (``dict`` column -> numpy scalar, or ``str``) of a directory made by ``ingest``.

    ``path`` is a local directory or fsspec URL. ``rank``/``world_size`` default to
    torch.distributed's when it is initialised, else 0/1. See the module docs for the order,
    the end-of-epoch rule, memory bounds and the checkpoint protocol.
    """

    def __init__(
        self,
        path: str | Any,
        *,
        batch_size: int,
        seed: int = 0,
        shuffle: bool = True,
        rank: int | None = None,
        world_size: int | None = None,
        columns: list[str] | None = None,
        prefetch_shards: int = 2,
    ) -> None:
        super().__init__()
        self.path = str(path)
        self.index: DatasetIndex = read_index(self.path)
        self.batch_size = int(batch_size)
        self.seed = int(seed)
        self.shuffle = bool(shuffle)
        self.rank, self.world_size = _resolve_world(rank, world_size)
        names = self.index.schema.names
        self.columns = list(columns) if columns is not None else names
        unknown = [c for c in self.columns if c not in names]
        if unknown or not self.columns:
            raise DataError(f"columns {unknown or self.columns} not in the dataset's {names}")
        if prefetch_shards < 0:
            raise DataError(f"prefetch_shards must be >= 0, got {prefetch_shards}")
        if self.seed < 0:
            raise DataError(f"seed must be >= 0, got {self.seed}")
        self.prefetch_shards = int(prefetch_shards)
        self._reader = ShardReader(self.path, self.index, self.columns)
        # A dataset of at most prefetch_shards + 1 shards fits in the cache's own bound: keep
        # its decoded shards across iterations (epochs) instead of re-reading them each time.
        self._kept: dict[int, Decoded] | None = (
            {} if len(self.index.shards) <= self.prefetch_shards + 1 else None)
        self._epoch = 0
        self._resume: tuple[int, int] | None = None  # (epoch, consumed) from load_state_dict
        self._partition(0, 1)  # validates batch_size / rank / world_size now

    # --- position -----------------------------------------------------------------------------

    @property
    def num_samples(self) -> int:
        """Samples in the dataset (one epoch across all ranks)."""
        return self.index.total_rows

    @property
    def epoch(self) -> int:
        return self._epoch

    @property
    def start(self) -> int:
        """Global position this epoch's iteration starts from (non-zero after a resume)."""
        if self._resume is not None and self._resume[0] == self._epoch:
            return self._resume[1]
        return 0

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch to iterate. Keeps a resume position loaded for this same epoch."""
        if epoch < 0:
            raise DataError(f"epoch must be >= 0, got {epoch}")
        self._epoch = int(epoch)

    def _partition(self, worker: int, num_workers: int) -> Partition:
        return Partition(
            self.num_samples,
            self.batch_size,
            self.world_size,
            self.rank,
            self.start,
            num_workers,
            worker,
        )

    def __len__(self) -> int:
        """Samples this rank yields in the current epoch from its start position."""
        return self._partition(0, 1).rank_samples()

    @property
    def num_batches(self) -> int:
        """Batches (the last possibly short) this rank yields in the current epoch."""
        return self._partition(0, 1).rank_batches()

    @property
    def global_steps(self) -> int:
        """Global steps left in the current epoch: identical on every rank."""
        return self._partition(0, 1).global_steps

    def consumed_after(self, steps: int) -> int:
        """The global position after ``steps`` global steps of this epoch: what to checkpoint."""
        return min(self.start + steps * self.batch_size * self.world_size, self.num_samples)

    # --- checkpoint ---------------------------------------------------------------------------

    def state_dict(self, consumed: int) -> dict[str, Any]:
        """What to checkpoint, given the GLOBAL number of samples consumed in this epoch."""
        if not 0 <= consumed <= self.num_samples:
            raise DataError(f"consumed must be in 0..{self.num_samples}, got {consumed}")
        return {
            "version": STATE_VERSION,
            "epoch": self._epoch,
            "consumed": int(consumed),
            "seed": self.seed,
            "shuffle": self.shuffle,
            "num_samples": self.num_samples,
            "fingerprint": self.index.fingerprint,
            "window_shards": SHUFFLE_WINDOW_SHARDS,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Resume at ``state["consumed"]`` global samples into ``state["epoch"]``.

        Any world size and worker count may be used from here on. Refuses a state taken with
        another seed, shuffle setting or dataset, since its position would mean other samples.
        """
        try:
            epoch, consumed = int(state["epoch"]), int(state["consumed"])
        except (KeyError, TypeError, ValueError) as exc:
            raise DataError(f"data state needs integer 'epoch' and 'consumed': {state!r}") from exc
        expected = self.state_dict(0)
        for key in ("version", "seed", "shuffle", "num_samples", "fingerprint", "window_shards"):
            if key in state and state[key] != expected[key]:
                raise DataError(
                    f"data state has {key}={state[key]!r} but this dataset has "
                    f"{expected[key]!r}: the saved position does not apply"
                )
        if epoch < 0 or not 0 <= consumed <= self.num_samples:
            raise DataError(f"data state position out of range: epoch {epoch}, consumed {consumed}")
        self._epoch = epoch
        self._resume = (epoch, consumed)

    # --- iteration ----------------------------------------------------------------------------

    def __iter__(self) -> Iterator[dict[str, Any]]:
        info = get_worker_info()
        if info is None:
            return self.iter_worker(0, 1)
        return self.iter_worker(info.id, info.num_workers)

    def iter_worker(self, worker: int, num_workers: int) -> Iterator[dict[str, Any]]:
        """The samples DataLoader worker ``worker`` of ``num_workers`` yields, in order."""
        part = self._partition(worker, num_workers)
        order = EpochOrder(tuple(self.index.shard_rows), self.seed, self._epoch, self.shuffle)
        return self._iterate(order, part)

    def _plans(self, order: EpochOrder, part: Partition) -> Iterator[_WindowPlan]:
        starts = order.window_starts
        first = int(np.searchsorted(starts, part.start, side="right")) - 1
        for k in range(max(first, 0), len(order.windows)):
            pos = part.positions_between(int(starts[k]), int(starts[k + 1]))
            if len(pos) == 0:
                continue
            shard_of, row_of = order.locate(k, pos)
            needed = set(shard_of.tolist())
            yield _WindowPlan(tuple(s for s in order.windows[k] if s in needed), shard_of, row_of)

    def _decode(self, shard: int) -> Decoded:
        kept = self._kept
        if kept is None:
            return self._reader.decode(shard)
        decoded = kept.get(shard)
        if decoded is None:
            decoded = kept[shard] = self._reader.decode(shard)  # dict ops are atomic
        return decoded

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_kept"] = {} if self._kept is not None else None  # copies decode their own
        return state

    def iter_columns(self, worker: int = 0, num_workers: int = 1) -> Iterator[Decoded]:
        """The same samples as :meth:`iter_worker`, in the same order, as column chunks
        (``dict`` column -> array, one chunk per shuffle window): for trainers that slice
        whole batches instead of building one ``dict`` per sample."""
        part = self._partition(worker, num_workers)
        order = EpochOrder(tuple(self.index.shard_rows), self.seed, self._epoch, self.shuffle)
        return self._iterate_columns(order, part)

    def _iterate(self, order: EpochOrder, part: Partition) -> Iterator[dict[str, Any]]:
        names = self.columns
        chunks = self._iterate_columns(order, part)
        try:
            for columns in chunks:
                arrays = [columns[c] for c in names]
                for i in range(len(arrays[0])):
                    yield {name: arr[i] for name, arr in zip(names, arrays, strict=True)}
        finally:
            chunks.close()  # stop the prefetch thread now, not when collected

    def _iterate_columns(self, order: EpochOrder, part: Partition) -> Generator[Decoded]:
        cache = ShardCache(self._decode, self.prefetch_shards)
        plans = self._plans(order, part)
        ahead: deque[_WindowPlan] = deque()
        try:
            while True:
                plan = ahead.popleft() if ahead else next(plans, None)
                if plan is None:
                    return
                if len(plan.shards) == 1:  # the common window: one gather, already in order
                    decoded = cache.get(plan.shards[0])
                    cache.prefetch(self._upcoming(plans, ahead, []))
                    yield {c: np.take(decoded[c], plan.row_of, axis=0) for c in self.columns}
                    continue
                parts: list[tuple[np.ndarray, Decoded]] = []
                for i, shard in enumerate(plan.shards):
                    upcoming = self._upcoming(plans, ahead, list(plan.shards[i + 1 :]))
                    decoded = cache.get(shard)
                    cache.prefetch(upcoming)
                    where = np.flatnonzero(plan.shard_of == shard)
                    rows = plan.row_of[where]
                    parts.append((where, {c: np.take(decoded[c], rows, axis=0)
                                          for c in self.columns}))
                yield self._window_columns(parts, len(plan.shard_of))
        finally:
            cache.close()

    def _upcoming(self, plans: Iterator[_WindowPlan], ahead: deque[_WindowPlan],
                  upcoming: list[int]) -> list[int]:
        """``upcoming`` then the shards of the windows planned ahead, planning further windows
        (into ``ahead``) until ``prefetch_shards`` shards are known or the epoch ends."""
        upcoming.extend(s for p in ahead for s in p.shards)
        while len(upcoming) < self.prefetch_shards:
            nxt = next(plans, None)
            if nxt is None:
                break
            ahead.append(nxt)
            upcoming.extend(nxt.shards)
        return upcoming

    def _window_columns(self, parts: list[tuple[np.ndarray, Decoded]], n: int) -> Decoded:
        """Rows gathered shard by shard (``where``: their window positions) back in window
        order: one ``take`` by the inverse positions (a gather; a scatter is slower)."""
        where = np.concatenate([w for w, _ in parts])
        inverse = np.empty(n, dtype=np.int64)
        inverse[where] = np.arange(n, dtype=np.int64)
        return {name: np.take(np.concatenate([d[name] for _, d in parts]), inverse, axis=0)
                for name in self.columns}
