"""Checkpoints: atomic layout, only complete ones are loaded, exact restore, pruning."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
import torch.distributed as dist

from tailguard.train.checkpoint import (
    COMPLETE,
    CheckpointError,
    CheckpointStore,
    TrainerState,
)
from tailguard.train.rng import RngState, seed_all


@pytest.fixture(scope="module", autouse=True)
def _single_process_group() -> Iterator[None]:
    dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
    yield
    dist.destroy_process_group()


def _trained(steps: int) -> tuple[torch.nn.Module, torch.optim.Optimizer]:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))
    opt = torch.optim.AdamW(model.parameters(), lr=0.01)
    for i in range(steps):
        torch.manual_seed(100 + i)
        model(torch.randn(5, 3)).pow(2).mean().backward()
        opt.step()
        opt.zero_grad()
    return model, opt


def test_save_load_restores_model_optimizer_and_counters(tmp_path: Path) -> None:
    model, opt = _trained(3)
    store = CheckpointStore(tmp_path)
    state = TrainerState(step=3, epoch=1, consumed=15, samples_seen=40, world_size=1)
    info = store.save(model, opt, state, rank=0)
    assert (info.path / COMPLETE).is_file()
    assert not info.path.with_name(info.path.name + ".tmp").exists()

    fresh, fresh_opt = _trained(0)
    loaded = store.load(info, fresh, fresh_opt)
    assert loaded == state
    for a, b in zip(model.state_dict().values(), fresh.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    # the optimiser continues identically: one more step on both gives equal weights
    for m, o in ((model, opt), (fresh, fresh_opt)):
        torch.manual_seed(7)
        m(torch.randn(5, 3)).pow(2).mean().backward()
        o.step()
    for a, b in zip(model.parameters(), fresh.parameters(), strict=True):
        assert torch.equal(a, b)


def test_rng_states_are_saved_per_rank_and_restored(tmp_path: Path) -> None:
    model, opt = _trained(1)
    store = CheckpointStore(tmp_path)
    seed_all(0, 3, 0)
    rng = RngState.capture()
    info = store.save(model, opt, TrainerState(step=3), rank=0, rng=rng)
    assert store.load_rng(info, 0) == rng
    assert store.load_rng(info, 1) is None  # no such rank in this checkpoint
    without = store.save(model, opt, TrainerState(step=4), rank=0)
    assert store.load_rng(without, 0) is None


def test_incomplete_and_temporary_checkpoints_are_ignored(tmp_path: Path) -> None:
    model, opt = _trained(1)
    store = CheckpointStore(tmp_path, keep=5)
    store.save(model, opt, TrainerState(step=2), rank=0)
    (tmp_path / "step-00000004.tmp").mkdir()  # crash during DCP save
    (tmp_path / "step-00000006").mkdir()  # crash between rename and COMPLETE
    latest = store.latest()
    assert latest is not None and latest.step == 2


def test_prune_keeps_the_newest_complete(tmp_path: Path) -> None:
    model, opt = _trained(1)
    store = CheckpointStore(tmp_path, keep=2)
    for step in (2, 4, 6):
        store.save(model, opt, TrainerState(step=step), rank=0)
    assert [c.step for c in store.complete()] == [4, 6]


def test_resaving_a_step_replaces_a_half_written_one(tmp_path: Path) -> None:
    model, opt = _trained(1)
    store = CheckpointStore(tmp_path)
    (tmp_path / "step-00000002.tmp").mkdir(parents=True)
    (tmp_path / "step-00000002.tmp" / "junk").write_text("x")
    info = store.save(model, opt, TrainerState(step=2), rank=0)
    assert not (info.path / "junk").exists() and (info.path / COMPLETE).is_file()


def test_state_from_another_version_is_refused(tmp_path: Path) -> None:
    model, opt = _trained(1)
    store = CheckpointStore(tmp_path)
    info = store.save(model, opt, TrainerState(step=1), rank=0)
    path = info.path / "trainer.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), "version": 99}))
    with pytest.raises(CheckpointError, match="version"):
        store.load(info, model, opt)
