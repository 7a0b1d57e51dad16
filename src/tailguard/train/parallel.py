"""Data parallelism, applied to a built module — model code never imports torch.distributed.

Order (one place, :func:`apply_parallel`): build the module on CPU with the job's seed, move it
to the worker's device, then wrap it with DDP or shard it with FSDP2 (``fully_shard``). The
optimiser is created *after* this, over the wrapped module's parameters (FSDP2 replaces them
with sharded DTensors).
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.device_mesh import DeviceMesh, init_device_mesh
from torch.distributed.fsdp import fully_shard
from torch.nn.parallel import DistributedDataParallel

from tailguard.train.job import ParallelKind


def apply_ddp(model: nn.Module, device: torch.device) -> nn.Module:
    """Replicate ``model`` on every rank; gradients are averaged in ``backward``."""
    if device.type == "cuda":
        return DistributedDataParallel(model, device_ids=[device.index])
    return DistributedDataParallel(model)


def _shard_units(model: nn.Module) -> Iterator[nn.Module]:
    """Modules sharded as one unit: every entry of every ``ModuleList`` (transformer blocks);
    for models without one, every direct child that holds parameters."""
    lists = [m for m in model.modules() if isinstance(m, nn.ModuleList)]
    if lists:
        for module_list in lists:
            yield from module_list
        return
    for child in model.children():
        if any(True for _ in child.parameters()):
            yield child


def apply_fsdp(model: nn.Module, mesh: DeviceMesh) -> nn.Module:
    """Shard parameters, gradients and optimiser state over ``mesh`` (FSDP2), block by block,
    then the root so the remaining parameters are sharded too."""
    for unit in list(_shard_units(model)):
        fully_shard(unit, mesh=mesh)
    fully_shard(model, mesh=mesh)
    return model


def apply_parallel(model: nn.Module, kind: ParallelKind, device: torch.device) -> nn.Module:
    model = model.to(device)
    if not dist.is_initialized() or (dist.get_world_size() == 1 and kind is ParallelKind.DDP):
        return model  # one process: nothing to average, skip the wrapper's overhead
    if kind is ParallelKind.DDP:
        return apply_ddp(model, device)
    mesh = init_device_mesh(device.type, (dist.get_world_size(),))
    return apply_fsdp(model, mesh)


def unwrap(model: nn.Module) -> nn.Module:
    """The user's module inside a DDP wrapper (FSDP2 shards in place, nothing to unwrap)."""
    inner = model.module if isinstance(model, DistributedDataParallel) else model
    assert isinstance(inner, nn.Module)
    return inner
