"""How each built-in model splits: tensor-parallel plans and pipeline stages.

They live beside the builders (``builtin_models``), not in the trainer, and the model code
itself never imports torch.distributed: :func:`tp_plan` returns a
``parallelize_module`` plan (Megatron-style pairs: a ``ColwiseParallel`` projection whose
output stays sharded, then a ``RowwiseParallel`` one that sums it back to a replicated
tensor, one all-reduce per pair), and :func:`split_stage` turns a built module into one
pipeline stage by replacing the layers of the other stages with ``nn.Identity`` — the
parameter names stay those of the whole model, so a DCP checkpoint written at one layout
loads at any other, and the exported artifact is the plain module.

- ``mlp`` (``nn.Sequential``): Linear layers alternate column/row-wise; an odd last one is
  column-wise and gathers its output. Stages split at Linear boundaries.
- ``transformer_classifier``: per block, q/k/v and ``fc1`` column-wise, ``o`` and ``fc2``
  row-wise (heads split across ranks); embed and head replicated. Stages: embed, blocks, head.
- ``minilm_classifier``: the same per BERT layer. Not pipelined: its forward tokenises
  strings, and a pipeline moves tensors between stages.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.distributed.tensor import Replicate
from torch.distributed.tensor.parallel import ColwiseParallel, ParallelStyle, RowwiseParallel

from tailguard.train.builtin_models import (
    Block,
    TextClassifier,
    TransformerClassifier,
    build_module,
)
from tailguard.train.layout import ParallelSpec

Plan = dict[str, ParallelStyle]


class PlanError(ValueError):
    """The model cannot be split as asked; the message says what to change."""


def _check_divides(what: str, size: int, tp: int) -> None:
    if size % tp:
        raise PlanError(f"tp={tp} does not divide {what} ({size}); choose a tp that does")


def _mlp_plan(model: nn.Sequential, tp: int) -> Plan:
    linears = [(name, m) for name, m in model.named_children() if isinstance(m, nn.Linear)]
    plan: Plan = {}
    for i, (name, layer) in enumerate(linears):
        if i % 2 == 0:
            _check_divides(f"Linear {name}'s out_features", layer.out_features, tp)
            last = i == len(linears) - 1
            # an unpaired last projection gathers its shards: the loss needs whole rows
            plan[name] = ColwiseParallel(output_layouts=Replicate()) if last else ColwiseParallel()
        else:
            plan[name] = RowwiseParallel()
    return plan


def _transformer_plan(model: TransformerClassifier, tp: int) -> Plan:
    plan: Plan = {}
    for i, block in enumerate(model.blocks):
        if not isinstance(block, Block):
            continue  # another pipeline stage's block (an identity here)
        heads = block.attn.q.out_features // block.attn.head_dim
        _check_divides("the number of attention heads", heads, tp)
        _check_divides("the MLP width", block.fc1.out_features, tp)
        for proj in ("q", "k", "v"):
            plan[f"blocks.{i}.attn.{proj}"] = ColwiseParallel()
        plan[f"blocks.{i}.attn.o"] = RowwiseParallel()
        plan[f"blocks.{i}.fc1"] = ColwiseParallel()
        plan[f"blocks.{i}.fc2"] = RowwiseParallel()
    return plan


def _minilm_plan(model: TextClassifier, tp: int) -> Plan:
    config = model.encoder.config
    _check_divides("the number of attention heads", int(config.num_attention_heads), tp)
    _check_divides("the intermediate size", int(config.intermediate_size), tp)
    plan: Plan = {}
    for i in range(len(model.encoder.encoder.layer)):
        prefix = f"encoder.encoder.layer.{i}"
        for proj in ("query", "key", "value"):
            plan[f"{prefix}.attention.self.{proj}"] = ColwiseParallel()
        plan[f"{prefix}.attention.output.dense"] = RowwiseParallel()
        plan[f"{prefix}.intermediate.dense"] = ColwiseParallel()
        plan[f"{prefix}.output.dense"] = RowwiseParallel()
    return plan


def tp_plan(model: nn.Module, tp: int) -> Plan:
    """The ``parallelize_module`` plan of a built-in model at degree ``tp``."""
    if isinstance(model, TransformerClassifier):
        return _transformer_plan(model, tp)
    if isinstance(model, TextClassifier):
        return _minilm_plan(model, tp)
    if isinstance(model, nn.Sequential):
        return _mlp_plan(model, tp)
    raise PlanError(f"no tensor-parallel plan for {type(model).__name__}: tp > 1 supports the "
                    "built-ins mlp, transformer_classifier and minilm_classifier")


_NO_TEXT_PIPELINE = ("minilm_classifier cannot be pipelined (its forward tokenises strings; "
                     "stages exchange tensors): use tp and/or dp with fsdp")

# A pipeline "slot": a parent module and the child name holding one layer (or layer group).
Slot = tuple[nn.Module, str]


def _mlp_slots(model: nn.Sequential) -> list[list[Slot]]:
    """Each Linear with the activations/dropout after it: the cuts fall between Linears."""
    groups: list[list[Slot]] = []
    for name, child in model.named_children():
        if isinstance(child, nn.Linear) or not groups:
            groups.append([])
        groups[-1].append((model, name))
    return groups


def _pipeline_slots(model: nn.Module) -> list[list[Slot]]:
    if isinstance(model, TransformerClassifier):
        blocks: list[list[Slot]] = [[(model.blocks, str(i))] for i in range(len(model.blocks))]
        return [[(model, "embed")], *blocks, [(model, "head")]]
    if isinstance(model, TextClassifier):
        raise PlanError(_NO_TEXT_PIPELINE)
    if isinstance(model, nn.Sequential):
        return _mlp_slots(model)
    raise PlanError(f"no pipeline split for {type(model).__name__}: pp > 1 supports the "
                    "built-ins mlp and transformer_classifier")


def stage_bounds(layers: int, stages: int) -> list[tuple[int, int]]:
    """Contiguous ``[start, stop)`` layer ranges, as even as possible (earlier stages take
    the remainder: the last stage also computes the loss)."""
    if stages > layers:
        raise PlanError(f"pp={stages} stages but the model has {layers} layers to split; "
                        f"use pp <= {layers}")
    base, extra = divmod(layers, stages)
    bounds, start = [], 0
    for i in range(stages):
        stop = start + base + (1 if i < extra else 0)
        bounds.append((start, stop))
        start = stop
    return bounds


def split_stage(model: nn.Module, stage: int, stages: int) -> nn.Module:
    """``model`` as pipeline stage ``stage`` of ``stages``: the other stages' layers become
    identities (in place; the module's forward must be the chain of its layers)."""
    slots = _pipeline_slots(model)
    start, stop = stage_bounds(len(slots), stages)[stage]
    for i, group in enumerate(slots):
        if not start <= i < stop:
            for parent, name in group:
                setattr(parent, name, nn.Identity())
    return model


def num_layers(model: nn.Module) -> int:
    return len(_pipeline_slots(model))


def check_splittable(builder: str, kwargs: dict[str, object], spec: ParallelSpec) -> None:
    """Raise :class:`PlanError` (before any worker starts) when the model cannot be split as
    ``spec`` asks. Builds the module on the meta device: shapes only, no memory, no init."""
    if builder == "minilm_classifier":
        if spec.pp > 1:
            raise PlanError(_NO_TEXT_PIPELINE)
        return  # loading the encoder here would cost seconds; the workers check tp
    with torch.device("meta"):
        model = build_module(builder, kwargs)
    if spec.pp > 1:
        stage_bounds(len(_pipeline_slots(model)), spec.pp)
    if spec.tp > 1:
        tp_plan(model, spec.tp)
