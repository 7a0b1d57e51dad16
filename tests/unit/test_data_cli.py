"""``tailguard data ingest|show`` through the real root app."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from tailguard.cli import app


def test_ingest_show_noop_and_failure(tmp_path: Path) -> None:
    src = tmp_path / "a.csv"
    src.write_text("id,label\n1,0\n2,1\n3,oops\n4,1\n")
    out = tmp_path / "ds"
    runner = CliRunner()

    failed = runner.invoke(
        app,
        [
            "data",
            "ingest",
            str(src),
            "--out",
            str(out),
            "--schema",
            '{"id": "int64", "label": "int64"}',
        ],
    )
    assert failed.exit_code == 1
    assert "a.csv:4" in failed.output and "'oops' is not an integer" in failed.output
    assert not out.exists()

    ok = runner.invoke(
        app,
        [
            "data",
            "ingest",
            str(src),
            "--out",
            str(out),
            "--shard-rows",
            "2",
            "--schema",
            '{"id": "int64", "label": "int64"}',
            "--max-bad-rows",
            "1",
        ],
    )
    assert ok.exit_code == 0, ok.output
    assert "3 rows in 2 shard(s), 1 bad row(s) skipped" in ok.output
    assert "skipped bad row:" in ok.output and "a.csv:4" in ok.output

    again = runner.invoke(
        app,
        [
            "data",
            "ingest",
            str(src),
            "--out",
            str(out),
            "--shard-rows",
            "2",
            "--schema",
            '{"id": "int64", "label": "int64"}',
            "--max-bad-rows",
            "1",
        ],
    )
    assert again.exit_code == 0 and "up to date" in again.output and "nothing to do" in again.output

    shown = runner.invoke(app, ["data", "show", str(out)])
    assert shown.exit_code == 0
    assert "rows        3" in shown.output and "shards      2" in shown.output
    assert "id: int64" in shown.output and "label: int64" in shown.output

    as_json = runner.invoke(app, ["data", "show", str(out), "--json", "--verify"])
    doc = json.loads(as_json.output)
    assert doc["rows"] == 3 and doc["rows_per_shard"] == [2, 1] and len(doc["fingerprint"]) == 64

    (out / "shard-00001.parquet").write_bytes(b"garbage")
    bad = runner.invoke(app, ["data", "show", str(out), "--verify"])
    assert bad.exit_code == 1 and "shard-00001.parquet fails its sha256" in bad.output

    missing = runner.invoke(app, ["data", "show", str(tmp_path / "nowhere")])
    assert missing.exit_code == 1 and "not a dataset directory" in missing.output
