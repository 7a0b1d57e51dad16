"""Pipeline-parallel steps with ``torch.distributed.pipelining``.

Each rank of a pipeline group holds one stage (``model_plans.split_stage``). A step splits the
rank's batch into ``microbatches`` along rows and runs them through the stages by a GPipe or
1F1B schedule; the schedule calls backward itself, so the trainer only zeroes the gradients
before and steps the optimiser after.

The loss is a *sum* over rows (``scale_grads=False``): each microbatch returns its rows' share
of the global mean (per-row loss × weight × dp / global rows), so the gradients accumulated
over microbatches are exactly those of the whole batch whatever the split, and rows of weight
0 pad a short batch to the fixed shape the stages' buffers were sized for (the last batch of
an epoch, a rank without rows) without changing the result. Labels and weights travel as one
float target ``[rows, label columns + 1]``, which the schedule splits like the inputs.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.distributed as dist
from torch import nn

from tailguard.train.batching import Batch
from tailguard.train.job import LossName
from tailguard.train.objectives import per_row_loss


def pack_target(batch: Batch, rows: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(features, target) of ``batch`` padded to ``rows`` rows; padding rows repeat the first
    row's values with weight 0."""
    features, labels, weights = batch.features, batch.labels, batch.weights
    if not isinstance(features, torch.Tensor):
        raise TypeError("a pipeline moves tensors between stages; text features need pp=1")
    n = labels.shape[0]
    target = torch.cat([labels.reshape(n, -1).to(torch.float32), weights.reshape(n, 1)], dim=1)
    if n < rows:
        pad = rows - n
        features = torch.cat([features, features[:1].expand(pad, *features.shape[1:])])
        filler = target[:1].clone()
        filler[:, -1] = 0.0
        target = torch.cat([target, filler.expand(pad, -1)])
    return features, target


def make_loss_fn(loss: LossName, dp: int, global_rows: Callable[[], int]
                 ) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """The per-microbatch loss: its rows' share of the step's global mean loss, scaled by
    ``dp`` because data-parallel gradient reduction averages over the replicas."""

    def loss_fn(outputs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        labels, weights = target[:, :-1], target[:, -1]
        if loss is LossName.CROSS_ENTROPY:
            labels = labels[:, 0].to(torch.int64)
        rows_loss = per_row_loss(loss, outputs, labels)
        return (rows_loss * weights).sum() * (dp / max(1, global_rows()))

    return loss_fn


class PipelineRunner:
    """One rank's stage and schedule. ``train_step``/``evaluate`` are collective over the
    pipeline group: every stage calls them for the same batch."""

    def __init__(self, stage_module: nn.Module, *, stage: int, stages: int,
                 device: torch.device, group: dist.ProcessGroup, schedule: str,
                 microbatches: int, loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
                 ) -> None:
        # imported here: it pulls in torch._dynamo (~1.5 s a worker) that pp=1 never needs
        from torch.distributed.pipelining import PipelineStage, Schedule1F1B, ScheduleGPipe

        self.stage = PipelineStage(stage_module, stage, stages, device, group=group)
        kind = ScheduleGPipe if schedule == "gpipe" else Schedule1F1B
        self.schedule = kind(self.stage, microbatches, loss_fn=loss_fn, scale_grads=False)
        self.is_first, self.is_last = stage == 0, stage == stages - 1

    def _run(self, features: torch.Tensor, target: torch.Tensor, *, train: bool
             ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        run = self.schedule.step if train else self.schedule.eval
        losses: list[torch.Tensor] = []
        if self.is_first:
            run(features)
            return None, None
        if self.is_last:
            outputs = run(target=target, losses=losses)
            return outputs, torch.stack([x.detach() for x in losses]).sum()
        run()
        return None, None

    def train_step(self, features: torch.Tensor, target: torch.Tensor
                   ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """Forward and backward of every microbatch: (outputs, loss share) on the last stage,
        ``(None, None)`` elsewhere."""
        return self._run(features, target, train=True)

    def evaluate(self, features: torch.Tensor, target: torch.Tensor) -> torch.Tensor | None:
        """Forward only; the outputs on the last stage."""
        outputs, _ = self._run(features, target, train=False)
        return outputs
