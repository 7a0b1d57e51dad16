"""StreamingDataset over real shards: exactly-once, world-size-independent order, exact resume.

DataLoader workers are simulated here by calling ``iter_worker(j, k)`` and merging the
workers' batches round-robin, which is what DataLoader does; the integration tests check that
claim against a real ``DataLoader(num_workers=2)``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.utils.data import default_collate

from tailguard.data import (
    DataError,
    EpochOrder,
    ShardIntegrityError,
    StreamingDataset,
    ingest,
    read_index,
)
from tailguard.data.shards import ShardCache


def make_dataset(root: Path, n: int, shard_rows: int) -> Path:
    """A dataset whose row ``i`` is ``{"id": i, "name": f"s{i}", "x": i / 2}`` (cached per args)."""
    out = root / f"ds-{n}-{shard_rows}"
    if not (out / "index.json").exists():
        src = root / f"src-{n}.parquet"
        if not src.exists():
            ids = np.arange(n, dtype=np.int64)
            table = pa.table({"id": ids, "name": [f"s{i}" for i in ids], "x": ids / 2})
            pq.write_table(table, src)
        ingest([str(src)], out, shard_rows=shard_rows)
    return out


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("datasets")


def rank_stream(ds: StreamingDataset, workers: int) -> list[list[int]]:
    """The rank's batches of ids as DataLoader(num_workers=workers) would yield them."""
    per_worker = []
    for j in range(max(workers, 1)):
        ids = [int(s["id"]) for s in ds.iter_worker(j, max(workers, 1))]
        per_worker.append([ids[i : i + ds.batch_size] for i in range(0, len(ids), ds.batch_size)])
    out = []
    for i in range(max((len(w) for w in per_worker), default=0)):
        out.extend(w[i] for w in per_worker if i < len(w))
    return out


def run_epoch(
    path: Path,
    *,
    batch: int,
    world: int,
    workers: int,
    seed: int,
    epoch: int,
    consumed: int = 0,
    shuffle: bool = True,
    prefetch: int = 2,
) -> list[int]:
    """Global order seen by a whole cluster: per step, rank 0's batch, rank 1's batch, …"""
    streams = []
    for r in range(world):
        ds = StreamingDataset(
            path,
            batch_size=batch,
            seed=seed,
            shuffle=shuffle,
            rank=r,
            world_size=world,
            prefetch_shards=prefetch,
        )
        ds.load_state_dict({"epoch": epoch, "consumed": consumed})
        ds.set_epoch(epoch)  # a trainer calls this after load_state_dict: must keep the position
        batches = rank_stream(ds, workers)
        assert sum(map(len, batches)) == len(ds)
        assert len(batches) == ds.num_batches <= ds.global_steps
        streams.append(batches)
    steps = max(len(s) for s in streams) if streams else 0
    return [i for s in range(steps) for b in streams for i in (b[s] if s < len(b) else [])]


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(0, 160),
    shard_rows=st.integers(1, 40),
    batch=st.integers(1, 9),
    world=st.integers(1, 4),
    workers=st.integers(0, 3),
    seed=st.integers(0, 1000),
    epoch=st.integers(0, 3),
    shuffle=st.booleans(),
)
def test_exactly_once_in_one_order_for_any_cluster_shape(
    root: Path,
    n: int,
    shard_rows: int,
    batch: int,
    world: int,
    workers: int,
    seed: int,
    epoch: int,
    shuffle: bool,
) -> None:
    path = make_dataset(root, n, shard_rows)
    got = run_epoch(
        path, batch=batch, world=world, workers=workers, seed=seed, epoch=epoch, shuffle=shuffle
    )
    assert sorted(got) == list(range(n))  # every sample exactly once
    single = run_epoch(path, batch=7, world=1, workers=0, seed=seed, epoch=epoch, shuffle=shuffle)
    assert got == single  # same global order whatever the world size, workers and batch size
    expected = EpochOrder(tuple(read_index(str(path)).shard_rows), seed, epoch, shuffle)
    assert got == expected.global_order().tolist()
    if not shuffle:
        assert got == list(range(n))


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(1, 160),
    shard_rows=st.integers(1, 40),
    batch=st.integers(1, 9),
    world_before=st.integers(1, 4),
    world_after=st.integers(1, 4),
    workers=st.integers(0, 3),
    prefetch=st.integers(0, 3),
    data=st.data(),
)
def test_resume_anywhere_continues_exactly_even_with_another_world_size(
    root: Path,
    n: int,
    shard_rows: int,
    batch: int,
    world_before: int,
    world_after: int,
    workers: int,
    prefetch: int,
    data: st.DataObject,
) -> None:
    path = make_dataset(root, n, shard_rows)
    full = run_epoch(path, batch=batch, world=world_before, workers=workers, seed=3, epoch=1)
    consumed = data.draw(st.integers(0, n), label="consumed")
    rest = run_epoch(
        path,
        batch=batch + 1,
        world=world_after,
        workers=workers,
        seed=3,
        epoch=1,
        consumed=consumed,
        prefetch=prefetch,
    )
    assert rest == full[consumed:]


def test_samples_hold_typed_values_and_collate(root: Path) -> None:
    path = make_dataset(root, 50, 8)
    ds = StreamingDataset(path, batch_size=4, seed=1)
    samples = list(ds)
    for s in samples:
        assert s["name"] == f"s{s['id']}" and s["x"] == s["id"] / 2
    assert isinstance(samples[0]["id"], np.int64) and isinstance(samples[0]["name"], str)
    batch = default_collate(samples[:4])
    assert batch["id"].tolist() == [int(s["id"]) for s in samples[:4]]
    assert batch["name"] == [s["name"] for s in samples[:4]]


def test_columns_selects_and_validates(root: Path) -> None:
    path = make_dataset(root, 20, 8)
    ds = StreamingDataset(path, batch_size=4, columns=["id"], shuffle=False)
    assert [set(s) for s in ds] == [{"id"}] * 20
    with pytest.raises(DataError, match="nope"):
        StreamingDataset(path, batch_size=4, columns=["nope"])


def test_epochs_differ_and_resume_applies_only_to_its_epoch(root: Path) -> None:
    path = make_dataset(root, 60, 10)
    ds = StreamingDataset(path, batch_size=5, seed=9)
    ds.set_epoch(0)
    e0 = [int(s["id"]) for s in ds]
    ds.set_epoch(1)
    e1 = [int(s["id"]) for s in ds]
    assert sorted(e0) == sorted(e1) == list(range(60)) and e0 != e1
    ds.load_state_dict(ds.state_dict(25) | {"epoch": 1})
    assert ds.epoch == 1 and ds.start == 25 and len(ds) == 35
    assert [int(s["id"]) for s in ds] == e1[25:]
    ds.set_epoch(2)
    assert ds.start == 0 and len(ds) == 60


def test_state_from_another_seed_or_dataset_is_refused(root: Path) -> None:
    ds = StreamingDataset(make_dataset(root, 30, 10), batch_size=2, seed=1)
    state = ds.state_dict(10)
    assert state["epoch"] == 0 and state["consumed"] == 10
    other = StreamingDataset(make_dataset(root, 30, 10), batch_size=2, seed=2)
    with pytest.raises(DataError, match="seed"):
        other.load_state_dict(state)
    bigger = StreamingDataset(make_dataset(root, 31, 10), batch_size=2, seed=1)
    with pytest.raises(DataError, match="num_samples"):
        bigger.load_state_dict(state)
    with pytest.raises(DataError, match="consumed"):
        ds.state_dict(31)
    with pytest.raises(DataError, match="'epoch' and 'consumed'"):
        ds.load_state_dict({"epoch": 0})


def test_tail_ranks_get_short_or_empty_final_batches(root: Path) -> None:
    path = make_dataset(root, 10, 4)
    lens = [len(StreamingDataset(path, batch_size=3, rank=r, world_size=3)) for r in range(3)]
    assert lens == [4, 3, 3]
    ds = StreamingDataset(path, batch_size=3, rank=2, world_size=3)
    assert ds.num_batches == 1 and ds.global_steps == 2


def test_tampered_shard_is_detected_on_first_open(root: Path, tmp_path: Path) -> None:
    src = make_dataset(root, 80, 10)
    path = tmp_path / "copy"
    path.mkdir()
    for f in src.iterdir():
        (path / f.name).write_bytes(f.read_bytes())
    ds = StreamingDataset(path, batch_size=4, shuffle=False)
    shard = path / "shard-00005.parquet"
    shard.write_bytes(shard.read_bytes()[:-1] + b"\0")
    it = iter(ds)
    # the first shuffle window (shards 0-3) is intact and streams before shard 5 is checked
    assert [int(next(it)["id"]) for _ in range(40)] == list(range(40))
    with pytest.raises(ShardIntegrityError, match=r"shard-00005\.parquet fails"):
        list(it)
    shard.unlink()
    with pytest.raises(ShardIntegrityError, match=r"shard-00005\.parquet is missing"):
        list(StreamingDataset(path, batch_size=4, shuffle=False))


def test_each_shard_is_decoded_once_per_epoch(root: Path) -> None:
    path = make_dataset(root, 200, 10)
    ds = StreamingDataset(path, batch_size=4, seed=5, prefetch_shards=2)
    calls: list[int] = []
    decode = ds._reader.decode

    def counting(shard: int) -> dict[str, np.ndarray]:
        calls.append(shard)
        return decode(shard)

    ds._reader.decode = counting  # type: ignore[method-assign]
    assert sorted(int(s["id"]) for s in ds) == list(range(200))
    assert sorted(calls) == list(range(20))


def test_shard_cache_is_bounded_and_prefetches() -> None:
    decoded: list[int] = []

    def decode(i: int) -> dict[str, np.ndarray]:
        decoded.append(i)
        return {"v": np.array([i])}

    cache = ShardCache(decode, prefetch=2)
    try:
        assert cache.get(0)["v"][0] == 0
        cache.prefetch([1, 2, 3])
        assert set(cache.cached()) == {0, 1, 2} and cache.capacity == 3
        assert cache.get(1)["v"][0] == 1
        cache.prefetch([2, 3])
        assert len(cache.cached()) <= 3 and 0 not in cache.cached()
        assert cache.get(2)["v"][0] == 2 and cache.get(3)["v"][0] == 3
        assert sorted(decoded) == [0, 1, 2, 3]  # prefetched shards were not decoded twice
    finally:
        cache.close()
    sync = ShardCache(decode, prefetch=0)
    sync.get(7)
    sync.get(8)
    assert sync.cached() == [8]
    sync.close()


def test_dataset_pickles_for_spawned_workers(root: Path) -> None:
    import pickle

    ds = StreamingDataset(make_dataset(root, 30, 7), batch_size=4, seed=4)
    ds.load_state_dict({"epoch": 1, "consumed": 9})
    copy = pickle.loads(pickle.dumps(ds))
    assert (copy.epoch, copy.start, len(copy)) == (1, 9, 21)
    assert [s["id"] for s in copy.iter_worker(1, 2)] == [s["id"] for s in ds.iter_worker(1, 2)]


def test_no_prefetch_thread_outlives_its_iterator(root: Path) -> None:
    import threading

    def prefetchers() -> list[threading.Thread]:
        return [t for t in threading.enumerate() if t.name.startswith("tailguard-prefetch")]

    ds = StreamingDataset(make_dataset(root, 200, 10), batch_size=4, prefetch_shards=2)
    it = iter(ds)
    next(it)
    assert prefetchers()  # decoding ahead in the background
    it.close()  # what a `break` out of a for loop does once the iterator is dropped
    assert prefetchers() == []  # joined, so a DataLoader fork right after is safe
