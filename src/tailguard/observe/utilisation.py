"""Scrape-time utilisation gauges: replica busy fraction always, GPU where there is a signal.

``tailguard_replica_busy_fraction{deployment}`` is the time the deployment's replicas spent in
``predict`` over their wall time in the last ``window_s`` (10 s): the same measure as the
autoscaler snapshot's ``busy_ratio``. ``tailguard_gpu_utilization`` and
``tailguard_gpu_memory_fraction`` appear only for deployments whose replicas run on a GPU
(:class:`~tailguard.observe.gpu.GpuProbe`); elsewhere the series is absent, not zero.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from tailguard.observe.gpu import GpuSample

__all__ = ["BUSY_WINDOW_S", "Utilisation", "UtilisationCollector"]

BUSY_WINDOW_S = 10.0


@dataclass(frozen=True)
class Utilisation:
    deployment: str
    busy_fraction: float
    gpu: GpuSample | None = None


class UtilisationCollector(Collector):
    """Reads ``read()`` at each scrape, so the request path never updates a gauge."""

    def __init__(self, read: Callable[[], Iterable[Utilisation]]) -> None:
        self._read = read

    def collect(self) -> Iterable[GaugeMetricFamily]:
        busy = GaugeMetricFamily(
            "tailguard_replica_busy_fraction",
            f"Replica time in predict over wall time, last {BUSY_WINDOW_S:.0f} s",
            labels=["deployment"])
        util = GaugeMetricFamily("tailguard_gpu_utilization",
                                 "NVML utilisation of the GPUs the replicas run on (0-1)",
                                 labels=["deployment"])
        memory = GaugeMetricFamily("tailguard_gpu_memory_fraction",
                                   "GPU memory in use over total on the replicas' GPUs (0-1)",
                                   labels=["deployment"])
        for row in self._read():
            busy.add_metric([row.deployment], row.busy_fraction)
            if row.gpu is not None:
                util.add_metric([row.deployment], row.gpu.utilization)
                memory.add_metric([row.deployment], row.gpu.memory_fraction)
        yield busy
        if util.samples:
            yield util
            yield memory
