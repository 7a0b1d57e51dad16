"""Prometheus metrics of the serving path. Names start with ``tailguard_``; base units."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

# Latency buckets from 0.5 ms to 60 s: fine where P99 objectives live (10 ms - 1 s).
LATENCY_BUCKETS = (
    0.0005, 0.001, 0.002, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.2,
    0.3, 0.5, 0.75, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0,
)
# `_created` series double the scrape size and no dashboard here uses them.
disable_created_metrics()

BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)


def latency_buckets(objectives_s: Iterable[float] = ()) -> tuple[float, ...]:
    """The default buckets plus an edge at every configured latency objective, so that a
    "within the objective" SLI is an exact bucket count (``le`` = the objective), not an
    interpolation between neighbours."""
    return tuple(sorted({*LATENCY_BUCKETS, *(round(float(o), 6) for o in objectives_s)}))


def outcome(status: int) -> str:
    """The ``outcome`` label of the latency histogram: a fast 429 or 5xx must not count as a
    fast success in a latency SLI. ``ok`` (2xx/3xx), ``shed`` (429: admission or quota said no),
    ``client_error`` (other 4xx), ``error`` (5xx)."""
    if status < 400:
        return "ok"
    if status == 429:
        return "shed"
    return "client_error" if status < 500 else "error"


class _GaugeCallback(Collector):
    """Gauges read at scrape time, so the request path never updates them."""

    def __init__(self, read: Callable[[], Iterable[tuple[str, int, int, int]]]) -> None:
        self._read = read

    def collect(self) -> Iterable[GaugeMetricFamily]:
        depth = GaugeMetricFamily("tailguard_queue_depth", "Rows waiting in the deployment queue",
                                  labels=["deployment"])
        ready = GaugeMetricFamily("tailguard_replicas_ready", "Replicas ready to serve",
                                  labels=["deployment"])
        desired = GaugeMetricFamily("tailguard_replicas_desired",
                                    "Replicas the deployment wants (the autoscaler's target)",
                                    labels=["deployment"])
        for name, queued_rows, ready_replicas, desired_replicas in self._read():
            depth.add_metric([name], queued_rows)
            ready.add_metric([name], ready_replicas)
            desired.add_metric([name], desired_replicas)
        yield depth
        yield ready
        yield desired


class _Filtered:
    """A read-only view of a registry that drops other tenants' series."""

    def __init__(self, registry: CollectorRegistry, tenant: str | None,
                 deployments: set[str] | None) -> None:
        self._registry = registry
        self._tenant = tenant
        self._deployments = deployments

    def _visible(self, labels: dict[str, str]) -> bool:
        if "tenant" in labels and labels["tenant"] != self._tenant:
            return False
        return not (self._deployments is not None and "deployment" in labels
                    and labels["deployment"] not in self._deployments)

    def collect(self) -> Iterable[Metric]:
        for metric in self._registry.collect():
            samples = [s for s in metric.samples if self._visible(s.labels)]
            if samples:
                copy = Metric(metric.name, metric.documentation, metric.type, metric.unit)
                copy.samples = samples
                yield copy


class ServeMetrics:
    """All serving metrics, in a registry of their own (one per server)."""

    def __init__(self, objectives_s: Iterable[float] = ()) -> None:
        """``objectives_s``: the latency objectives in seconds (deployments' and tenants'
        ``p99_ms``), each made a bucket edge of the request latency histogram."""
        self.registry = CollectorRegistry(auto_describe=True)
        self.latency_buckets = latency_buckets(objectives_s)
        r = self.registry
        self.requests = Counter("tailguard_requests", "Requests by deployment, protocol and status",
                                ["deployment", "protocol", "status"], registry=r)
        self.latency = Histogram("tailguard_request_duration_seconds",
                                 "End-to-end request latency in the gateway, by outcome",
                                 ["deployment", "protocol", "outcome"],
                                 buckets=self.latency_buckets, registry=r)
        self.queue_wait = Histogram("tailguard_queue_wait_seconds",
                                    "Time from enqueue to dispatch to a replica",
                                    ["deployment"], buckets=LATENCY_BUCKETS, registry=r)
        self.service = Histogram("tailguard_replica_service_seconds",
                                 "Batch time inside the replica (predict)",
                                 ["deployment"], buckets=LATENCY_BUCKETS, registry=r)
        self.batch_size = Histogram("tailguard_batch_size_rows", "Rows per dispatched batch",
                                    ["deployment"], buckets=BATCH_BUCKETS, registry=r)
        self.retries = Counter("tailguard_batch_retries", "Batches re-queued after a replica died",
                               ["deployment"], registry=r)
        self.restarts = Counter("tailguard_replica_restarts", "Replica restarts",
                                ["deployment"], registry=r)

    def watch(self, read: Callable[[], Iterable[tuple[str, int, int, int]]]) -> None:
        """Register the scrape-time gauges: ``read()`` yields (deployment, queued rows, ready
        replicas, desired replicas)."""
        self.registry.register(_GaugeCallback(read))

    def render(self, tenant: str | None = None, deployments: set[str] | None = None) -> bytes:
        """Prometheus text; with ``tenant``/``deployments``, only series they may see: a
        ``tenant`` label must match, a ``deployment`` label must be one of theirs."""
        if tenant is None and deployments is None:
            return generate_latest(self.registry)
        return generate_latest(_Filtered(self.registry, tenant, deployments))


class DeploymentMetrics:
    """Label-bound children for one deployment (label lookups kept off the hot path)."""

    def __init__(self, metrics: ServeMetrics, deployment: str) -> None:
        self.queue_wait = metrics.queue_wait.labels(deployment)
        self.service = metrics.service.labels(deployment)
        self.batch_size = metrics.batch_size.labels(deployment)
        self.retries = metrics.retries.labels(deployment)
        self.restarts = metrics.restarts.labels(deployment)
