"""GPU utilisation and memory of a deployment's replicas, from NVML (``nvidia-ml-py``).

A signal beside the replicas' busy fraction, for the autoscaler and ``/metrics``. It is
*optional* in every sense: no ``pynvml`` module, no NVIDIA driver, no GPU, or a deployment
none of whose replica processes holds a GPU context — each gives ``None`` (the signal is
missing), never an error. A GPU counts for a deployment when one of its replica pids runs on
it, so a CPU model on a GPU machine gets no GPU signal rather than a neighbour's.

    probe = GpuProbe()
    probe.sample([pid1, pid2])  # GpuSample(utilization=0.62, memory_fraction=0.40, devices=1)

NVML's utilisation is the share of the last sample period (1/6 s to 1 s, by device) in which
a kernel ran: coarse, and a full device can still take more work, which is why the ``slo``
policy uses it only to refuse removing capacity, never to add it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

__all__ = ["GpuProbe", "GpuSample"]

log = logging.getLogger("tailguard.gpu")


@dataclass(frozen=True)
class GpuSample:
    """Mean utilisation (0-1) and memory in use over total (0-1) of the devices sampled."""

    utilization: float
    memory_fraction: float
    devices: int


class GpuProbe:
    """Reads NVML when it can; ``available`` says whether it could initialise at all.

    ``nvml`` replaces the ``pynvml`` module (tests pass a fake one)."""

    def __init__(self, nvml: Any | None = None) -> None:
        self._nvml: Any = nvml
        self._handles: list[Any] | None = None
        self._failed = False

    def _init(self) -> list[Any] | None:
        if self._handles is not None or self._failed:
            return self._handles
        try:
            if self._nvml is None:
                import pynvml

                self._nvml = pynvml
            self._nvml.nvmlInit()
            count = int(self._nvml.nvmlDeviceGetCount())
            self._handles = [self._nvml.nvmlDeviceGetHandleByIndex(i) for i in range(count)]
        except Exception as exc:  # no module, no library, no driver: the signal is absent
            log.debug("no GPU signal: %s", exc)
            self._failed = True
            return None
        return self._handles

    @property
    def available(self) -> bool:
        return bool(self._init())

    def _pids_on(self, handle: Any) -> set[int]:
        nvml = self._nvml
        pids: set[int] = set()
        for query in ("nvmlDeviceGetComputeRunningProcesses",
                      "nvmlDeviceGetGraphicsRunningProcesses"):
            try:
                pids.update(int(p.pid) for p in getattr(nvml, query)(handle))
            except Exception:  # not supported on this device/driver: use what the other says
                continue
        return pids

    def sample(self, pids: Iterable[int] | None = None) -> GpuSample | None:
        """The devices running any of ``pids`` (every device when ``None``), or ``None``."""
        handles = self._init()
        if not handles:
            return None
        wanted = None if pids is None else {int(p) for p in pids}
        if wanted is not None and not wanted:
            return None
        util: list[float] = []
        memory: list[float] = []
        try:
            for handle in handles:
                if wanted is not None and not (self._pids_on(handle) & wanted):
                    continue
                util.append(float(self._nvml.nvmlDeviceGetUtilizationRates(handle).gpu) / 100)
                info = self._nvml.nvmlDeviceGetMemoryInfo(handle)
                memory.append(float(info.used) / float(info.total) if info.total else 0.0)
        except Exception as exc:  # a device lost mid-read (reset, fallen off the bus)
            log.warning("GPU signal unreadable: %s", exc)
            return None
        if not util:
            return None
        return GpuSample(min(max(sum(util) / len(util), 0.0), 1.0),
                         min(max(sum(memory) / len(memory), 0.0), 1.0), len(util))
