"""Write the sklearn digits (bundled, no download) as train/test Parquet files.

Columns: ``features`` (64 pixel intensities scaled to 0-1, a ``float32[]`` list column, so the
data pipeline hands the trainer one array per sample) and ``label`` (0-9). A fixed 80/20 split
stratified by label, so every run sees the same held-out set.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split


def write_split(out: Path) -> dict[str, Path]:
    """Write ``train.parquet`` and ``test.parquet`` under ``out``; return their paths."""
    digits = load_digits()
    x = (digits.data / 16.0).astype(np.float32)
    x_train, x_test, y_train, y_test = train_test_split(
        x, digits.target, test_size=0.2, random_state=0, stratify=digits.target)
    out.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name, xs, ys in (("train", x_train, y_train), ("test", x_test, y_test)):
        table = pa.table({"features": pa.array(list(xs), type=pa.list_(pa.float32())),
                          "label": pa.array(ys.astype(np.int64))})
        paths[name] = out / f"{name}.parquet"
        pq.write_table(table, paths[name])
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=Path(".tailguard/examples/digits"))
    args = parser.parse_args()
    paths = write_split(args.out)
    print(f"wrote {paths['train']} and {paths['test']}")


if __name__ == "__main__":
    main()
