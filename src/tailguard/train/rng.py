"""The random number generators a training step may draw from, seeded once and checkpointed.

A step's randomness (dropout, augmentation, user code calling ``random``/``np.random``) comes
from the process-wide generators of torch (CPU and the current CUDA device), numpy's legacy
global ``RandomState`` and Python's ``random``. A worker seeds them once per attempt from
``(seed, step, rank)`` and every checkpoint stores their state per rank, so:

* resuming at the same world size restores each rank's generators exactly: the resumed run
  draws what the uninterrupted one drew (the issue asks for RNG states in checkpoints);
* resuming at another world size (an elastic shrink) cannot continue per-rank streams that no
  longer exist, so every rank reseeds from ``(seed, step, rank)``: deterministic for a given
  restart history, like the data order.

Reseeding every step instead (what the trainer did first) makes the state redundant but costs
~10 µs a step (``np.random.seed`` and ``random.seed`` rebuild 2.5 KB Mersenne states), a few
percent of a small model's step. :class:`RngState` is JSON-safe (bytes as base64) so it sits
next to ``trainer.json`` in a checkpoint.
"""

from __future__ import annotations

import base64
import random
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

RNG_VERSION = 1


def mix_seed(seed: int, step: int, rank: int) -> int:
    """A well-spread 32-bit seed from (seed, step, rank) (splitmix64-style constants)."""
    value = seed * 0x9E3779B97F4A7C15 + step * 0xBF58476D1CE4E5B9 + rank * 0x94D049BB133111EB
    return (value ^ (value >> 31)) % (2**32)


def seed_all(seed: int, step: int, rank: int, *, cuda: bool = False) -> None:
    """Seed every generator from (seed, step, rank)."""
    value = mix_seed(seed, step, rank)
    torch.default_generator.manual_seed(value)  # torch.manual_seed costs 100x more per call
    if cuda:
        torch.cuda.manual_seed(value)
    np.random.seed(value)
    random.seed(value)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text.encode("ascii"))


@dataclass(frozen=True)
class RngState:
    """One process's generator states, as JSON-safe values."""

    torch_cpu: str  # base64 of torch.get_rng_state()
    numpy_keys: str  # base64 of the MT19937 key (624 x uint32)
    numpy_pos: int
    numpy_has_gauss: int
    numpy_gauss: float
    python: list[int]  # random.getstate()[1]: 624 words + position
    python_gauss: float | None
    torch_cuda: str | None = None  # base64 of torch.cuda.get_rng_state() (current device)
    version: int = RNG_VERSION

    @classmethod
    def capture(cls, *, cuda: bool = False) -> RngState:
        name, keys, pos, has_gauss, gauss = np.random.get_state(legacy=True)
        if name != "MT19937":  # pragma: no cover - numpy's legacy state is always MT19937
            raise ValueError(f"unexpected numpy generator {name!r}")
        version, words, python_gauss = random.getstate()
        if version != 3:  # pragma: no cover - CPython's format since 3.2
            raise ValueError(f"unexpected random state version {version}")
        return cls(
            torch_cpu=_b64(torch.get_rng_state().numpy().tobytes()),
            numpy_keys=_b64(np.asarray(keys, dtype=np.uint32).tobytes()),
            numpy_pos=int(pos),
            numpy_has_gauss=int(has_gauss),
            numpy_gauss=float(gauss),
            python=[int(w) for w in words],
            python_gauss=python_gauss,
            torch_cuda=_b64(torch.cuda.get_rng_state().numpy().tobytes()) if cuda else None,
        )

    def restore(self, *, cuda: bool = False) -> None:
        torch.set_rng_state(torch.frombuffer(bytearray(_unb64(self.torch_cpu)),
                                             dtype=torch.uint8))
        if cuda and self.torch_cuda is not None:
            torch.cuda.set_rng_state(torch.frombuffer(bytearray(_unb64(self.torch_cuda)),
                                                      dtype=torch.uint8))
        keys = np.frombuffer(_unb64(self.numpy_keys), dtype=np.uint32).copy()
        np.random.set_state(("MT19937", keys, self.numpy_pos, self.numpy_has_gauss,
                             self.numpy_gauss))
        random.setstate((3, tuple(self.python), self.python_gauss))

    def state_dict(self) -> dict[str, Any]:
        return {
            "torch_cpu": self.torch_cpu, "numpy_keys": self.numpy_keys,
            "numpy_pos": self.numpy_pos, "numpy_has_gauss": self.numpy_has_gauss,
            "numpy_gauss": self.numpy_gauss, "python": self.python,
            "python_gauss": self.python_gauss, "torch_cuda": self.torch_cuda,
            "version": self.version,
        }

    @classmethod
    def from_state_dict(cls, data: dict[str, Any]) -> RngState:
        if data.get("version") != RNG_VERSION:
            raise ValueError(f"RNG state version {data.get('version')!r} is not {RNG_VERSION}")
        return cls(**data)
