"""Training/serving skew: what a deployment receives, sampled, against the training data.

The reference is the data check kept beside the training set (``DIR/checks/report.json``,
written by ``tailguard data check`` or the ``data.checks`` preflight): each numeric column's
histogram over fixed edges. A deployment with ``skew:`` in its spec bins one request in
``sample_every`` with the same edges and exposes, per feature, the population stability index
of the recent window against the reference as ``tailguard_feature_psi{deployment,feature}``
(read at scrape time; the request path only bins a sampled request's rows)::

    deployments:
      - name: tabular
        artifact: tabular
        skew: {reference: data/train, tensor: features, features: [age, income, score]}

``features`` names the columns of the served tensor in order (a 2-D tensor, one column per
feature, as the trainer stacks several numeric columns); with one feature the tensor may be
1-D. The window keeps the last ``window_rows`` to ``2 * window_rows`` sampled rows.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

import numpy as np
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from tailguard.serve.skew_spec import SkewSpec


class SkewError(ValueError):
    """The reference is missing or lacks a feature's histogram."""


def _load_reference(path: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    report = path / "checks" / "report.json" if path.is_dir() else path
    if not report.is_file():
        raise SkewError(f"skew.reference: no data check report at {report}; run `tailguard "
                        f"data check {path}` first")
    doc = json.loads(report.read_text(encoding="utf-8"))
    out = {}
    for col in doc.get("columns", []):
        if col.get("edges") and col.get("hist"):
            out[col["name"]] = (np.asarray(col["edges"], float), np.asarray(col["hist"], float))
    return out


class SkewMonitor:
    """Bins sampled requests per feature and reports PSI against the training histograms."""

    def __init__(self, spec: SkewSpec) -> None:
        reference = _load_reference(spec.reference)
        missing = [f for f in spec.features if f not in reference]
        if missing:
            raise SkewError(f"skew.features {missing}: no numeric histogram in the training "
                            f"report (it has {sorted(reference)})")
        self.spec = spec
        self._edges = [reference[f][0] for f in spec.features]
        self._reference = [reference[f][1] for f in spec.features]
        bins = len(self._edges[0]) - 1
        self._current = np.zeros((len(spec.features), bins), np.int64)
        self._previous = np.zeros_like(self._current)
        self._rows = 0
        self._seen = 0

    def observe(self, tensors: dict[str, np.ndarray]) -> None:
        """Called for every request; bins one in ``sample_every``."""
        self._seen += 1
        if self._seen % self.spec.sample_every:
            return
        values = tensors.get(self.spec.tensor)
        if values is None:
            return
        x = np.asarray(values, dtype=np.float64)
        x = x.reshape(len(x), -1) if x.ndim != 1 else x.reshape(-1, 1)
        if x.shape[1] != len(self._edges):
            return  # a malformed request is the protocol adapter's business, not ours
        for j, edges in enumerate(self._edges):
            col = x[:, j]
            col = col[np.isfinite(col)]
            bins = len(edges) - 1
            idx = ((col - edges[0]) * (bins / (edges[-1] - edges[0]))).astype(np.int64)
            self._current[j] += np.bincount(np.clip(idx, 0, bins - 1), minlength=bins)
        self._rows += len(x)
        if self._rows >= self.spec.window_rows:  # rotate: the window spans 1-2 windows
            self._previous, self._current = self._current, np.zeros_like(self._current)
            self._rows = 0

    def psi(self) -> dict[str, float]:
        """PSI per feature over the recent window; empty until ``min_rows`` are sampled."""
        from tailguard.data.checks.compare import psi  # pyarrow stays off the serve import

        window = self._current + self._previous
        if int(window.sum(axis=1).min()) < self.spec.min_rows:
            return {}
        return {name: psi(ref, window[j])
                for j, (name, ref) in enumerate(zip(self.spec.features, self._reference,
                                                    strict=True))}


class SkewCollector(Collector):
    """``tailguard_feature_psi{deployment,feature}`` for every monitored deployment."""

    def __init__(self, monitors: dict[str, SkewMonitor]) -> None:
        self._monitors = monitors

    def collect(self) -> Iterable[GaugeMetricFamily]:
        gauge = GaugeMetricFamily(
            "tailguard_feature_psi",
            "Population stability index of sampled served inputs against the training data",
            labels=["deployment", "feature"])
        for deployment, monitor in self._monitors.items():
            for feature, value in monitor.psi().items():
                gauge.add_metric([deployment, feature], value)
        yield gauge
