"""The MiniLM classifier's tensor-parallel plan: two gloo ranks compute the one-process
forward and gradients (heads split across ranks, Megatron column/row pairs per BERT layer)."""

from __future__ import annotations

import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

pytestmark = pytest.mark.timeout(180)

TEXTS = ["the cat sat on the mat", "stocks fell sharply today", "a goal in the last minute"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _rank_main(rank: int, port: int, out: dict[str, float]) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=2)
    torch.set_num_threads(1)
    try:
        from torch.distributed.device_mesh import init_device_mesh
        from torch.distributed.tensor import DTensor

        from tailguard.train.builtin_models import minilm_classifier
        from tailguard.train.parallel import apply_tp

        models = []
        for _ in range(2):
            torch.manual_seed(0)
            models.append(minilm_classifier(num_labels=3).eval())  # eval: no dropout
        plain, tp = models
        apply_tp(tp, init_device_mesh("cpu", (2,)))
        a, b = plain(TEXTS), tp(TEXTS)
        a.square().sum().backward()
        b.square().sum().backward()
        name = "encoder.encoder.layer.0.attention.self.query.weight"
        grad_tp = dict(tp.named_parameters())[name].grad
        assert isinstance(grad_tp, DTensor)
        grad_plain = dict(plain.named_parameters())[name].grad
        assert grad_plain is not None
        out_diff = float((a - b).abs().max())
        grad_diff = float((grad_tp.full_tensor() - grad_plain).abs().max())
        if rank == 0:
            out.update(out=out_diff, grad=grad_diff,
                       local_rows=float(grad_tp.to_local().shape[0]),
                       rows=float(grad_plain.shape[0]))
    finally:
        dist.destroy_process_group()


def test_minilm_tp2_matches_one_process() -> None:
    with mp.Manager() as manager:
        out = manager.dict()
        mp.spawn(_rank_main, args=(_free_port(), out), nprocs=2)
        result = dict(out)
    assert result["local_rows"] * 2 == result["rows"]  # each rank holds half the heads
    # float32 sums split in two halves (the row-wise all-reduce): rounding-level differences
    assert result["out"] < 1e-5 and result["grad"] < 1e-4, result
