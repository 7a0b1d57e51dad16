"""The parallel layout of a training job: how ``world_size`` ranks split the work.

``parallel`` in a job is either a shorthand (today's ``ddp`` / ``fsdp``: every rank is a
data-parallel replica) or a mapping::

    parallel: {dp: 2, tp: 2, pp: 1, fsdp: true}   # world_size must be dp * tp * pp = 4

- ``dp``: data-parallel replicas; each takes its own rows of the global batch. ``batch_size`` is
  per replica, so the global batch is ``batch_size * dp`` whatever ``tp`` and ``pp`` are.
- ``tp``: tensor-parallel degree; the ranks of one TP group hold slices of every weight matrix
  and see the same batch.
- ``pp``: pipeline stages; the layers are split by depth, each stage on its own rank, and a
  batch flows through them in ``microbatches`` (``schedule``: ``gpipe`` or ``1f1b``).
- ``fsdp``: shard parameters, gradients and optimiser state over the ``dp`` ranks (FSDP2);
  without it the replicas are DDP, which does not compose with ``tp``/``pp`` here.

Rank order (the DeviceMesh ``(pp, dp, tp)``): ``rank = (pp_i * dp + dp_i) * tp + tp_i`` — TP
innermost, so a TP group is adjacent ranks (on GPUs: the same NVLink island). This module is
pure (no torch) so the job spec, the engine and the unit tests share it.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class ParallelKind(StrEnum):
    """The string shorthands: all ranks data-parallel, replicated (DDP) or sharded (FSDP2)."""

    DDP = "ddp"
    FSDP = "fsdp"


class ParallelSpec(BaseModel):
    """A job's layout. ``dp=None`` means "whatever ``world_size`` leaves": the shorthands, and
    the only form an elastic job (``min_world_size``) can shrink."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    dp: int | None = Field(default=None, ge=1, description="data-parallel replicas")
    tp: int = Field(default=1, ge=1, description="tensor-parallel degree")
    pp: int = Field(default=1, ge=1, description="pipeline stages")
    fsdp: bool = Field(default=False, description="shard over the dp ranks (FSDP2)")
    schedule: Literal["gpipe", "1f1b"] = "1f1b"
    microbatches: int | None = Field(
        default=None, ge=1, description="per pipeline step; default: pp (each stage busy)")
    activation_checkpointing: bool = Field(
        default=False, description="recompute each block's activations in backward")

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, data: Any) -> Any:
        if isinstance(data, ParallelKind | str):
            try:
                kind = ParallelKind(data)
            except ValueError:
                raise ValueError(f"parallel {data!r}: use 'ddp', 'fsdp' or a mapping "
                                 "{dp: N, tp: M, pp: K, fsdp: true|false}") from None
            return {"fsdp": kind is ParallelKind.FSDP}
        return data

    @model_validator(mode="after")
    def _pipeline_fields(self) -> ParallelSpec:
        if self.pp == 1 and self.microbatches not in (None, 1):
            raise ValueError("parallel.microbatches only applies with pp > 1; remove it or set pp")
        return self

    @property
    def model_parallel(self) -> int:
        """Ranks one model replica spans (``tp * pp``)."""
        return self.tp * self.pp

    @property
    def n_microbatches(self) -> int:
        return self.microbatches or self.pp

    def data_parallel(self, world_size: int) -> int:
        return self.dp if self.dp is not None else world_size // self.model_parallel

    def check(self, world_size: int) -> None:
        """Raise ``ValueError`` saying what to change when the layout does not fit."""
        mp = self.model_parallel
        if self.dp is None:
            if world_size % mp:
                raise ValueError(
                    f"world_size {world_size} is not a multiple of tp*pp = {mp}; set "
                    f"world_size to a multiple of {mp} or change tp/pp")
        elif self.dp * mp != world_size:
            raise ValueError(
                f"parallel dp*tp*pp = {self.dp}*{self.tp}*{self.pp} = {self.dp * mp} ranks, "
                f"but world_size is {world_size}: set world_size: {self.dp * mp}, or dp: "
                + (f"{world_size // mp}" if world_size % mp == 0 else
                   f"(world_size must be a multiple of tp*pp = {mp})"))
        dp = self.data_parallel(world_size)
        if dp > 1 and mp > 1 and not self.fsdp:
            raise ValueError(
                f"dp={dp} replicas of a tp={self.tp}/pp={self.pp} model: set fsdp: true "
                "(DDP does not compose with tensor or pipeline parallel here; FSDP2 does)")

    def layout(self, world_size: int) -> Layout:
        self.check(world_size)
        return Layout(dp=self.data_parallel(world_size), tp=self.tp, pp=self.pp, fsdp=self.fsdp)

    def describe(self) -> str:
        """``ddp`` / ``fsdp`` for the shorthands, else e.g. ``dp2.tp2.fsdp``."""
        if self.model_parallel == 1 and self.dp is None and not self.activation_checkpointing:
            return ParallelKind.FSDP.value if self.fsdp else ParallelKind.DDP.value
        parts = [f"dp{self.dp}" if self.dp is not None else "dp*"]
        parts += [f"tp{self.tp}"] if self.tp > 1 else []
        parts += [f"pp{self.pp}"] if self.pp > 1 else []
        parts += ["fsdp"] if self.fsdp else []
        parts += ["ac"] if self.activation_checkpointing else []
        return ".".join(parts)


@dataclass(frozen=True)
class Coords:
    """One rank's place in the mesh."""

    pp: int
    dp: int
    tp: int


@dataclass(frozen=True)
class Layout:
    """A :class:`ParallelSpec` resolved at one world size."""

    dp: int
    tp: int
    pp: int
    fsdp: bool = False

    @property
    def world_size(self) -> int:
        return self.dp * self.tp * self.pp

    @property
    def shape(self) -> tuple[int, int, int]:
        """The DeviceMesh shape, dimensions named ``("pp", "dp", "tp")``."""
        return (self.pp, self.dp, self.tp)

    def coords(self, rank: int) -> Coords:
        if not 0 <= rank < self.world_size:
            raise ValueError(f"rank {rank} outside a world of {self.world_size}")
        tp = rank % self.tp
        dp = (rank // self.tp) % self.dp
        return Coords(pp=rank // (self.tp * self.dp), dp=dp, tp=tp)

    def owns_loss(self, rank: int) -> bool:
        """The rank that reports its replica's loss and metrics: the last pipeline stage's
        first TP rank (the other TP ranks hold the same values; earlier stages none)."""
        c = self.coords(rank)
        return c.pp == self.pp - 1 and c.tp == 0

    def name(self) -> str:
        return f"dp{self.dp}.tp{self.tp}.pp{self.pp}" + (".fsdp" if self.fsdp else "")
