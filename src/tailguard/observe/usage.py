"""Usage metering per tenant and deployment: requests, rows, replica-seconds, rejections.

Replica-seconds are attributed by each tenant's share of the rows of every batch: a batch of
48 rows that took 60 ms on a replica, 12 of them tenant A's, charges A 15 replica-ms. Counts
live in memory (for ``GET /v1/usage``) and in Prometheus counters labelled by tenant.
"""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import asdict, dataclass

from prometheus_client import CollectorRegistry, Counter


@dataclass
class Usage:
    """Totals of one (tenant, deployment) pair since the server started."""

    requests: int = 0
    ok: int = 0
    errors: int = 0
    rows: int = 0
    replica_seconds: float = 0.0
    throttled: int = 0  # 429 rate limit or concurrency cap
    shed: int = 0  # 429 predicted to miss its SLO


class UsageMeter:
    """Accumulates usage; thread-unsafe by design (the gateway's event loop owns it)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.since = time.time()
        self._usage: dict[tuple[str, str], Usage] = defaultdict(Usage)
        self._requests = Counter("tailguard_tenant_requests", "Requests by tenant and outcome",
                                 ["tenant", "deployment", "status"], registry=registry)
        self._rows = Counter("tailguard_tenant_rows", "Rows served by tenant",
                             ["tenant", "deployment"], registry=registry)
        self._replica_s = Counter("tailguard_tenant_replica_seconds",
                                  "Replica busy time attributed to a tenant by its rows",
                                  ["tenant", "deployment"], registry=registry)
        self._rejected = Counter("tailguard_tenant_rejections",
                                 "Requests refused by admission control, by reason",
                                 ["tenant", "deployment", "reason"], registry=registry)
        self._children: dict[tuple[str, ...], object] = {}

    def _child(self, counter: Counter, *labels: str) -> Counter:
        key = (counter._name, *labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = counter.labels(*labels)
        return child  # type: ignore[return-value]

    def request(self, tenant: str, deployment: str, status: int, rows: int) -> None:
        usage = self._usage[tenant, deployment]
        usage.requests += 1
        if status == 200:
            usage.ok += 1
            usage.rows += rows
            self._child(self._rows, tenant, deployment).inc(rows)
        else:
            usage.errors += 1
        self._child(self._requests, tenant, deployment, str(status)).inc()

    def rejected(self, tenant: str, deployment: str, reason: str) -> None:
        usage = self._usage[tenant, deployment]
        if reason == "shed":
            usage.shed += 1
        else:
            usage.throttled += 1
        self._child(self._rejected, tenant, deployment, reason).inc()

    def charge(self, tenant: str, deployment: str, replica_seconds: float) -> None:
        self._usage[tenant, deployment].replica_seconds += replica_seconds
        self._child(self._replica_s, tenant, deployment).inc(replica_seconds)

    def report(self, tenant: str | None = None) -> list[dict[str, object]]:
        """Rows of usage, for one tenant or (``None``) all of them."""
        return [
            {"tenant": t, "deployment": d, **asdict(u)}
            for (t, d), u in sorted(self._usage.items())
            if tenant is None or t == tenant
        ]
