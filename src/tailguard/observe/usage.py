"""Usage metering per tenant and deployment: requests, rows, replica-seconds, rejections, and
for speech the characters spoken and the seconds of audio returned.

Each request's latency (arrival to result, before the response is encoded) lands in
``tailguard_tenant_request_duration_seconds{tenant,deployment,outcome}``, with the gateway
histogram's buckets and outcome label, so a tenant's latency, availability and shed SLIs
(``tailguard alerts render``) read one consistent count, requests refused at admission
included.

Replica-seconds are attributed by each tenant's share of the rows of every batch: a batch of
48 rows that took 60 ms on a replica, 12 of them tenant A's, charges A 15 replica-ms. Counts
live in memory (for ``GET /v1/usage``) and in Prometheus counters labelled by tenant.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram

from tailguard.observe.metrics import LATENCY_BUCKETS, outcome


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
    characters: int = 0  # text spoken (speech deployments)
    audio_seconds: float = 0.0  # audio returned (speech deployments)


class _Account:
    """One (tenant, deployment): its totals and its Prometheus children, bound once."""

    __slots__ = ("audio_s", "by_status", "characters", "latency", "rejected", "replica_s", "rows",
                 "usage")

    def __init__(self, meter: UsageMeter, tenant: str, deployment: str) -> None:
        self.usage = Usage()
        self.rows = meter._rows.labels(tenant, deployment)
        self.replica_s = meter._replica_s.labels(tenant, deployment)
        self.characters: Any = None  # bound on the first speech request: most never speak
        self.audio_s: Any = None
        self.by_status: dict[int, Any] = {}
        self.rejected: dict[str, Any] = {}
        self.latency: dict[int, Any] = {}  # status -> the histogram child of its outcome


class UsageMeter:
    """Accumulates usage; thread-unsafe by design (the gateway's event loop owns it)."""

    def __init__(self, registry: CollectorRegistry,
                 latency_buckets: Sequence[float] = LATENCY_BUCKETS) -> None:
        """``latency_buckets``: the gateway histogram's (an edge at every objective)."""
        self.since = time.time()
        self._accounts: dict[tuple[str, str], _Account] = {}
        self._requests = Counter("tailguard_tenant_requests", "Requests by tenant and outcome",
                                 ["tenant", "deployment", "status"], registry=registry)
        self._rows = Counter("tailguard_tenant_rows", "Rows served by tenant",
                             ["tenant", "deployment"], registry=registry)
        self._replica_s = Counter("tailguard_tenant_replica_seconds",
                                  "Replica busy time attributed to a tenant by its rows",
                                  ["tenant", "deployment"], registry=registry)
        self._characters = Counter("tailguard_tenant_speech_characters",
                                   "Characters of text spoken for a tenant",
                                   ["tenant", "deployment"], registry=registry)
        self._audio_s = Counter("tailguard_tenant_audio_seconds",
                                "Seconds of audio synthesised for a tenant",
                                ["tenant", "deployment"], registry=registry)
        self._rejected = Counter("tailguard_tenant_rejections",
                                 "Requests refused by admission control, by reason",
                                 ["tenant", "deployment", "reason"], registry=registry)
        self._latency = Histogram("tailguard_tenant_request_duration_seconds",
                                  "End-to-end request latency by tenant and outcome",
                                  ["tenant", "deployment", "outcome"],
                                  buckets=latency_buckets, registry=registry)

    def _account(self, tenant: str, deployment: str) -> _Account:
        account = self._accounts.get((tenant, deployment))
        if account is None:
            account = self._accounts[tenant, deployment] = _Account(self, tenant, deployment)
        return account

    def request(self, tenant: str, deployment: str, status: int, rows: int,
                latency_s: float | None = None) -> None:
        """One admitted request ended with ``status``; with ``latency_s``, also one of the
        tenant's latency histogram (one account lookup for both)."""
        account = self._account(tenant, deployment)
        if latency_s is not None:
            self._observe(account, tenant, deployment, status, latency_s)
        usage = account.usage
        usage.requests += 1
        if status == 200:
            usage.ok += 1
            usage.rows += rows
            account.rows.inc(rows)
        else:
            usage.errors += 1
        child = account.by_status.get(status)
        if child is None:
            child = account.by_status[status] = self._requests.labels(
                tenant, deployment, str(status))
        child.inc()

    def finished(self, tenant: str, deployment: str, status: int, latency_s: float) -> None:
        """One request of ``tenant`` ended with ``status`` after ``latency_s`` (admitted or
        not: a refusal is a request of the tenant's shed and latency SLIs too)."""
        self._observe(self._account(tenant, deployment), tenant, deployment, status, latency_s)

    def _observe(self, account: _Account, tenant: str, deployment: str, status: int,
                 latency_s: float) -> None:
        child = account.latency.get(status)
        if child is None:
            child = account.latency[status] = self._latency.labels(
                tenant, deployment, outcome(status))
        child.observe(latency_s)

    def rejected(self, tenant: str, deployment: str, reason: str) -> None:
        account = self._account(tenant, deployment)
        if reason == "shed":
            account.usage.shed += 1
        else:
            account.usage.throttled += 1
        child = account.rejected.get(reason)
        if child is None:
            child = account.rejected[reason] = self._rejected.labels(tenant, deployment, reason)
        child.inc()

    def charge(self, tenant: str, deployment: str, replica_seconds: float) -> None:
        account = self._account(tenant, deployment)
        account.usage.replica_seconds += replica_seconds
        account.replica_s.inc(replica_seconds)

    def speech(self, tenant: str, deployment: str, characters: int, audio_s: float) -> None:
        """A served speech request: the text it spoke and the audio it returned."""
        account = self._account(tenant, deployment)
        if account.characters is None:
            account.characters = self._characters.labels(tenant, deployment)
            account.audio_s = self._audio_s.labels(tenant, deployment)
        account.usage.characters += characters
        account.usage.audio_seconds += audio_s
        account.characters.inc(characters)
        account.audio_s.inc(audio_s)

    def report(self, tenant: str | None = None) -> list[dict[str, object]]:
        """Rows of usage, for one tenant or (``None``) all of them."""
        return [
            {"tenant": t, "deployment": d, **asdict(a.usage)}
            for (t, d), a in sorted(self._accounts.items())
            if tenant is None or t == tenant
        ]
