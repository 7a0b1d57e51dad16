"""Pieces of the parallel layouts in one process: the pipeline's loss (a sum over microbatches
that equals the whole batch's weighted loss, padding rows free) and activation checkpointing."""

from __future__ import annotations

import pytest
import torch

from tailguard.train.batching import Batch
from tailguard.train.job import LossName
from tailguard.train.objectives import per_row_loss, step_loss
from tailguard.train.pipeline import make_loss_fn, pack_target


@pytest.mark.parametrize("loss", [LossName.CROSS_ENTROPY, LossName.MSE])
def test_microbatch_shares_sum_to_the_step_loss_and_padding_is_free(loss: LossName) -> None:
    torch.manual_seed(0)
    rows, dp, global_rows = 5, 2, 9  # a short last batch: this rank has 5 of 9 rows
    outputs = torch.randn(rows, 3)
    labels = (torch.randint(0, 3, (rows,)) if loss is LossName.CROSS_ENTROPY
              else torch.randn(rows, 3))
    batch = Batch(torch.randn(rows, 4), labels, torch.ones(rows))
    expected = step_loss(per_row_loss(loss, outputs, labels), batch.weights,
                         global_rows=global_rows, world_size=dp)

    features, target = pack_target(batch, 8)  # padded to the pipeline's 8-row shape
    assert features.shape == (8, 4) and target.shape[0] == 8
    assert torch.equal(target[rows:, -1], torch.zeros(3))
    padded_out = torch.cat([outputs, outputs[:1].expand(3, -1)])
    loss_fn = make_loss_fn(loss, dp, lambda: global_rows)
    shares = [loss_fn(o, t) for o, t in zip(padded_out.tensor_split(2), target.tensor_split(2),
                                            strict=True)]
    torch.testing.assert_close(sum(shares), expected)


def test_text_features_cannot_travel_between_stages() -> None:
    batch = Batch(["a", "b"], torch.zeros(2, dtype=torch.int64), torch.ones(2))
    with pytest.raises(TypeError, match="pp=1"):
        pack_target(batch, 2)


def test_activation_checkpointing_recomputes_blocks_with_the_same_gradients() -> None:
    from tailguard.train.builtin_models import Attention, build_module
    from tailguard.train.layout import ParallelSpec
    from tailguard.train.parallel import apply_parallel

    kwargs = {"in_features": 6, "out_features": 3, "dim": 8, "heads": 2, "layers": 2}
    calls = {"n": 0}
    original = Attention.forward

    def counted(self: Attention, x: torch.Tensor) -> torch.Tensor:
        calls["n"] += 1
        return original(self, x)

    grads = []
    x = torch.randn(4, 6)
    for ac in (False, True):
        torch.manual_seed(0)
        model = apply_parallel(build_module("transformer_classifier", kwargs),
                               ParallelSpec(activation_checkpointing=ac),
                               torch.device("cpu")).model
        calls["n"] = 0
        Attention.forward = counted  # type: ignore[method-assign]
        try:
            model(x).square().sum().backward()
        finally:
            Attention.forward = original  # type: ignore[method-assign]
        assert calls["n"] == (4 if ac else 2)  # 2 blocks, recomputed in backward under AC
        grads.append([p.grad for p in model.parameters()])
    for plain, recomputed in zip(*grads, strict=True):
        torch.testing.assert_close(plain, recomputed, rtol=0, atol=0)
