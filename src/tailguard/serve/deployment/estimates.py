"""The one online model of a replica's batch service time: ``seconds(k) = fixed_s + per_row_s*k``.

Fitted by exponentially-forgetting least squares over recent batches, so it follows drift (a
noisy neighbour on the machine, a new model version) without storing history. It is the only
service-time estimate of a deployment: admission predicts finishes with it, the batcher sizes
batches with it, and the autoscaler's snapshots carry its :meth:`ServiceModel.profile` —
three fits could disagree, one cannot.

Using the last batch's time instead would predict a big batch's time for a lone request after
a burst — and shed everything, forever, since shed requests never produce the smaller batches
that would correct it. Without a spread of batch sizes the fit goes through the origin (no
batching gain assumed): pessimistic, so the model also keeps the mean time of the largest
batch size seen (:attr:`ServiceFit.largest`), and the batcher probes one row further while
that is within budget — Clipper's additive increase, with the fit as its decrease.
"""

from __future__ import annotations

from dataclasses import dataclass

from tailguard.autoscale.snapshot import ServiceProfile

__all__ = ["ServiceFit", "ServiceModel"]

_LARGEST_ALPHA = 0.2  # EWMA weight of a new batch in the largest size's mean time


@dataclass(frozen=True, slots=True)
class ServiceFit:
    """The fitted model as a value (what a :class:`~.view.LoadView` carries).

    ``largest``: the largest batch size measured and its recent mean time, or None."""

    fixed_s: float
    per_row_s: float
    largest: tuple[int, float] | None = None

    def seconds(self, rows: int) -> float:
        return self.fixed_s + self.per_row_s * max(1, rows)

    def rows_per_s(self, batch_rows: int) -> float:
        """Throughput of one busy replica at batches of ``batch_rows`` (0 if unusable)."""
        t = self.seconds(batch_rows)
        return batch_rows / t if t > 0 else 0.0


@dataclass
class ServiceModel:
    """Exponentially weighted fit of batch service time against batch size."""

    decay: float = 0.97  # weight kept by older batches each time a new one arrives
    _w: float = 0.0
    _k: float = 0.0
    _kk: float = 0.0
    _s: float = 0.0
    _ks: float = 0.0
    _largest: tuple[int, float] | None = None
    _fit: ServiceFit | None = None  # refitted once per batch, read per admission

    def observe(self, rows: int, seconds: float) -> None:
        if rows < 1 or not seconds > 0:
            return
        d = self.decay
        self._w = d * self._w + 1.0
        self._k = d * self._k + rows
        self._kk = d * self._kk + rows * rows
        self._s = d * self._s + seconds
        self._ks = d * self._ks + rows * seconds
        largest = self._largest
        if largest is None or rows > largest[0]:
            self._largest = (rows, seconds)
        elif rows == largest[0]:
            mean = largest[1] + _LARGEST_ALPHA * (seconds - largest[1])
            self._largest = (rows, mean)
        self._fit = self._refit()

    @property
    def measured(self) -> bool:
        return self._fit is not None

    @property
    def fit(self) -> ServiceFit | None:
        """The current fit, None until a batch was measured."""
        return self._fit

    def coefficients(self) -> tuple[float, float]:
        """``(fixed_s, per_row_s)``, both >= 0 (zeros while unmeasured)."""
        fit = self._fit
        return (0.0, 0.0) if fit is None else (fit.fixed_s, fit.per_row_s)

    def seconds(self, rows: int) -> float:
        fit = self._fit
        return 0.0 if fit is None else fit.seconds(rows)

    def rows_per_s(self, batch_rows: int) -> float | None:
        """Throughput of one busy replica at batches of ``batch_rows`` (None: unmeasured)."""
        fit = self._fit
        if fit is None:
            return None
        rate = fit.rows_per_s(batch_rows)
        return rate if rate > 0 else None

    def profile(self, max_batch_size: int) -> ServiceProfile:
        """The fit as the autoscaler's :class:`ServiceProfile` (its default guess while
        nothing is measured)."""
        fixed, per_row = self.coefficients()
        if fixed + per_row <= 0:
            return ServiceProfile(max_batch_size=max_batch_size)
        return ServiceProfile(fixed_s=fixed, per_row_s=per_row, max_batch_size=max_batch_size)

    def _refit(self) -> ServiceFit:
        det = self._w * self._kk - self._k * self._k
        if det > 1e-9 * self._w * self._kk:
            per_row = (self._w * self._ks - self._k * self._s) / det
            fixed = (self._s - per_row * self._k) / self._w
            if per_row >= 0 and fixed >= 0:
                return ServiceFit(fixed, per_row, self._largest)
        # Too little spread in batch sizes (or noise) to separate the two terms: through the
        # origin. A constant instead would predict a full batch's time for a lone row.
        return ServiceFit(0.0, self._ks / self._kk if self._kk else 0.0, self._largest)
