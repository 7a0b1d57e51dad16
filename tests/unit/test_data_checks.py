"""Data checks on generated datasets with planted problems: each is found with the right
rows named, and clean data passes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tailguard.data import ingest
from tailguard.data.checks import Finding, parse_rules, run_check
from tailguard.data.checks.compare import ks, psi, share_change
from tailguard.data.checks.hashing import DigestSpill, hash_rows
from tailguard.data.checks.pii import detect, luhn_ok

SCHEMA = {"x": "float64", "age": "float64?", "text": "string", "label": "int64"}


def make(n: int, seed: int, start: int = 0) -> dict[str, Any]:
    """Clean rows: a normal feature, an age, unique text, a balanced 3-class label."""
    rng = np.random.default_rng(seed)
    return {"x": rng.normal(size=n), "age": rng.integers(18, 80, n).astype(float),
            "text": [f"Review {start + i}: works as described" for i in range(n)],
            "label": np.arange(start, start + n) % 3}


def write(tmp: Path, name: str, cols: dict[str, Any], schema: dict[str, Any] | None = None,
          shard_rows: int = 1000) -> str:
    src = tmp / f"{name}.parquet"
    pq.write_table(pa.table({k: pa.array(v, from_pandas=True) for k, v in cols.items()}), src)
    out = tmp / name
    ingest([str(src)], out, shard_rows=shard_rows, schema=schema or SCHEMA)
    return str(out)


def by_rule(findings: tuple[Finding, ...], rule: str) -> list[Finding]:
    return [f for f in findings if f.rule == rule]


def test_clean_data_passes(tmp_path: Path) -> None:
    train = write(tmp_path, "train", make(4000, 0))
    test = write(tmp_path, "test", make(1000, 1, start=4000))
    report = run_check(train, parse_rules({"columns": {"*": {"max_null_rate": 0.0}}}),
                       against=test)
    assert report.passed and report.findings == ()
    assert (Path(train) / "checks" / "report.json").is_file()
    assert {c.name for c in report.columns} == set(SCHEMA)


def test_planted_problems_are_found_with_their_rows(tmp_path: Path) -> None:
    cols = make(4000, 0)
    cols["age"][[7, 1234]] = np.nan                          # nulls
    cols["age"][2500] = 150.0                                # out of range
    cols["x"][3000:4000] += 4.0                              # shard 3 drifted
    for dup in (10, 20):                                     # rows 4000, 4001 copy 10, 20
        for k in cols:
            cols[k] = np.append(cols[k], cols[k][dup]) if k != "text" else (
                cols[k] + [cols[k][dup]])
    test_cols = make(1000, 1, start=5000)
    for k in test_cols:                                      # test rows 0, 1 are train 100, 101
        if k == "text":
            test_cols[k][0:2] = cols[k][100:102]
        else:
            test_cols[k][0:2] = cols[k][100:102]
    test_cols["text"][5] = "  REVIEW 200: works, as described!! "   # train row 200, normalised
    train = write(tmp_path, "train", cols)
    test = write(tmp_path, "test", test_cols)
    rules = parse_rules({"columns": {"age": {"max_null_rate": 0.0, "min": 0, "max": 120}},
                         "duplicates": {"severity": "fail"}})
    report = run_check(train, rules, against=test)
    assert not report.passed

    nulls, = by_rule(report.findings, "null_rate")
    assert nulls.column == "age" and [r.row for r in nulls.examples] == [7, 1234]
    assert nulls.examples[1].shard == "shard-00001.parquet" and nulls.examples[1].shard_row == 234
    out_of_range, = by_rule(report.findings, "range")
    assert [r.row for r in out_of_range.examples] == [2500]
    dupes, = by_rule(report.findings, "duplicates")
    assert dupes.value == pytest.approx(2 / 4002)
    assert {r.row for r in dupes.examples} == {10, 20, 4000, 4001}
    leak, = by_rule(report.findings, "leakage")
    pairs = {(a.row, b.row) for a, b in zip(leak.examples[::2], leak.examples[1::2], strict=True)}
    assert pairs == {(100, 0), (101, 1)} and leak.value == 2
    text_leak, = by_rule(report.findings, "leakage_text")
    assert text_leak.value == 1 and "text" in text_leak.message
    assert [(r.dataset, r.row) for r in text_leak.examples] == [("dataset", 200), ("against", 5)]
    drift = by_rule(report.findings, "drift_shard")
    assert {(f.column, f.examples[0].shard) for f in drift} == {("x", "shard-00003.parquet")}
    assert by_rule(report.findings, "pii") == []


def test_undeclared_emails_fail_and_declared_pii_is_protected(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cols = make(600, 0)
    cols["contact"] = [f"user{i}@example.com" if i % 4 else f"call me {i}" for i in range(600)]
    schema = {**SCHEMA, "contact": "string"}
    plain = write(tmp_path, "plain", cols, schema)
    pii, = by_rule(run_check(plain, parse_rules({})).findings, "pii")
    assert pii.column == "contact" and pii.severity.value == "fail" and "email" in pii.message
    assert [r.row for r in pii.examples] == [1, 2, 3, 5, 6]

    cols["card"] = ["4111 1111 1111 1111"] * 600
    declared = {**schema, "contact": {"type": "string", "pii": "hash"},
                "card": {"type": "string", "pii": "drop"}}
    monkeypatch.delenv("TAILGUARD_PII_KEY", raising=False)
    with pytest.raises(Exception, match="TAILGUARD_PII_KEY is not set"):
        write(tmp_path, "hashed", cols, declared)
    monkeypatch.setenv("TAILGUARD_PII_KEY", "s3cret-key")
    hashed = write(tmp_path, "hashed", cols, declared)
    table = pq.read_table(Path(hashed) / "shard-00000.parquet")
    assert "card" not in table.column_names
    import hashlib
    import hmac
    want = hmac.new(b"s3cret-key", b"user1@example.com", hashlib.sha256).hexdigest()
    assert table.column("contact")[1].as_py() == want
    index_text = (Path(hashed) / "index.json").read_text()
    assert "s3cret-key" not in index_text and '"contact": "hash"' in index_text
    report = run_check(hashed, parse_rules({}))
    assert report.passed and report.pii == {"contact": "hash", "card": "drop"}


def test_detectors_and_luhn() -> None:
    masks = detect(pa.array(["a.b@x.org", "+44 20 7946 0958", "4539 1488 0343 6467",
                             "4539 1488 0343 6468", "hello", None]))
    assert masks["email"].to_pylist() == [True, False, False, False, False, False]
    assert masks["card"].to_pylist() == [False, False, True, False, False, False]
    assert masks["phone"].to_pylist()[:2] == [False, True]
    assert luhn_ok("79927398713") and not luhn_ok("79927398710")
    # ids, dates and addresses that are not personal data
    quiet = detect(pa.array(["12345678", "2024-01-01", "10.0.0.1", "1234567812345670"]))
    assert not any(v for mask in quiet.values() for v in mask.to_pylist())


def test_spill_to_disk_finds_the_same_groups() -> None:
    values = np.array([5, 1, 5, 7, 1, 9, 5] * 50)
    digests = hash_rows([pa.array(values)])
    rows = np.arange(len(values), dtype=np.uint64)
    with DigestSpill(len(values)) as memory:
        memory.add(digests, rows)
        expected = sorted(tuple(g) for g in memory.groups())
    with DigestSpill(len(values), partition_entries=16, buffer_entries=32) as disk:
        assert disk.partitions > 1
        for lo in range(0, len(values), 40):
            disk.add(digests[lo:lo + 40], rows[lo:lo + 40])
        assert sorted(tuple(g) for g in disk.groups()) == expected
    assert len(expected) == 4  # 5, 1, 7 and 9 each repeat


def test_distribution_distances() -> None:
    rng = np.random.default_rng(0)
    edges = np.linspace(-6, 6, 65)
    a, _ = np.histogram(rng.normal(size=20000), edges)
    b, _ = np.histogram(rng.normal(size=20000), edges)
    c, _ = np.histogram(rng.normal(1.0, size=20000), edges)
    assert psi(a, b) < 0.02 and psi(a, c) > 0.5
    assert ks(a, b) < 0.03 and 0.3 < ks(a, c) < 0.45
    assert share_change({"a": 50, "b": 50}, {"a": 80, "b": 20}) == (pytest.approx(0.3), "a")
