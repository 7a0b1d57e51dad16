"""Losses, evaluation metrics, optimisers and the learning-rate schedule.

Losses are per row so that weighting is exact: a step's gradient is the mean over the *global*
batch whatever the world size and however the last batch of an epoch is split (see
:func:`step_loss`). The learning rate is a pure function of the step, so resuming needs only
the step counter.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
import torch.nn.functional as F

from tailguard.train.job import LossName, MetricName, OptimizerSpec, ScheduleSpec


def label_dtype(loss: LossName) -> torch.dtype:
    return torch.int64 if loss is LossName.CROSS_ENTROPY else torch.float32


def per_row_loss(loss: LossName, outputs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    if loss is LossName.CROSS_ENTROPY:
        return F.cross_entropy(outputs, labels, reduction="none")
    predictions = outputs.reshape(labels.shape[0], -1)
    return ((predictions - labels.reshape(labels.shape[0], -1)) ** 2).mean(dim=1)


def mean_loss(loss: LossName, outputs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """The mean of :func:`per_row_loss` in one fused op: :func:`step_loss`'s value when every
    rank holds a full batch (the common step), without the per-row weights."""
    if loss is LossName.CROSS_ENTROPY:
        return F.cross_entropy(outputs, labels)
    n = labels.shape[0]
    return F.mse_loss(outputs.reshape(n, -1), labels.reshape(n, -1))


def step_loss(rows_loss: torch.Tensor, weights: torch.Tensor, *, global_rows: int,
              world_size: int) -> torch.Tensor:
    """This rank's share of the global mean loss, scaled so that the data-parallel *average*
    of gradients over ``world_size`` ranks equals the gradient of the global mean."""
    return (rows_loss * weights).sum() * (world_size / max(1, global_rows))


_SUMS = ("loss", "correct", "sq_err", "abs_err", "rows")


class MetricSums:
    """Sums over evaluation batches; reduce :meth:`totals` across ranks as one tensor, then
    finalise with :meth:`result`.

    ``weights=None`` means every row is real (weight 1): the common batch, summed with four
    tensor ops for a classifier (evaluation runs every few steps, so its op count is part of
    the framework's per-step cost); weights of 0 mark placeholder rows.
    """

    def __init__(self) -> None:
        self.values = torch.zeros(len(_SUMS), dtype=torch.float64)
        self._unweighted = [0.0] * len(_SUMS)  # the weights=None path, as Python floats

    def add(self, loss: LossName, outputs: torch.Tensor, labels: torch.Tensor,
            weights: torch.Tensor | None = None) -> None:
        if weights is None and loss is LossName.CROSS_ENTROPY:
            # one max serves accuracy's argmax (first maximum on ties, as argmax) and the
            # log-sum-exp's shift: half the time of log_softmax, whose CPU kernel is slow
            # over a narrow class dimension (59 us for 360 x 10 rows, one thread)
            top, predicted = outputs.max(dim=1)
            lse = (outputs - top[:, None]).exp_().sum(dim=1).log_().add_(top)
            rows_loss = lse - outputs.gather(1, labels[:, None]).squeeze(1)
            sums = self._unweighted
            sums[0] += float(rows_loss.sum(dtype=torch.float64))
            sums[1] += float((predicted == labels).sum())
            sums[4] += labels.shape[0]
            return
        w = (torch.ones(labels.shape[0], dtype=torch.float64) if weights is None
             else weights.double())
        rows_loss = per_row_loss(loss, outputs, labels).double()
        self.values[0] += (rows_loss * w).sum()
        if loss is LossName.CROSS_ENTROPY:
            self.values[1] += ((outputs.argmax(dim=1) == labels).double() * w).sum()
        else:
            err = (outputs.reshape(labels.shape[0], -1) - labels.reshape(labels.shape[0], -1))
            self.values[2] += (err.double() ** 2).mean(dim=1).mul(w).sum()
            self.values[3] += err.double().abs().mean(dim=1).mul(w).sum()
        self.values[4] += w.sum()

    def totals(self) -> torch.Tensor:
        """This process's sums (loss, correct, sq_err, abs_err, rows) as one float64 tensor."""
        return self.values + torch.tensor(self._unweighted, dtype=torch.float64)

    def result(self, loss: LossName, totals: torch.Tensor | None = None) -> dict[str, float]:
        """Metrics from ``totals`` (e.g. :meth:`totals` summed over ranks), else this one's."""
        values = (self.totals() if totals is None else totals).tolist()
        rows = max(1.0, values[4])
        out = {"loss": values[0] / rows, "rows": values[4]}
        if loss is LossName.CROSS_ENTROPY:
            out[MetricName.ACCURACY.value] = values[1] / rows
        else:
            out[MetricName.MSE.value] = values[2] / rows
            out[MetricName.MAE.value] = values[3] / rows
        return out


def target_met(metric: MetricName, value: float, target: float) -> bool:
    return value >= target if metric.higher_is_better else value <= target


def build_optimizer(spec: OptimizerSpec, params: Iterable[torch.nn.Parameter]
                    ) -> torch.optim.Optimizer:
    if spec.name == "adamw":
        return torch.optim.AdamW(params, lr=spec.lr, weight_decay=spec.weight_decay)
    return torch.optim.SGD(params, lr=spec.lr, momentum=spec.momentum,
                           weight_decay=spec.weight_decay)


def lr_factor(spec: ScheduleSpec, step: int, total_steps: int) -> float:
    """Multiplier of the base learning rate for optimiser step ``step`` (0-based)."""
    if spec.warmup_steps and step < spec.warmup_steps:
        return (step + 1) / spec.warmup_steps
    if spec.name in ("constant", "warmup"):
        return 1.0
    decay_steps = max(1, total_steps - spec.warmup_steps)
    progress = min(1.0, (step - spec.warmup_steps) / decay_steps)
    cosine = 0.5 * (1.0 + math.cos(math.pi * progress))
    return spec.min_lr_ratio + (1.0 - spec.min_lr_ratio) * cosine


def set_lr(optimizer: torch.optim.Optimizer, base_lr: float, factor: float) -> float:
    lr = base_lr * factor
    for group in optimizer.param_groups:
        group["lr"] = lr
    return lr
