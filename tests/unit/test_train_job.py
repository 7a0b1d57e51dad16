"""Job spec validation: errors name the field and what to do."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tailguard.train.job import JobError, load_job, parse_job


def base(**over: Any) -> dict[str, Any]:
    job: dict[str, Any] = {
        "name": "t", "model": {"builder": "mlp", "kwargs": {"in_features": 4, "out_features": 2}},
        "data": {"train": "d/train", "eval": "d/test", "features": ["x*"], "label": "y"},
        "batch_size": 8, "max_steps": 10,
    }
    job.update(over)
    return job


def test_valid_job_resolves_relative_paths(tmp_path: Path) -> None:
    job = parse_job(base(), base_dir=tmp_path)
    assert job.data.train == tmp_path / "d/train"
    assert job.global_batch_size == 8 and job.floor_world_size == 1


@pytest.mark.parametrize("over, message", [
    ({"epochs": 2}, "exactly one of 'epochs' or 'max_steps'"),
    ({"world_size": 2, "min_world_size": 3}, "min_world_size"),
    ({"objective": {"loss": "mse", "metric": "accuracy"}}, "needs loss 'cross_entropy'"),
    ({"parallel": "zero"}, "parallel"),
    ({"batch_size": 0}, "batch_size"),
    ({"unknown_field": 1}, "unknown_field"),
])
def test_invalid_jobs_say_why(over: dict[str, Any], message: str) -> None:
    with pytest.raises(JobError, match=message):
        parse_job(base(**over))


def test_target_needs_eval_data() -> None:
    data = base()["data"] | {"eval": None}
    with pytest.raises(JobError, match=r"set 'data\.eval'"):
        parse_job(base(data=data, target={"metric": "accuracy", "value": 0.9}))


def test_config_hash_ignores_operational_fields() -> None:
    a = parse_job(base())
    assert a.config_hash() == parse_job(base(max_restarts=9, heartbeat_timeout_s=3)).config_hash()
    assert a.config_hash() != parse_job(base(seed=1)).config_hash()


def test_load_job_reports_missing_and_malformed_files(tmp_path: Path) -> None:
    with pytest.raises(JobError, match="not found"):
        load_job(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("- a list\n")
    with pytest.raises(JobError, match="mapping"):
        load_job(bad)
