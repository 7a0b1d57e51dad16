"""Online model of a replica's batch service time: ``seconds(k) = fixed_s + per_row_s * k``.

Fitted by exponentially-forgetting least squares over recent batches, so it follows drift (a
noisy neighbour on the machine, a new model version) without storing history. Admission uses it
to predict when a new request would finish: the rows ahead drain at the full-batch rate, the
request's own batch takes ``seconds(rows in it)``. Using the last batch's time instead would
predict a big batch's time for a lone request after a burst — and shed everything, forever,
since shed requests never produce the smaller batches that would correct it.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class ServiceModel:
    """Exponentially weighted fit of batch service time against batch size."""

    decay: float = 0.97  # weight kept by older batches each time a new one arrives
    _w: float = 0.0
    _k: float = 0.0
    _kk: float = 0.0
    _s: float = 0.0
    _ks: float = 0.0
    _fit: tuple[float, float] = (0.0, 0.0)  # refitted once per batch, read per admission

    def observe(self, rows: int, seconds: float) -> None:
        d = self.decay
        self._w = d * self._w + 1.0
        self._k = d * self._k + rows
        self._kk = d * self._kk + rows * rows
        self._s = d * self._s + seconds
        self._ks = d * self._ks + rows * seconds
        self._fit = self._refit()

    @property
    def measured(self) -> bool:
        return self._w > 0

    def coefficients(self) -> tuple[float, float]:
        """``(fixed_s, per_row_s)``, both >= 0; without a usable spread, ``per_row_s`` only."""
        return self._fit

    def _refit(self) -> tuple[float, float]:
        det = self._w * self._kk - self._k * self._k
        if det > 1e-9 * self._w * self._kk:
            per_row = (self._w * self._ks - self._k * self._s) / det
            fixed = (self._s - per_row * self._k) / self._w
            if per_row >= 0 and fixed >= 0:
                return fixed, per_row
        # Too little spread in batch sizes (or noise) to separate the two terms: through the
        # origin. A constant instead would predict a full batch's time for a lone row.
        return 0.0, self._ks / self._kk if self._kk else 0.0

    def seconds(self, rows: int) -> float:
        fixed, per_row = self.coefficients()
        return fixed + per_row * max(1, rows)

    def rows_per_s(self, batch_rows: int) -> float | None:
        """Throughput of one busy replica at batches of ``batch_rows`` (None: unmeasured)."""
        t = self.seconds(batch_rows)
        return batch_rows / t if self.measured and t > 0 else None
