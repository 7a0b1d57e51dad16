"""Loss weighting, metrics and the learning-rate schedule."""

from __future__ import annotations

import math

import pytest
import torch

from tailguard.train.job import LossName, MetricName, ScheduleSpec
from tailguard.train.objectives import (
    MetricSums,
    lr_factor,
    mean_loss,
    per_row_loss,
    step_loss,
    target_met,
)


def _grad(model: torch.nn.Module) -> torch.Tensor:
    return torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])


def test_rank_losses_average_to_the_global_mean_gradient() -> None:
    """Two ranks with uneven rows (5 and 2, one placeholder) averaged like DDP == one process."""
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 3)
    x, y = torch.randn(7, 4), torch.randint(0, 3, (7,))
    model.zero_grad()
    torch.nn.functional.cross_entropy(model(x), y).backward()
    reference = _grad(model).clone()
    grads = []
    for rows in (slice(0, 5), slice(5, 7)):
        model.zero_grad()
        xs = torch.cat([x[rows], x[:1]])  # plus one zero-weight placeholder row
        w = torch.cat([torch.ones(xs.shape[0] - 1), torch.zeros(1)])
        rows_loss = per_row_loss(LossName.CROSS_ENTROPY, model(xs), torch.cat([y[rows], y[:1]]))
        step_loss(rows_loss, w, global_rows=7, world_size=2).backward()
        grads.append(_grad(model).clone())
    torch.testing.assert_close((grads[0] + grads[1]) / 2, reference)


@pytest.mark.parametrize("loss", [LossName.CROSS_ENTROPY, LossName.MSE])
def test_full_batch_fast_path_equals_weighted_share(loss: LossName) -> None:
    """The trainer's fast path for full batches gives step_loss's value and gradient."""
    torch.manual_seed(1)
    model = torch.nn.Linear(4, 3)
    x = torch.randn(8, 4)
    y = torch.randint(0, 3, (8,)) if loss is LossName.CROSS_ENTROPY else torch.randn(8, 3)
    model.zero_grad()
    fast = mean_loss(loss, model(x), y)
    fast.backward()
    fast_grad = _grad(model).clone()
    model.zero_grad()
    slow = step_loss(per_row_loss(loss, model(x), y), torch.ones(8), global_rows=16,
                     world_size=2)
    slow.backward()
    torch.testing.assert_close(fast, slow)
    torch.testing.assert_close(fast_grad, _grad(model))


def test_metric_sums_weight_out_placeholders() -> None:
    sums = MetricSums()
    logits = torch.tensor([[2.0, 0.0], [0.0, 2.0], [2.0, 0.0]])
    sums.add(LossName.CROSS_ENTROPY, logits, torch.tensor([0, 0, 1]), torch.tensor([1.0, 1.0, 0.0]))
    result = sums.result(LossName.CROSS_ENTROPY)
    assert result["accuracy"] == 0.5 and result["rows"] == 2.0


def test_unweighted_sums_equal_weighted_sums_with_unit_weights() -> None:
    torch.manual_seed(0)
    batches = [(torch.randn(n, 4), torch.randint(0, 4, (n,))) for n in (5, 9, 1)]
    fast, slow = MetricSums(), MetricSums()
    for logits, labels in batches:
        fast.add(LossName.CROSS_ENTROPY, logits, labels)
        slow.add(LossName.CROSS_ENTROPY, logits, labels, torch.ones(len(labels)))
    fast.add(LossName.CROSS_ENTROPY, torch.randn(1, 4), torch.tensor([2]), torch.zeros(1))
    got, want = fast.result(LossName.CROSS_ENTROPY), slow.result(LossName.CROSS_ENTROPY)
    assert got["rows"] == want["rows"] == 15.0 and got["accuracy"] == want["accuracy"]
    # float32 log-sum-exp vs log_softmax: equal up to float32 rounding of each row's loss
    assert got["loss"] == pytest.approx(want["loss"], rel=1e-6)
    # totals reduce as one tensor: twice the totals is the same metrics over twice the rows
    doubled = fast.result(LossName.CROSS_ENTROPY, fast.totals() * 2)
    assert doubled["rows"] == 30.0 and doubled["accuracy"] == got["accuracy"]


def test_regression_metrics() -> None:
    sums = MetricSums()
    sums.add(LossName.MSE, torch.tensor([[1.0], [3.0]]), torch.tensor([0.0, 1.0]),
             torch.ones(2))
    result = sums.result(LossName.MSE)
    assert result["mse"] == pytest.approx(2.5) and result["mae"] == pytest.approx(1.5)


@pytest.mark.parametrize("metric, value, target, met", [
    (MetricName.ACCURACY, 0.97, 0.97, True), (MetricName.ACCURACY, 0.96, 0.97, False),
    (MetricName.MSE, 0.1, 0.2, True), (MetricName.LOSS, 0.3, 0.2, False)])
def test_target_direction(metric: MetricName, value: float, target: float, met: bool) -> None:
    assert target_met(metric, value, target) is met


def test_schedule_warmup_then_cosine_to_floor() -> None:
    spec = ScheduleSpec(name="cosine", warmup_steps=4, min_lr_ratio=0.1)
    assert [lr_factor(spec, s, 20) for s in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert lr_factor(spec, 4, 20) == pytest.approx(1.0)
    assert lr_factor(spec, 12, 20) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi / 2)))
    assert lr_factor(spec, 20, 20) == pytest.approx(0.1)
    assert lr_factor(ScheduleSpec(), 1000, 20) == 1.0
    warmup = ScheduleSpec(name="warmup", warmup_steps=2)
    assert [lr_factor(warmup, s, 20) for s in range(4)] == [0.5, 1.0, 1.0, 1.0]
    with pytest.raises(ValueError, match="warmup_steps > 0"):
        ScheduleSpec(name="warmup")
