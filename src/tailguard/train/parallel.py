"""Parallelism, applied to a built module — model code never imports torch.distributed.

One order, in :func:`apply_parallel` (torchtitan's):

1. build the whole module on CPU with the job's seed (identical weights on every rank);
2. **pipeline split** (``pp > 1``): keep this rank's stage, the other layers become identities
   (``model_plans.split_stage``), so parameter names are the whole model's in every layout;
3. move to the worker's device;
4. **tensor parallel** (``tp > 1``): ``parallelize_module`` over the mesh's ``tp`` dimension
   with the model's plan (``model_plans.tp_plan``);
5. **activation checkpointing** where asked, per block;
6. **data parallel**: FSDP2 (``fully_shard``) over the ``dp`` dimension — on top of TP that is
   2-D sharding — or DDP when every rank is a replica (``tp = pp = 1``);
7. the pipeline stage and schedule over the ``pp`` dimension (``pipeline.PipelineRunner``).

The optimiser is created *after* this, over the wrapped module's parameters (FSDP2 and TP
replace them with DTensors). The mesh is ``(pp, dp, tp)``, see ``tailguard.train.layout``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn
from torch.distributed._composable.checkpoint_activation import checkpoint
from torch.distributed.device_mesh import DeviceMesh, init_device_mesh
from torch.distributed.fsdp import fully_shard
from torch.distributed.tensor import DTensor
from torch.distributed.tensor.parallel import parallelize_module
from torch.nn.parallel import DistributedDataParallel

from tailguard.train.layout import Coords, Layout, ParallelSpec
from tailguard.train.model_plans import split_stage, tp_plan
from tailguard.train.pipeline import PipelineRunner

MESH_DIMS = ("pp", "dp", "tp")
LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def apply_ddp(model: nn.Module, device: torch.device) -> nn.Module:
    """Replicate ``model`` on every rank; gradients are averaged in ``backward``."""
    if device.type == "cuda":
        return DistributedDataParallel(model, device_ids=[device.index])
    return DistributedDataParallel(model)


def _blocks(model: nn.Module) -> Iterator[nn.Module]:
    """Units sharded (and checkpointed) as one: every entry of every ``ModuleList``
    (transformer blocks); for models without one, every direct child that holds parameters.
    Layers of other pipeline stages (identities, no parameters) are skipped."""
    lists = [m for m in model.modules() if isinstance(m, nn.ModuleList)]
    units = ([u for module_list in lists for u in module_list] if lists
             else list(model.children()))
    for unit in units:
        if any(True for _ in unit.parameters()):
            yield unit


def apply_tp(model: nn.Module, mesh: DeviceMesh) -> nn.Module:
    """Shard the model's projections over ``mesh`` (1-D, the TP ranks) by its plan."""
    return parallelize_module(model, mesh, tp_plan(model, mesh.size()))


def apply_ac(model: nn.Module) -> nn.Module:
    """Recompute each block's activations in backward instead of keeping them (composable
    ``checkpoint``: parameter names unchanged, so checkpoints are unaffected)."""
    for unit in list(_blocks(model)):
        checkpoint(unit)
    return model


def apply_fsdp(model: nn.Module, mesh: DeviceMesh) -> nn.Module:
    """Shard parameters, gradients and optimiser state over ``mesh`` (FSDP2), block by block,
    then the root so the remaining parameters are sharded too."""
    for unit in list(_blocks(model)):
        fully_shard(unit, mesh=mesh)
    fully_shard(model, mesh=mesh)
    return model


@dataclass
class Parallelized:
    """This rank's part of the model and where it sits."""

    model: nn.Module
    layout: Layout
    coords: Coords
    mesh: DeviceMesh | None = None
    pipeline: PipelineRunner | None = None


def build_mesh(layout: Layout, device: torch.device) -> DeviceMesh:
    return init_device_mesh(device.type, layout.shape, mesh_dim_names=MESH_DIMS)


def apply_parallel(model: nn.Module, spec: ParallelSpec, device: torch.device, *,
                   loss_fn: LossFn | None = None) -> Parallelized:
    """Apply ``spec`` in the documented order; ``loss_fn`` is the pipeline's (``pp > 1``)."""
    world = dist.get_world_size() if dist.is_initialized() else 1
    rank = dist.get_rank() if dist.is_initialized() else 0
    layout = spec.layout(world)
    coords = layout.coords(rank)
    if layout.pp > 1:
        model = split_stage(model, coords.pp, layout.pp)
    model = model.to(device)
    if not dist.is_initialized() or (world == 1 and not spec.fsdp):
        # one process: nothing to split or average, skip the wrappers' overhead
        return Parallelized(apply_ac(model) if spec.activation_checkpointing else model,
                            layout, coords)
    mesh = build_mesh(layout, device)
    if layout.tp > 1:
        model = apply_tp(model, mesh["tp"])
    if spec.activation_checkpointing:
        model = apply_ac(model)
    if spec.fsdp:
        model = apply_fsdp(model, mesh["dp"])
    elif layout.dp > 1:  # tp = pp = 1 (ParallelSpec.check refuses DDP with either)
        model = apply_ddp(model, device)
    pipeline = None
    if layout.pp > 1:
        if loss_fn is None:
            raise ValueError("a pipeline needs the loss function")
        pipeline = PipelineRunner(model, stage=coords.pp, stages=layout.pp, device=device,
                                  group=mesh["pp"].get_group(), schedule=spec.schedule,
                                  microbatches=spec.n_microbatches, loss_fn=loss_fn)
    return Parallelized(model, layout, coords, mesh, pipeline)


def unwrap(model: nn.Module) -> nn.Module:
    """The user's module inside a DDP wrapper (FSDP2 shards in place, nothing to unwrap)."""
    inner = model.module if isinstance(model, DistributedDataParallel) else model
    assert isinstance(inner, nn.Module)
    return inner


def _local_bytes(tensor: torch.Tensor) -> int:
    local = tensor.to_local() if isinstance(tensor, DTensor) else tensor
    return local.numel() * local.element_size()


def rank_memory(model: nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, int]:
    """Bytes this rank holds for parameters, gradients and optimiser state (measured from the
    local shards, so what sharding and splitting save is what shows)."""
    params = list(model.parameters())
    optim = sum(_local_bytes(v) for state in optimizer.state.values()
                for v in state.values() if isinstance(v, torch.Tensor) and v.dim() > 0)
    return {"param_bytes": sum(_local_bytes(p) for p in params),
            "grad_bytes": sum(_local_bytes(p.grad) for p in params if p.grad is not None),
            "optim_bytes": optim}
