"""A bad dataset fails ``tailguard train`` with exit 2 and a clear message before any worker
starts: the engine's preflight reads only ``index.json``."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from tailguard.cli import app
from tailguard.data import ingest
from tailguard.train import JobError, parse_job
from tailguard.train.preflight import check_job_data


def _dataset(root: Path, name: str, header: str, rows: list[str],
             schema: dict[str, str]) -> Path:
    src = root / f"{name}.csv"
    src.write_text("\n".join([header, *rows]) + "\n")
    ingest([str(src)], root / name, schema=schema)
    return root / name


@pytest.fixture
def datasets(tmp_path: Path) -> dict[str, Path]:
    good = {"x1": "float32", "x2": "float32", "text": "string", "label": "int64"}
    rows = ["0.1,0.2,hello,0", "0.3,0.4,world,1"]
    return {
        "good": _dataset(tmp_path, "good", "x1,x2,text,label", rows, good),
        "float_label": _dataset(tmp_path, "float_label", "x1,x2,text,label", rows,
                                {**good, "label": "float32"}),
        "empty": _dataset(tmp_path, "empty", "x1,x2,text,label", [], good),
    }


def _job(train: Path, eval_: Path | None = None, **data: Any) -> dict[str, Any]:
    return {
        "name": "pf", "batch_size": 2, "max_steps": 2,
        "model": {"builder": "mlp", "kwargs": {"in_features": 2, "out_features": 2}},
        "data": {"train": str(train), "features": ["x*"], "label": "label",
                 **({"eval": str(eval_)} if eval_ is not None else {}), **data},
    }


def test_good_dataset_passes(datasets: dict[str, Path]) -> None:
    facts = check_job_data(parse_job(_job(datasets["good"], datasets["good"])))
    assert [(f.role, f.rows, f.features) for f in facts] == [
        ("train", 2, ("x1", "x2")), ("eval", 2, ("x1", "x2"))]


@pytest.mark.parametrize(("case", "data", "message"), [
    ("good", {"features": ["pixels"]},
     r"'pixels' matches none of .*its columns are: x1 \(float32\), x2 \(float32\), text"),
    ("good", {"label": "target"}, r"label column 'target' not found; its columns are: x1"),
    ("good", {"features": ["text"]}, r"'text' is a string but model 'mlp' needs numbers"),
    ("good", {"features": ["x1", "text"]}, r"each must be a number; these are not: text"),
    ("float_label", {}, r"label column 'label' is float32, but loss 'cross_entropy' needs "
                        r"integer class ids"),
    ("empty", {}, r"data.train \(.*empty\): the dataset has 0 rows"),
])
def test_bad_train_dataset(datasets: dict[str, Path], case: str, data: dict[str, Any],
                           message: str) -> None:
    with pytest.raises(JobError, match=message):
        check_job_data(parse_job(_job(datasets[case], **data)))


def test_missing_or_bad_eval_dataset(datasets: dict[str, Path], tmp_path: Path) -> None:
    with pytest.raises(JobError, match=r"data.eval: .*nowhere: no index.json"):
        check_job_data(parse_job(_job(datasets["good"], tmp_path / "nowhere")))
    with pytest.raises(JobError, match=r"data.eval \(.*empty\): the dataset has 0 rows"):
        check_job_data(parse_job(_job(datasets["good"], datasets["empty"])))


@pytest.mark.parametrize(("case", "data", "message"), [
    ("good", {"label": "target"}, "label column 'target' not found"),
    ("float_label", {}, "needs integer class ids"),
    ("empty", {}, "the dataset has 0 rows"),
    ("missing", {}, "not a dataset directory"),
])
def test_cli_exits_2_before_any_worker(datasets: dict[str, Path], tmp_path: Path,
                                       monkeypatch: pytest.MonkeyPatch, case: str,
                                       data: dict[str, Any], message: str) -> None:
    home = tmp_path / "home"
    monkeypatch.setenv("TAILGUARD_HOME", str(home))
    job_file = tmp_path / "job.yaml"
    train = datasets.get(case, tmp_path / case)
    job_file.write_text(yaml.safe_dump(_job(train, datasets["good"], **data)))
    started = time.perf_counter()
    result = CliRunner().invoke(app, ["train", str(job_file)])
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert not (home / "runs").exists()  # no run directory: no worker was ever spawned
    assert time.perf_counter() - started < 5.0
