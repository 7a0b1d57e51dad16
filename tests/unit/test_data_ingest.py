"""Ingest: formats, schema casts, bad-row reports, atomic failure, no-op re-runs, integrity."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tailguard.data import (
    INDEX_NAME,
    IngestError,
    SchemaError,
    ShardIntegrityError,
    StreamingDataset,
    TooManyBadRows,
    ingest,
    load_schema_option,
    parse_schema,
    read_index,
    verify_dataset,
)


def rows_of(path: Path) -> list[dict[str, object]]:
    index = read_index(str(path))
    tables = [pq.read_table(path / s.file) for s in index.shards]
    return pa.concat_tables(tables).to_pylist() if tables else []


def write_csv(path: Path, text: str) -> str:
    path.write_text(text)
    return str(path)


def leftovers(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if p.name.startswith("."))


def test_csv_jsonl_parquet_are_ingested_in_order_with_inferred_schema(tmp_path: Path) -> None:
    a = write_csv(tmp_path / "a.csv", "id,x,name,ok\n1,0.5,alpha,true\n2,1.5,beta,false\n")
    b = tmp_path / "b.jsonl"
    b.write_text(
        '{"id": 3, "x": 2, "name": "gamma", "ok": true}\n\n'
        '{"id": 4, "x": 3.5, "ok": false, "name": "d"}\n'
    )
    c = tmp_path / "c.parquet"
    pq.write_table(
        pa.table({"id": [5, 6], "x": [4.5, 5.5], "name": ["e", "f"], "ok": [True, True]}), c
    )
    out = tmp_path / "ds"
    result = ingest([a, str(b), str(c)], out, shard_rows=4)
    assert (result.rows, result.shards, result.bad_rows, result.skipped) == (6, 2, 0, False)
    assert dict(result.schema) == {"id": "int64", "x": "float64", "name": "string", "ok": "bool"}
    rows = rows_of(out)
    assert [r["id"] for r in rows] == [1, 2, 3, 4, 5, 6]
    assert rows[2] == {"id": 3, "x": 2.0, "name": "gamma", "ok": True}
    index = read_index(str(out))
    assert index.shard_rows == [4, 2] and index.total_rows == 6
    assert index.fingerprint == result.fingerprint and len(index.sources) == 3
    doc = json.loads((out / INDEX_NAME).read_text())
    assert doc["schema"] == dict(result.schema) and all(
        len(s["sha256"]) == 64 for s in doc["shards"]
    )
    assert leftovers(tmp_path) == []


def test_bad_rows_are_reported_with_file_and_line(tmp_path: Path) -> None:
    a = write_csv(
        tmp_path / "a.csv",
        'id,v\n1,10\n2,"two\nlines"\n3\n4,40,extra\n5,50\n',
    )
    b = tmp_path / "b.jsonl"
    b.write_text('{"id": 6, "v": 60}\n{not json\n[1, 2]\n{"id": 9}\n{"id": 10, "v": 1.5}\n')
    result = ingest(
        [a, str(b)], tmp_path / "ds", schema={"id": "int64", "v": "int64"}, max_bad_rows=10
    )
    assert result.rows == 3 and result.bad_rows == 7
    got = [(Path(r.source).name, r.line) for r in result.bad_row_samples]
    assert got == [
        ("a.csv", 3),  # "two\nlines" is not an int; the record starts on line 3
        ("a.csv", 5),  # too few fields
        ("a.csv", 6),  # too many fields
        ("b.jsonl", 2),  # unparseable JSON
        ("b.jsonl", 3),  # not an object
        ("b.jsonl", 4),  # missing required column
        ("b.jsonl", 5),  # 1.5 is not an int64
    ]
    reasons = [r.reason for r in result.bad_row_samples]
    assert "expected 2 fields, found 1" in reasons[1]
    assert "invalid JSON" in reasons[3] and "missing required column 'v'" in reasons[5]
    assert "not an integer" in reasons[6]
    assert [r["id"] for r in rows_of(tmp_path / "ds")] == [1, 5, 6]
    assert read_index(str(tmp_path / "ds")).bad_rows == 7


def test_too_many_bad_rows_fails_without_leaving_a_dataset(tmp_path: Path) -> None:
    a = write_csv(tmp_path / "a.csv", "id\n1\nx\n3\ny\n")
    out = tmp_path / "ds"
    with pytest.raises(TooManyBadRows) as err:
        ingest([a], out, schema={"id": "int64"}, max_bad_rows=1, shard_rows=1)
    assert "a.csv:3" in str(err.value) and "a.csv:5" in str(err.value)
    assert err.value.count == 2 and err.value.limit == 1
    assert not out.exists() and leftovers(tmp_path) == []


def test_failed_reingest_keeps_the_previous_dataset(tmp_path: Path) -> None:
    src = tmp_path / "a.csv"
    write_csv(src, "id\n1\n2\n")
    out = tmp_path / "ds"
    first = ingest([str(src)], out)
    write_csv(src, "id\n1\nbad\n")
    with pytest.raises(TooManyBadRows):
        ingest([str(src)], out, schema={"id": "int64"})
    assert read_index(str(out)).fingerprint == first.fingerprint
    assert [r["id"] for r in rows_of(out)] == [1, 2] and leftovers(tmp_path) == []


def test_rerun_is_a_noop_and_changes_reingest(tmp_path: Path) -> None:
    src = tmp_path / "a.jsonl"
    src.write_text("".join(json.dumps({"id": i}) + "\n" for i in range(10)))
    out = tmp_path / "ds"
    first = ingest([str(src)], out, shard_rows=3)
    stamp = (out / "shard-00000.parquet").stat().st_mtime_ns
    again = ingest([str(src)], out, shard_rows=3)
    assert again.skipped and again.fingerprint == first.fingerprint and again.rows == 10
    assert (out / "shard-00000.parquet").stat().st_mtime_ns == stamp
    other = ingest([str(src)], out, shard_rows=4)  # another option: another fingerprint
    assert not other.skipped and other.shards == 3 and other.fingerprint != first.fingerprint
    src.write_text("".join(json.dumps({"id": i}) + "\n" for i in range(11)))
    changed = ingest([str(src)], out, shard_rows=4)
    assert not changed.skipped and changed.rows == 11


def test_shards_are_deterministic(tmp_path: Path) -> None:
    src = write_csv(tmp_path / "a.csv", "k,v\n" + "".join(f"{i},{i * 3}\n" for i in range(50)))
    one = ingest([src], tmp_path / "one", shard_rows=16)
    two = ingest([src], tmp_path / "two", shard_rows=16)
    assert one.fingerprint == two.fingerprint
    assert [s.sha256 for s in read_index(str(tmp_path / "one")).shards] == [
        s.sha256 for s in read_index(str(tmp_path / "two")).shards
    ]


def test_tampered_shard_is_detected(tmp_path: Path) -> None:
    src = write_csv(tmp_path / "a.csv", "k\n" + "".join(f"{i}\n" for i in range(20)))
    out = tmp_path / "ds"
    ingest([src], out, shard_rows=5)
    verify_dataset(str(out))
    shard = out / "shard-00001.parquet"
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0xFF
    shard.write_bytes(bytes(data))
    with pytest.raises(ShardIntegrityError, match=r"shard-00001\.parquet fails its sha256"):
        verify_dataset(str(out))
    with pytest.raises(ShardIntegrityError, match=r"shard-00001\.parquet"):
        list(StreamingDataset(out, batch_size=2))
    # a damaged dataset is not mistaken for the finished ingest: missing shards re-ingest
    shard.unlink()
    assert not ingest([src], out, shard_rows=5).skipped


def test_schema_option_nullable_and_casts(tmp_path: Path) -> None:
    src = write_csv(tmp_path / "a.csv", "a,b,c,d\n1,,x,yes\n2,2.5,,0\n")
    schema = {"a": "int32", "b": "float32?", "c": "string", "d": "boolean"}
    result = ingest([src], tmp_path / "ds", schema=schema)
    assert dict(result.schema) == {"a": "int32", "b": "float32?", "c": "string", "d": "bool"}
    assert rows_of(tmp_path / "ds") == [
        {"a": 1, "b": None, "c": "x", "d": True},
        {"a": 2, "b": 2.5, "c": "", "d": False},
    ]
    field = pq.read_schema(tmp_path / "ds" / "shard-00000.parquet").field("a")
    assert field.type == pa.int32()
    with pytest.raises(TooManyBadRows, match=r"a\.csv:2: no value for required column 'b'"):
        ingest([src], tmp_path / "ds2", schema={"a": "int64", "b": "float64"})


def test_parquet_rows_that_do_not_cast_are_bad_rows(tmp_path: Path) -> None:
    src = tmp_path / "p.parquet"
    pq.write_table(pa.table({"id": [1, 2, 3], "v": ["1", "oops", None]}), src)
    result = ingest(
        [str(src)], tmp_path / "ds", schema={"id": "int64", "v": "int64"}, max_bad_rows=2
    )
    assert [(r.line, r.reason) for r in result.bad_row_samples] == [
        (2, "column 'v': 'oops' is not an integer (expected int64)"),
        (3, "no value for required column 'v'"),
    ]
    assert rows_of(tmp_path / "ds") == [{"id": 1, "v": 1}]


def test_directories_globs_and_gzip(tmp_path: Path) -> None:
    d = tmp_path / "in"
    d.mkdir()
    (d / "b.csv").write_text("id\n3\n4\n")
    (d / "a.csv").write_text("id\n1\n2\n")
    with gzip.open(d / "c.jsonl.gz", "wt") as fh:
        fh.write('{"id": 5}\n')
    (d / "notes.txt").write_text("ignored in a directory")
    result = ingest([str(d)], tmp_path / "ds")
    assert [r["id"] for r in rows_of(tmp_path / "ds")] == [1, 2, 3, 4, 5] and result.rows == 5
    globbed = ingest([str(d / "*.csv")], tmp_path / "ds2")
    assert globbed.rows == 4
    # output inside the source directory is not read back as a source on a re-run
    inside = ingest([str(d)], d / "out")
    assert inside.rows == 5 and ingest([str(d)], d / "out").skipped


def test_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(IngestError, match="does not exist"):
        ingest([str(tmp_path / "missing.csv")], tmp_path / "ds")
    (tmp_path / "x.txt").write_text("hi")
    with pytest.raises(IngestError, match="unsupported file type"):
        ingest([str(tmp_path / "x.txt")], tmp_path / "ds")
    src = write_csv(tmp_path / "a.csv", "a\n1\n")
    with pytest.raises(IngestError, match=r"lacks required column\(s\) \['b'\]"):
        ingest([src], tmp_path / "ds", schema={"a": "int64", "b": "int64"})
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "precious.txt").write_text("keep me")
    with pytest.raises(IngestError, match="not a dataset directory"):
        ingest([src], busy)
    assert (busy / "precious.txt").read_text() == "keep me"
    with pytest.raises(SchemaError, match="unknown type"):
        parse_schema({"a": "complex128"})
    with pytest.raises(SchemaError, match="invalid JSON"):
        load_schema_option("{nope")
    schema_file = tmp_path / "schema.json"
    schema_file.write_text('{"a": "int"}')
    assert load_schema_option(str(schema_file)).to_mapping() == {"a": "int64"}


def test_fsspec_urls_for_sources_and_datasets(tmp_path: Path) -> None:
    import fsspec

    mem = fsspec.filesystem("memory")
    mem.pipe("/tg-test/in/a.jsonl", b'{"id": 1}\n{"id": 2}\n{"id": 3}\n')
    try:
        result = ingest(["memory://tg-test/in"], tmp_path / "ds", shard_rows=2)
        assert result.rows == 3 and result.shards == 2
        for f in (tmp_path / "ds").iterdir():
            mem.pipe(f"/tg-test/ds/{f.name}", f.read_bytes())
        ds = StreamingDataset("memory://tg-test/ds", batch_size=2, shuffle=False)
        assert [int(s["id"]) for s in ds] == [1, 2, 3]
        assert ds.consumed_after(1) == 2 and ds.consumed_after(5) == 3
    finally:
        mem.rm("/tg-test", recursive=True)


def test_lists_of_numbers_round_trip_and_collate(tmp_path: Path) -> None:
    from torch.utils.data import default_collate

    j = tmp_path / "v.jsonl"
    j.write_text("".join(json.dumps({"id": i, "vec": [i, i + 0.5]}) + "\n" for i in range(6)))
    result = ingest([str(j)], tmp_path / "ds", shard_rows=4)
    assert dict(result.schema) == {"id": "int64", "vec": "float64[]"}
    samples = list(StreamingDataset(tmp_path / "ds", batch_size=3, seed=2))
    batch = default_collate(samples[:3])  # warnings are errors: arrays must be writable
    assert batch["vec"].shape == (3, 2)
    assert batch["vec"][:, 1].tolist() == [i + 0.5 for i in batch["id"].tolist()]

    c = write_csv(tmp_path / "v.csv", 'id,vec\n1,"[1, 2]"\n2,nope\n3,"[null]"\n4,\n')
    got = ingest([c], tmp_path / "ds2", schema={"id": "int64", "vec": "float32[]?"}, max_bad_rows=2)
    assert [(r.line, r.reason.split(":")[0]) for r in got.bad_row_samples] == [
        (3, "column 'vec'"),
        (4, "column 'vec'"),
    ]
    rows = list(StreamingDataset(tmp_path / "ds2", batch_size=2, shuffle=False))
    assert rows[0]["vec"].dtype == np.float32 and rows[0]["vec"].tolist() == [1.0, 2.0]
    assert rows[1]["vec"] is None

    p = tmp_path / "v.parquet"
    pq.write_table(pa.table({"tags": [["a"], ["b"]]}), p)
    with pytest.raises(SchemaError, match="nested type"):
        ingest([str(p)], tmp_path / "ds3")
