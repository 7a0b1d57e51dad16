"""Write the sklearn digits (bundled, no download) as train/test CSV files.

Columns ``px0`` … ``px63`` (pixel intensities 0-16, scaled to 0-1) and ``label``; a fixed
80/20 split stratified by label, so every run sees the same held-out set.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split


def write_csv(path: Path, features: np.ndarray, labels: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow([*(f"px{i}" for i in range(features.shape[1])), "label"])
        for row, label in zip(features, labels, strict=True):
            writer.writerow([*(f"{v:g}" for v in row), int(label)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=Path(".tailguard/examples/digits"))
    args = parser.parse_args()
    digits = load_digits()
    x = (digits.data / 16.0).astype(np.float32)
    x_train, x_test, y_train, y_test = train_test_split(
        x, digits.target, test_size=0.2, random_state=0, stratify=digits.target)
    write_csv(args.out / "train.csv", x_train, y_train)
    write_csv(args.out / "test.csv", x_test, y_test)
    print(f"wrote {len(y_train)} train and {len(y_test)} test rows to {args.out}")


if __name__ == "__main__":
    main()
