"""``tailguard data check``, ``ingest --check``, the ``data.checks`` training preflight and
the check summary in an artifact's lineage."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from tailguard.cli import app
from tailguard.train.export import data_checks
from tailguard.train.job import JobError, parse_job
from tailguard.train.preflight import check_job_data
from tests.unit.test_data_checks import make, write


def _datasets(tmp_path: Path, leak: bool) -> tuple[str, str]:
    train_cols = make(1200, 0)
    test_cols = make(300, 1, start=5000)
    if leak:
        for k in test_cols:
            test_cols[k][3] = train_cols[k][42]
    return write(tmp_path, "train", train_cols), write(tmp_path, "test", test_cols)


def test_check_command_exit_json_html(tmp_path: Path) -> None:
    train, test = _datasets(tmp_path, leak=True)
    runner = CliRunner()
    html = tmp_path / "r.html"
    result = runner.invoke(app, ["data", "check", train, "--against", test, "--json",
                                 "--html", str(html)])
    assert result.exit_code == 1, result.output
    doc = json.loads(result.stdout)
    leak = [f for f in doc["findings"] if f["rule"] == "leakage"]
    assert leak and leak[0]["examples"][0]["row"] == 42 and leak[0]["examples"][1]["row"] == 3
    assert doc["summary"]["failed_rules"] == ["leakage"]
    page = html.read_text()
    assert "data:image/png;base64," in page and "leakage" in page
    assert (Path(train) / "checks" / "report.html").is_file()

    rules = tmp_path / "rules.yaml"
    rules.write_text("leakage: {severity: warn}\n")
    table = runner.invoke(app, ["data", "check", train, "--against", test, "--rules",
                                str(rules)])
    assert table.exit_code == 0, table.output
    assert "leakage" in table.output and "passed" in table.output

    bad = tmp_path / "bad.yaml"
    bad.write_text("leakage: {severity: maybe}\n")
    refused = runner.invoke(app, ["data", "check", train, "--rules", str(bad)])
    assert refused.exit_code == 1 and "leakage.severity" in refused.output


def test_ingest_check_leaves_no_dataset_when_it_fails(tmp_path: Path) -> None:
    src = tmp_path / "a.csv"
    src.write_text("id,email\n" + "".join(f"{i},u{i}@example.com\n" for i in range(50)))
    out = tmp_path / "ds"
    runner = CliRunner()
    failed = runner.invoke(app, ["data", "ingest", str(src), "--out", str(out), "--check"])
    assert failed.exit_code == 1
    assert "pii" in failed.output and "'email'" in failed.output and not out.exists()
    schema = '{"id": "int64", "email": {"type": "string", "pii": "drop"}}'
    ok = runner.invoke(app, ["data", "ingest", str(src), "--out", str(out), "--check",
                             "--schema", schema])
    assert ok.exit_code == 0, ok.output
    assert (out / "checks" / "report.json").is_file()
    shown = runner.invoke(app, ["data", "show", str(out), "--json"])
    assert json.loads(shown.stdout)["pii"] == {"email": "drop"}


def _job(train: str, test: str, checks: Any) -> Any:
    return parse_job({
        "name": "t", "model": {"builder": "mlp", "kwargs": {"in_features": 2, "out_features": 3}},
        "data": {"train": train, "eval": test, "features": ["x", "age"], "label": "label",
                 "checks": checks},
        "batch_size": 8, "max_steps": 1})


def test_preflight_stops_a_leaking_job_and_lineage_records_the_check(tmp_path: Path) -> None:
    train, test = _datasets(tmp_path, leak=True)
    with pytest.raises(JobError, match=r"(?s)leakage.*row 42.*against row 3.*no worker was started"
                       ) as caught:
        check_job_data(_job(train, test, True))
    assert "data.checks" in str(caught.value)
    assert check_job_data(_job(train, test, None))  # checks off: the index-only preflight
    check_job_data(_job(train, test, {"leakage": {"severity": "warn"}}))
    summary = data_checks(Path(train))
    assert summary is not None and summary["passed"] and summary["warnings"] >= 1
    index = json.loads((Path(train) / "index.json").read_text())
    assert summary["fingerprint"] == index["fingerprint"]
    index["fingerprint"] = "re-ingested"
    (Path(train) / "index.json").write_text(json.dumps(index))
    assert data_checks(Path(train)) is None  # a stale report is not this dataset's
