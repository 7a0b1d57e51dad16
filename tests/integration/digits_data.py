"""Digits as ingested train/test datasets, for the training tests (CSV -> ingest)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from sklearn.datasets import load_digits

from tailguard.data import ingest
from tailguard.data.ingest import DEFAULT_SHARD_ROWS


def _write_csv(path: Path, x: np.ndarray, y: np.ndarray) -> None:
    header = ",".join([*(f"px{i}" for i in range(x.shape[1])), "label"])
    rows = [",".join([*(f"{v:g}" for v in r), str(int(t))]) for r, t in zip(x, y, strict=True)]
    path.write_text(header + "\n" + "\n".join(rows) + "\n")


def make_digits(root: Path, shard_rows: int = DEFAULT_SHARD_ROWS) -> dict[str, Path]:
    """1,400 training rows and the rest held out, shuffled once (the file ends in hard cases)."""
    d = load_digits()
    order = np.random.default_rng(0).permutation(len(d.target))
    x, y = (d.data[order] / 16.0).astype(np.float32), d.target[order]
    _write_csv(root / "train.csv", x[:1400], y[:1400])
    _write_csv(root / "test.csv", x[1400:], y[1400:])
    ingest([str(root / "train.csv")], root / "train", shard_rows=shard_rows)
    ingest([str(root / "test.csv")], root / "test")
    return {"train": root / "train", "test": root / "test"}
