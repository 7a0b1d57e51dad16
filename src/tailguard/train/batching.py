"""Step planning and collation: which rows each rank takes, and how they become tensors.

The data contract (``tailguard.data.StreamingDataset``): in each global step rank ``r`` takes
global positions ``consumed + s*B + r*b … +b`` with ``B = b * world_size``, so the last global
batch of an epoch may leave some ranks short or empty. Every rank must still run every step (a
collective per step), so the counts are computed here from the plan alone — no communication —
and an empty rank feeds one zero-weight placeholder row.
"""

from __future__ import annotations

import fnmatch
import math
import operator
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch


@dataclass(frozen=True)
class StepPlan:
    """Shape of data-parallel steps over one dataset at one world size."""

    num_samples: int
    per_rank_batch: int
    world_size: int

    def __post_init__(self) -> None:
        if self.per_rank_batch < 1 or self.world_size < 1 or self.num_samples < 0:
            raise ValueError(f"invalid step plan {self}")

    @property
    def global_batch(self) -> int:
        return self.per_rank_batch * self.world_size

    @property
    def steps_per_epoch(self) -> int:
        return math.ceil(self.num_samples / self.global_batch)

    def steps_left(self, consumed: int) -> int:
        """Global steps until the end of the epoch, starting ``consumed`` samples in."""
        return max(0, math.ceil((self.num_samples - consumed) / self.global_batch))

    def global_rows(self, consumed: int) -> int:
        """Rows of the next global step when ``consumed`` samples of the epoch are done."""
        return max(0, min(self.global_batch, self.num_samples - consumed))

    def rank_rows(self, consumed: int, rank: int) -> int:
        """Rows rank ``rank`` takes in the next global step."""
        start = consumed + rank * self.per_rank_batch
        return max(0, min(self.per_rank_batch, self.num_samples - start))


def per_rank_batch(global_batch: int, world_size: int, nominal: int) -> int:
    """Per-worker batch keeping the global batch (and so the optimisation) unchanged after an
    elastic shrink; when ``world_size`` does not divide it, keep the nominal per-worker size."""
    if global_batch % world_size == 0:
        return global_batch // world_size
    return nominal


def resolve_columns(patterns: Sequence[str], columns: Sequence[str]) -> list[str]:
    """Expand names and globs against the dataset's columns, in the dataset's column order."""
    chosen: list[str] = []
    for pattern in patterns:
        matched = [c for c in columns if fnmatch.fnmatchcase(c, pattern)]
        if not matched:
            raise ValueError(f"feature column {pattern!r} matches none of {list(columns)}")
        chosen.extend(c for c in matched if c not in chosen)
    return chosen


Features = torch.Tensor | list[str]


@dataclass(frozen=True)
class Batch:
    """Model input, labels and per-row weight (0 for placeholder rows)."""

    features: Features
    labels: torch.Tensor
    weights: torch.Tensor
    placeholder: bool = False  # one zero-weight row standing in for a rank without rows

    @property
    def rows(self) -> int:
        return int(self.weights.shape[0])


def _as_text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class Collator:
    """Turns sample dicts (column -> value) into a :class:`Batch`."""

    def __init__(self, feature_columns: Sequence[str], label_column: str, *,
                 label_dtype: torch.dtype) -> None:
        self.feature_columns = list(feature_columns)
        self._get_features = operator.itemgetter(*self.feature_columns)
        self.label_column = label_column
        self.label_dtype = label_dtype
        self._placeholder: Mapping[str, Any] | None = None

    def _features(self, samples: Sequence[Mapping[str, Any]]) -> Features:
        cols = self.feature_columns
        if len(cols) == 1:
            first = samples[0][cols[0]]
            if isinstance(first, str | bytes):
                return [_as_text(s[cols[0]]) for s in samples]
            array = np.asarray([s[cols[0]] for s in samples], dtype=np.float32)
            return torch.from_numpy(array.reshape(len(samples), -1))
        # numpy scalars -> float64 is numpy's fast path; one cast to float32 after
        get = self._get_features
        array = np.array([get(s) for s in samples], dtype=np.float64).astype(np.float32)
        return torch.from_numpy(array)

    def __call__(self, samples: Sequence[Mapping[str, Any]]) -> Batch:
        weights = torch.ones(len(samples))
        placeholder = not samples
        if placeholder:
            if self._placeholder is None:
                raise RuntimeError("this rank has no rows and has never seen a sample to "
                                   "shape a placeholder; use a smaller batch or world size")
            samples = [self._placeholder]
            weights = torch.zeros(1)
        elif self._placeholder is None:
            self._placeholder = samples[0]
        labels = torch.as_tensor(np.asarray([s[self.label_column] for s in samples]),
                                 dtype=self.label_dtype)
        return Batch(self._features(samples), labels, weights, placeholder=placeholder)

    def from_columns(self, columns: Mapping[str, np.ndarray]) -> Batch:
        """The batch of a column chunk (see :class:`BatchTaker`): the same values as
        ``self([one dict per row])`` without building the dicts."""
        n = len(columns[self.label_column])
        if n == 0:
            return self([])
        if self._placeholder is None:
            self._placeholder = {c: v[0] for c, v in columns.items()}
        labels = torch.as_tensor(_dense(columns[self.label_column]), dtype=self.label_dtype)
        cols = self.feature_columns
        features: Features
        if len(cols) == 1:
            values = columns[cols[0]]
            if values.dtype == object and isinstance(values[0], str | bytes):
                features = [_as_text(v) for v in values]
            else:
                features = torch.from_numpy(
                    np.ascontiguousarray(_dense(values), dtype=np.float32).reshape(n, -1))
        else:
            stacked = np.stack([columns[c].astype(np.float64) for c in cols], axis=1)
            features = torch.from_numpy(stacked.astype(np.float32))
        return Batch(features, labels, torch.ones(n))

    def remember(self, sample: Mapping[str, Any]) -> None:
        """Keep a sample to shape placeholders for steps where this rank gets no rows."""
        if self._placeholder is None:
            self._placeholder = sample


def _dense(values: np.ndarray) -> np.ndarray:
    """An object array of equal-length arrays (a list column) as one 2-D array."""
    return np.stack(list(values)) if values.dtype == object else values


def slice_batch(batch: Batch, start: int, stop: int) -> Batch:
    """Rows ``start:stop`` of ``batch``: views of its tensors, no copy."""
    return Batch(batch.features[start:stop], batch.labels[start:stop],
                 batch.weights[start:stop])


def concat_batches(parts: Sequence[Batch]) -> Batch:
    first = parts[0].features
    features: Features
    if isinstance(first, torch.Tensor):
        features = torch.cat([p.features for p in parts])  # type: ignore[misc]
    else:
        features = [text for p in parts for text in p.features]
    return Batch(features, torch.cat([p.labels for p in parts]),
                 torch.cat([p.weights for p in parts]))


class BatchTaker:
    """Cuts consecutive batches of ``n`` rows out of a stream of collated chunks (one per
    shuffle window: ``map(collator.from_columns, dataset.iter_columns())``).

    Each chunk is collated once, so a step costs three tensor slices (views), like a
    hand-written loop over in-memory tensors; only a batch that straddles two chunks is
    copied (``torch.cat``).
    """

    def __init__(self, chunks: Iterator[Batch]) -> None:
        self._chunks = chunks
        self._chunk: Batch | None = None
        self._offset = 0
        self._size = 0

    def take(self, n: int) -> Batch | None:
        """The next ``n >= 1`` rows; ``None`` when the stream ends first."""
        stop = self._offset + n
        if stop <= self._size:  # the common step: inside the current chunk
            assert self._chunk is not None
            start, self._offset = self._offset, stop
            return slice_batch(self._chunk, start, stop)
        pieces: list[Batch] = []
        need = n
        while need > 0:
            if self._offset >= self._size:
                chunk = next(self._chunks, None)
                if chunk is None:
                    return None
                self._chunk, self._offset, self._size = chunk, 0, chunk.rows
                continue
            assert self._chunk is not None
            stop = min(self._size, self._offset + need)
            pieces.append(slice_batch(self._chunk, self._offset, stop))
            need -= stop - self._offset
            self._offset = stop
        return pieces[0] if len(pieces) == 1 else concat_batches(pieces)
