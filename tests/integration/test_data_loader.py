"""StreamingDataset under a real torch DataLoader with worker processes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch.distributed as dist
from torch.utils.data import DataLoader

from tailguard.data import EpochOrder, ShardIntegrityError, StreamingDataset, ingest, read_index


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("loader")
    n = 103
    ids = np.arange(n, dtype=np.int64)
    pq.write_table(
        pa.table({"id": ids, "name": [f"s{i}" for i in ids], "x": ids.astype(np.float32)}),
        root / "src.parquet",
    )
    ingest([str(root / "src.parquet")], root / "ds", shard_rows=10)
    return root / "ds"


def loader_batches(ds: StreamingDataset, workers: int) -> list[list[int]]:
    loader = DataLoader(ds, batch_size=ds.batch_size, num_workers=workers)
    batches = [batch["id"].tolist() for batch in loader]
    assert len(batches) == len(loader) == ds.num_batches
    return batches


def cluster_order(path: Path, *, batch: int, world: int, workers: int, consumed: int) -> list[int]:
    per_rank = []
    for rank in range(world):
        ds = StreamingDataset(path, batch_size=batch, seed=11, rank=rank, world_size=world)
        ds.load_state_dict({"epoch": 2, "consumed": consumed})
        ds.set_epoch(2)
        per_rank.append(loader_batches(ds, workers))
    steps = max(len(b) for b in per_rank)
    return [i for s in range(steps) for b in per_rank if s < len(b) for i in b[s]]


def test_two_workers_reproduce_the_exact_order(dataset: Path) -> None:
    expected = EpochOrder(tuple(read_index(str(dataset)).shard_rows), 11, 2, True).global_order()
    with_workers = cluster_order(dataset, batch=4, world=2, workers=2, consumed=0)
    in_process = cluster_order(dataset, batch=4, world=2, workers=0, consumed=0)
    assert with_workers == in_process == expected.tolist()
    # resume mid-epoch on three ranks instead of two: the same order continues
    assert (
        cluster_order(dataset, batch=3, world=3, workers=2, consumed=37) == expected[37:].tolist()
    )


def test_batches_collate_columns(dataset: Path) -> None:
    ds = StreamingDataset(dataset, batch_size=8, shuffle=False, columns=["id", "name", "x"])
    batch = next(iter(DataLoader(ds, batch_size=8, num_workers=2)))
    assert batch["id"].tolist() == list(range(8))
    assert batch["name"] == [f"s{i}" for i in range(8)]
    assert batch["x"].dtype.is_floating_point and batch["x"].tolist() == [
        float(i) for i in range(8)
    ]


def test_integrity_error_crosses_the_worker_boundary(dataset: Path, tmp_path: Path) -> None:
    copy = tmp_path / "ds"
    copy.mkdir()
    for f in dataset.iterdir():
        (copy / f.name).write_bytes(f.read_bytes())
    (copy / "shard-00003.parquet").write_bytes(b"not a parquet file")
    ds = StreamingDataset(copy, batch_size=4)
    batches = iter(DataLoader(ds, batch_size=4, num_workers=2))
    with pytest.raises(ShardIntegrityError, match=r"shard-00003\.parquet"):
        list(batches)
    # Left to the garbage collector, the failed iterator's cleanup waits 5 s per live worker
    # in whatever test runs then: shut its workers down here.
    batches._shutdown_workers()  # type: ignore[attr-defined]


def test_rank_and_world_default_to_torch_distributed(
    dataset: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    plain = StreamingDataset(dataset, batch_size=2)
    assert (plain.rank, plain.world_size) == (0, 1)
    monkeypatch.setattr(dist, "is_initialized", lambda: True)
    monkeypatch.setattr(dist, "get_rank", lambda: 2)
    monkeypatch.setattr(dist, "get_world_size", lambda: 3)
    ds = StreamingDataset(dataset, batch_size=2)
    assert (ds.rank, ds.world_size) == (2, 3)
    assert len(ds) == len(StreamingDataset(dataset, batch_size=2, rank=2, world_size=3))
    explicit = StreamingDataset(dataset, batch_size=2, rank=0, world_size=1)
    assert (explicit.rank, explicit.world_size) == (0, 1)
