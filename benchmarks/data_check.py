"""Data-check throughput against pyarrow reading the same shards, and peak memory at two sizes.

Generates datasets of ``--small`` and ``--rows`` rows (4 float features, an int label, a
10-value category, a unique short text) as 64Ki-row Parquet shards plus ``index.json`` under
a temporary directory (deleted afterwards). For each size, in fresh subprocesses (so the peak
RSS is that run's own): the baseline reads every shard, every column, with
``ParquetFile.iter_batches`` (the check's own reader); the check runs ``run_check`` with the
default rules (stats, histograms, categories, PII sample, row digests for duplicates, drift
between shards). The page cache is warmed first, so both read from memory.

    python benchmarks/data_check.py [--rows 10000000] [--small 1000000]

Last line: one JSON object with rows/s for both, their ratio (target >= 0.5) and the peak RSS
of the check at both sizes (flat in dataset size: the ratio should be near 1).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SHARD_ROWS = 65536


def generate(out: Path, rows: int) -> None:
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from tailguard.data.index import DatasetIndex, ShardInfo, sha256_bytes
    from tailguard.data.schema import parse_schema

    out.mkdir(parents=True)
    rng = np.random.default_rng(0)
    cats = pa.array([f"c{i}" for i in range(10)])
    shards = []
    for n, lo in enumerate(range(0, rows, SHARD_ROWS)):
        k = min(SHARD_ROWS, rows - lo)
        ids = pa.array(np.arange(lo, lo + k))
        table = pa.table({
            **{f"x{j}": rng.normal(size=k) for j in range(4)},
            "label": rng.integers(0, 5, k),
            "cat": pc.take(cats, pa.array(rng.integers(0, 10, k))),
            "text": pc.binary_join_element_wise("item ", pc.cast(ids, pa.string()), ""),
        })
        name = f"shard-{n:05d}.parquet"
        sink = pa.BufferOutputStream()
        pq.write_table(table, sink, compression="zstd")
        data = sink.getvalue().to_pybytes()
        (out / name).write_bytes(data)
        shards.append(ShardInfo(name, k, sha256_bytes(data)))
    schema = parse_schema({**{f"x{j}": "float64" for j in range(4)}, "label": "int64",
                           "cat": "string", "text": "string"})
    index = DatasetIndex(schema=schema, shards=tuple(shards), fingerprint=f"bench-{rows}")
    (out / "index.json").write_text(index.to_json())


def _child(mode: str, path: str) -> None:
    """Runs in a subprocess: one pass, prints rows, seconds and this process's peak RSS."""
    import resource

    from tailguard.data.index import read_index

    index = read_index(path)
    started = time.perf_counter()
    if mode == "read":
        from tailguard.data.checks.stats import iter_batches

        rows = 0
        for shard in index.shards:
            for batch in iter_batches(path, shard.file):
                rows += batch.num_rows
    else:
        from tailguard.data.checks import Rules, run_check

        report = run_check(path, Rules(), keep=False)
        rows = report.rows
    elapsed = time.perf_counter() - started
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"rows": rows, "s": elapsed, "peak_mib": peak_kib / 1024}))


def _run(mode: str, path: Path) -> dict[str, float]:
    out = subprocess.run([sys.executable, __file__, "--child", mode, str(path)],
                         capture_output=True, text=True, check=True)
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--small", type=int, default=1_000_000)
    parser.add_argument("--child", nargs=2, metavar=("MODE", "PATH"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(*args.child)
        return
    root = Path(tempfile.mkdtemp(prefix="tailguard-bench-data-"))
    results: dict[str, dict[str, float]] = {}
    try:
        for label, rows in (("small", args.small), ("large", args.rows)):
            path = root / label
            generate(path, rows)
            _run("read", path)  # warm the page cache: both passes then read from memory
            read = _run("read", path)
            check = _run("check", path)
            results[label] = {"rows": rows, "read_rows_per_s": read["rows"] / read["s"],
                              "check_rows_per_s": check["rows"] / check["s"],
                              "read_peak_mib": read["peak_mib"],
                              "check_peak_mib": check["peak_mib"]}
            print(f"{label}: {rows} rows  read {results[label]['read_rows_per_s']:,.0f} rows/s"
                  f"  check {results[label]['check_rows_per_s']:,.0f} rows/s  check peak "
                  f"{check['peak_mib']:.0f} MiB (read {read['peak_mib']:.0f} MiB)", flush=True)
            shutil.rmtree(path)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    large, small = results["large"], results["small"]
    print(json.dumps({
        "benchmark": "data_check",
        "rows": large["rows"],
        "check_rows_per_s": round(large["check_rows_per_s"]),
        "read_rows_per_s": round(large["read_rows_per_s"]),
        "ratio_check_vs_read": round(large["check_rows_per_s"] / large["read_rows_per_s"], 3),
        "target_ratio": 0.5,
        "peak_mib_small": round(small["check_peak_mib"], 1),
        "peak_mib_large": round(large["check_peak_mib"], 1),
        "peak_ratio_large_vs_small": round(large["check_peak_mib"] / small["check_peak_mib"], 3),
        "small_rows": small["rows"],
    }))


if __name__ == "__main__":
    main()
