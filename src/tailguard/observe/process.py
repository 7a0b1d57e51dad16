"""Process CPU and memory: the gateway's own and each local replica's.

The gateway's registry gets prometheus-client's :class:`ProcessCollector` (``process_*``, as
every Prometheus client exports); replicas are separate processes, so each scrape runs the same
collector against each ready local replica's pid and renames its series::

    tailguard_replica_cpu_seconds_total{deployment="minilm",pid="4242"}
    tailguard_replica_resident_memory_bytes{deployment="minilm",pid="4242"}

Only replicas on this machine are read (``/proc``); a Ray actor's pid names a process on its
own node, so Ray deployments are left out rather than misread. A replica that exits between
the listing and the read simply has no series this scrape.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

from prometheus_client import ProcessCollector
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

__all__ = ["ReplicaProcessCollector"]

# ProcessCollector's metric (without namespace) -> ours, and whether it is a counter
_RENAMED = {
    "process_cpu_seconds": ("tailguard_replica_cpu_seconds",
                            "CPU time (user + system) of a local replica process", True),
    "process_resident_memory_bytes": ("tailguard_replica_resident_memory_bytes",
                                      "Resident memory of a local replica process", False),
    "process_open_fds": ("tailguard_replica_open_fds",
                         "Open file descriptors of a local replica process", False),
}


class ReplicaProcessCollector(Collector):
    """``read()`` yields (deployment, pid) of the ready replicas on this machine."""

    def __init__(self, read: Callable[[], Iterable[tuple[str, int]]]) -> None:
        self._read = read

    def describe(self) -> list[Metric]:
        return []  # families depend on the replicas present at scrape time

    def collect(self) -> Iterator[Metric]:
        families: dict[str, CounterMetricFamily | GaugeMetricFamily] = {}
        for name, (ours, doc, counter) in _RENAMED.items():
            cls = CounterMetricFamily if counter else GaugeMetricFamily
            families[name] = cls(ours, doc, labels=["deployment", "pid"])
        for deployment, pid in self._read():
            probe = ProcessCollector(namespace="", pid=lambda p=pid: p, registry=None)  # type: ignore[misc]
            for metric in probe.collect():
                family = families.get(metric.name)
                if family is None:
                    continue
                for sample in metric.samples:
                    family.add_metric([deployment, str(pid)], sample.value)
        yield from families.values()
