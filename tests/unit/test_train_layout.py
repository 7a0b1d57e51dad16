"""Parallel layouts: the spec, its checks against world_size, rank coordinates, model splits."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from tailguard.train.builtin_models import build_module
from tailguard.train.job import JobError, parse_job
from tailguard.train.layout import Coords, Layout, ParallelSpec
from tailguard.train.model_plans import PlanError, check_splittable, split_stage, stage_bounds

TRANSFORMER = {"builder": "transformer_classifier",
               "kwargs": {"in_features": 8, "out_features": 3, "dim": 8, "heads": 2, "layers": 2}}


def job(**over: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "name": "t", "model": TRANSFORMER,
        "data": {"train": "d/train", "features": ["x*"], "label": "y"},
        "batch_size": 8, "max_steps": 10,
    }
    data.update(over)
    return data


@pytest.mark.parametrize("shorthand, fsdp", [("ddp", False), ("fsdp", True)])
def test_shorthands_are_all_data_parallel(shorthand: str, fsdp: bool) -> None:
    parsed = parse_job(job(parallel=shorthand, world_size=3))
    assert parsed.parallel.fsdp is fsdp and parsed.parallel.describe() == shorthand
    assert parsed.layout == Layout(dp=3, tp=1, pp=1, fsdp=fsdp)
    assert parsed.global_batch_size == 24


def test_batch_size_is_per_replica() -> None:
    parsed = parse_job(job(parallel={"dp": 2, "tp": 2, "fsdp": True}, world_size=4))
    assert parsed.layout == Layout(dp=2, tp=2, pp=1, fsdp=True)
    assert parsed.global_batch_size == 16 and parsed.parallel.describe() == "dp2.tp2.fsdp"
    # dp left out: what world_size leaves after tp*pp
    assert parse_job(job(parallel={"pp": 2}, world_size=2)).layout.dp == 1


@pytest.mark.parametrize("over, message", [
    ({"parallel": {"dp": 1, "tp": 2}, "world_size": 4}, r"= 2 ranks, but world_size is 4: "
     r"set world_size: 2, or dp: 2"),
    ({"parallel": {"dp": 2, "tp": 2, "fsdp": True}, "world_size": 3},
     r"set world_size: 4, or dp: \(world_size must be a multiple of tp\*pp = 2\)"),
    ({"parallel": {"tp": 2}, "world_size": 3}, r"not a multiple of tp\*pp = 2"),
    ({"parallel": {"dp": 2, "tp": 2}, "world_size": 4}, "set fsdp: true"),
    ({"parallel": {"tp": 2, "microbatches": 2}, "world_size": 2}, "only applies with pp > 1"),
    ({"parallel": {"pp": 2, "microbatches": 3}, "world_size": 2},
     "multiple of parallel.microbatches"),
    ({"parallel": {"tp": 0}, "world_size": 1}, "tp"),
    ({"parallel": {"tp": 2}, "world_size": 2, "min_world_size": 1}, "elastic"),
    ({"parallel": "zero"}, "use 'ddp', 'fsdp' or a mapping"),
    ({"parallel": {"dp": 1, "tensor": 2}}, "tensor"),
])
def test_bad_layouts_say_what_to_change(over: dict[str, Any], message: str) -> None:
    with pytest.raises(JobError, match=message):
        parse_job(job(**over))


def test_rank_coordinates_put_tp_innermost() -> None:
    layout = Layout(dp=2, tp=2, pp=2)
    assert [layout.coords(r) for r in (0, 1, 2, 5, 7)] == [
        Coords(0, 0, 0), Coords(0, 0, 1), Coords(0, 1, 0), Coords(1, 0, 1), Coords(1, 1, 1)]
    assert [r for r in range(8) if layout.owns_loss(r)] == [4, 6]  # last stage, tp rank 0
    with pytest.raises(ValueError, match="outside"):
        layout.coords(8)


def test_stage_bounds_are_contiguous_and_even() -> None:
    assert stage_bounds(4, 2) == [(0, 2), (2, 4)]
    assert stage_bounds(5, 3) == [(0, 2), (2, 4), (4, 5)]
    with pytest.raises(PlanError, match="use pp <= 4"):
        stage_bounds(4, 5)


@pytest.mark.parametrize("spec, message", [
    ({"tp": 4}, "tp=4 does not divide the number of attention heads"),
    ({"pp": 5}, "use pp <= 4"),
])
def test_unsplittable_models_are_refused_before_workers_start(spec: dict[str, Any],
                                                              message: str) -> None:
    with pytest.raises(PlanError, match=message):
        check_splittable(TRANSFORMER["builder"], TRANSFORMER["kwargs"], ParallelSpec(**spec))
    with pytest.raises(PlanError, match="cannot be pipelined"):
        check_splittable("minilm_classifier", {"num_labels": 2}, ParallelSpec(pp=2))
    with pytest.raises(PlanError, match="no tensor-parallel plan"):
        check_splittable("torch.nn:Identity", {}, ParallelSpec(tp=2))


@pytest.mark.parametrize("model", [
    TRANSFORMER, {"builder": "mlp", "kwargs": {"in_features": 8, "hidden": [6, 4],
                                               "out_features": 3, "dropout": 0.1}}])
def test_pipeline_stages_keep_the_whole_models_parameter_names(model: dict[str, Any]) -> None:
    """Stages hold disjoint parts of the model under its own names (so a checkpoint written
    at one layout loads at another), and chained they compute the whole model's forward."""
    torch.manual_seed(0)
    whole = build_module(model["builder"], model["kwargs"]).eval()
    stages = []
    for i in range(2):
        torch.manual_seed(0)
        stages.append(split_stage(build_module(model["builder"], model["kwargs"]), i, 2).eval())
    keys = [set(s.state_dict()) for s in stages]
    assert keys[0] and keys[1] and not keys[0] & keys[1]
    assert keys[0] | keys[1] == set(whole.state_dict())
    x = torch.randn(5, 8)
    with torch.no_grad():
        torch.testing.assert_close(stages[1](stages[0](x)), whole(x), rtol=0, atol=0)
