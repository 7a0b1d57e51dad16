"""Admission control: rate limits, concurrency caps and deadline feasibility — pure functions.

The gateway calls :func:`admit` once per request after authentication, before enqueueing::

    snapshot = AdmissionSnapshot(
        rows_ahead_by_class=queue.rows_ahead_by_class(),
        service_rate_rows_per_s=measured_rows_per_s_per_replica,   # None until measured
        ready_replicas=3, inflight_rows=48, batch_service_s=0.012,
    )
    bucket = buckets.get(tenant.id) or initial_bucket(tenant, now)   # None: no rate limit
    request = RequestInfo.for_tenant(
        tenant, deadline_s=now + 0.1, tenant_inflight=inflight[tenant.id], bucket=bucket,
        rows_ahead=queue.rows_ahead(tenant.priority, tenant.id, rows=8, weight=tenant.weight),
    )
    decision = admit(request, snapshot, AdmissionConfig(), now)
    buckets[tenant.id] = decision.bucket          # a token is taken only when admitted
    if not decision.admitted:
        ...  # HTTP decision.status, Retry-After from decision.retry_after_s

Checks, in order (nothing is consumed by a rejected request):

1. deadline already passed -> 504 ``deadline``;
2. token bucket empty -> 429 ``rate_limited`` (Retry-After: when the next token arrives);
3. tenant at ``max_concurrency`` in-flight requests -> 429 ``concurrency``;
4. deadline feasibility -> 429 ``shed``: the request would finish after ``now +
   fraction * (deadline - now)``, where the fraction is per class (sheddable 0.5, standard
   1.0, critical never), so lower classes are shed first and earlier. The finish time is
   predicted from the rows that will be served before it, batch by batch on the replicas
   as they free (:func:`estimate_finish_batched`); a tenant whose rows drain at less than the
   full rate (``drain_rows_per_s``: others' later arrivals go ahead of it) has only its part of
   each batch. A fluid drain, :func:`estimate_finish`, when the snapshot has no per-replica
   view. With no
   measured service rate (cold start) or no ready replica, nothing is shed: availability is
   the gateway's 503, not admission's business.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum

from tailguard.serve.tenants import Priority, TenantSpec

__all__ = [
    "AdmissionConfig",
    "AdmissionSnapshot",
    "Decision",
    "RejectReason",
    "RequestInfo",
    "TokenBucket",
    "admit",
    "estimate_finish",
    "estimate_finish_batched",
    "initial_bucket",
    "take",
    "within_concurrency",
]


# ---------------------------------------------------------------------- token bucket


@dataclass(frozen=True)
class TokenBucket:
    """A token bucket's whole state: ``rate_per_s`` tokens/s refill continuously up to ``burst``.

    ``tokens`` is the level at ``updated_s``. Start a tenant with :meth:`full`.
    """

    rate_per_s: float
    burst: float
    tokens: float
    updated_s: float

    def __post_init__(self) -> None:
        if not (self.rate_per_s > 0 and math.isfinite(self.rate_per_s)):
            raise ValueError(f"rate_per_s must be a positive number, got {self.rate_per_s}")
        if not (self.burst > 0 and math.isfinite(self.burst)):
            raise ValueError(f"burst must be a positive number, got {self.burst}")
        if not 0 <= self.tokens <= self.burst:
            raise ValueError(f"tokens must be within [0, burst], got {self.tokens}")

    @classmethod
    def full(cls, rate_per_s: float, burst: float, now: float) -> TokenBucket:
        return cls(rate_per_s, burst, burst, now)

    def level(self, now: float) -> float:
        """Tokens available at ``now`` (a clock that went backwards refills nothing)."""
        elapsed = now - self.updated_s
        if elapsed <= 0:
            return self.tokens
        return min(self.burst, self.tokens + elapsed * self.rate_per_s)


def initial_bucket(tenant: TenantSpec, now: float) -> TokenBucket | None:
    """A full bucket with the tenant's rate and burst; None when it has no rate limit."""
    burst = tenant.effective_burst
    if tenant.rate_limit_rps is None or burst is None:
        return None
    return TokenBucket.full(tenant.rate_limit_rps, burst, now)


def take(bucket: TokenBucket, now: float, cost: float = 1.0) -> tuple[bool, TokenBucket, float]:
    """Try to take ``cost`` tokens at ``now``: ``(allowed, new_bucket, retry_after_s)``.

    When refused, the bucket is returned unchanged and ``retry_after_s`` says when ``cost``
    tokens will be there (``inf`` if ``cost`` exceeds ``burst``: it never will).
    """
    if cost < 0:
        raise ValueError(f"cost must be >= 0, got {cost}")
    tokens = bucket.level(now)
    if tokens >= cost:
        # updated_s never moves backwards, so a late timestamp cannot mint tokens later.
        after = replace(bucket, tokens=tokens - cost, updated_s=max(now, bucket.updated_s))
        return True, after, 0.0
    if cost > bucket.burst:
        return False, bucket, math.inf
    return False, bucket, (cost - tokens) / bucket.rate_per_s


# ---------------------------------------------------------------------- concurrency


def within_concurrency(inflight: int, max_concurrency: int | None) -> bool:
    """True when one more request fits under the cap (``None``: no cap)."""
    return max_concurrency is None or inflight < max_concurrency


# ---------------------------------------------------------------------- feasibility


def estimate_finish(
    now: float,
    rows_ahead: int,
    service_rate_rows_per_s: float,
    replicas: int,
    batch_service_s: float = 0.0,
    *,
    inflight_rows: int = 0,
    batch_wait_s: float = 0.0,
    drain_rows_per_s: float | None = None,
) -> float:
    """Predicted time a new request finishes (same clock as ``now``).

    The replicas first work off ``inflight_rows`` at ``service_rate_rows_per_s`` each (rows
    per second of one busy replica), and ``rows_ahead`` at ``drain_rows_per_s`` when given
    (what the request's tenant gets while others keep sending: see
    :class:`~tailguard.serve.demand.Demand`), else at the replicas' full rate; then the
    batcher may wait up to ``batch_wait_s`` to fill the request's batch, which takes
    ``batch_service_s``. Returns ``inf`` with no capacity (rate, replicas or drain rate not
    positive).
    """
    capacity = service_rate_rows_per_s * replicas
    drain = capacity if drain_rows_per_s is None else drain_rows_per_s
    if not capacity > 0 or not drain > 0:
        return math.inf
    drain_s = max(0, inflight_rows) / capacity + max(0, rows_ahead) / drain
    return now + drain_s + max(0.0, batch_wait_s) + max(0.0, batch_service_s)


def estimate_finish_batched(
    now: float,
    replica_free_in_s: Sequence[float],
    batches_before: int,
    full_batch_s: float,
    own_batch_s: float,
    *,
    batch_wait_s: float = 0.0,
) -> float:
    """Predicted finish of a request whose batch is the ``batches_before``-th to be formed
    from now (0: the next one), batch by batch.

    ``replica_free_in_s`` holds, per ready replica, the seconds until it takes its next batch
    (0 when idle). Each earlier batch goes to the replica free first and keeps it
    ``full_batch_s``; the request's own batch starts on the next free replica, after the
    batcher's ``batch_wait_s``, and takes ``own_batch_s``. Unlike a fluid drain of all rows
    at the total rate, this does not charge the request for rows that ride in its own batch,
    nor for the other replicas' work when one is about to free. Exact for the fixed batch
    length; a fluid mean beyond ``64`` batches per replica, where the two agree. ``inf``
    with no replica.
    """
    n = len(replica_free_in_s)
    if n == 0:
        return math.inf
    free = sorted(max(0.0, f) for f in replica_free_in_s)  # a sorted list is a heap
    k = max(0, batches_before)
    if k <= 64 * n:
        for _ in range(k):
            heapq.heapreplace(free, free[0] + max(0.0, full_batch_s))
        start = free[0]
    else:
        start = (sum(free) + k * max(0.0, full_batch_s)) / n
    return now + start + max(0.0, batch_wait_s) + max(0.0, own_batch_s)


@dataclass(frozen=True)
class AdmissionSnapshot:
    """What admission needs to know about a deployment, measured just now.

    ``rows_ahead_by_class``: queued rows served before a new request of each class (see
    ``FairQueue.rows_ahead_by_class``). ``service_rate_rows_per_s``: measured rows per second
    of ONE busy replica, None while nothing is measured (cold). ``batch_service_s``: recent
    service time of one batch (a typical value; a higher quantile sheds more eagerly).

    Batch-level model (used when ``replica_free_in_s`` and ``batch_rows`` are given, see
    :func:`estimate_finish_batched`): ``replica_free_in_s`` per ready replica, the seconds
    until it is free; ``batch_rows`` the rows of a full batch and ``full_batch_s`` its service
    time. Otherwise the fluid model of :func:`estimate_finish` (``inflight_rows``; the rows
    ahead drain at ``drain_rows_per_s``, or at the full rate when it is None).
    """

    rows_ahead_by_class: Mapping[Priority, int]
    service_rate_rows_per_s: float | None
    ready_replicas: int
    inflight_rows: int = 0
    batch_service_s: float | None = None
    replica_free_in_s: tuple[float, ...] | None = None
    batch_rows: int | None = None
    full_batch_s: float | None = None
    drain_rows_per_s: float | None = None

    @property
    def cold(self) -> bool:
        """True when feasibility cannot be judged: nothing measured or no replica ready."""
        rate = self.service_rate_rows_per_s
        return rate is None or not rate > 0 or self.ready_replicas <= 0


@dataclass(frozen=True)
class RequestInfo:
    """One request as admission sees it. ``deadline_s`` is absolute, on the clock of ``now``.

    ``tenant_inflight``: the tenant's requests admitted and not yet answered. ``bucket`` is the
    tenant's current token bucket (None: no rate limit). ``rows_ahead``, when given, is a
    tenant-aware estimate (``FairQueue.rows_ahead``) that replaces the class-level figure of
    the snapshot. The request's own rows need no field: its batch is ``batch_service_s``.
    """

    priority: Priority
    deadline_s: float
    tenant_inflight: int = 0
    max_concurrency: int | None = None
    bucket: TokenBucket | None = None
    rows_ahead: int | None = None
    rows: int = 1

    @classmethod
    def for_tenant(
        cls,
        tenant: TenantSpec,
        *,
        deadline_s: float,
        tenant_inflight: int,
        bucket: TokenBucket | None,
        rows_ahead: int | None = None,
        rows: int = 1,
    ) -> RequestInfo:
        """Fill priority and concurrency cap from the tenant's spec."""
        return cls(
            tenant.priority,
            deadline_s,
            tenant_inflight,
            tenant.max_concurrency,
            bucket,
            rows_ahead,
            rows,
        )


@dataclass(frozen=True)
class AdmissionConfig:
    """Deployment-wide admission policy.

    A request of a class is shed when its predicted time to finish exceeds that class's
    fraction of its remaining deadline budget (None: never shed by feasibility).
    ``batch_wait_s`` is the batcher's ``max_wait_ms`` in seconds, added to every prediction.
    Retry-After values are clamped to [``min_retry_after_s``, ``max_retry_after_s``];
    ``default_retry_after_s`` is used when nothing better is known.
    """

    shed_fraction_sheddable: float | None = 0.5
    shed_fraction_standard: float | None = 1.0
    shed_fraction_critical: float | None = None
    batch_wait_s: float = 0.0
    min_retry_after_s: float = 0.05
    max_retry_after_s: float = 60.0
    default_retry_after_s: float = 1.0

    def __post_init__(self) -> None:
        for name in ("shed_fraction_sheddable", "shed_fraction_standard", "shed_fraction_critical"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise ValueError(f"{name} must be > 0 or None, got {value}")
        if not 0 < self.min_retry_after_s <= self.max_retry_after_s:
            raise ValueError("need 0 < min_retry_after_s <= max_retry_after_s")
        if self.batch_wait_s < 0:
            raise ValueError(f"batch_wait_s must be >= 0, got {self.batch_wait_s}")

    def shed_fraction(self, priority: Priority) -> float | None:
        if priority is Priority.SHEDDABLE:
            return self.shed_fraction_sheddable
        if priority is Priority.STANDARD:
            return self.shed_fraction_standard
        return self.shed_fraction_critical

    def clamp_retry(self, seconds: float) -> float:
        return min(self.max_retry_after_s, max(self.min_retry_after_s, seconds))


class RejectReason(StrEnum):
    RATE_LIMITED = "rate_limited"
    CONCURRENCY = "concurrency"
    SHED = "shed"
    DEADLINE = "deadline"


_STATUS = {
    RejectReason.RATE_LIMITED: 429,
    RejectReason.CONCURRENCY: 429,
    RejectReason.SHED: 429,
    RejectReason.DEADLINE: 504,
}


@dataclass(frozen=True)
class Decision:
    """The outcome of :func:`admit`.

    ``status`` is the HTTP status of a rejection (429, or 504 for a request already past its
    deadline); ``retry_after_s`` is the Retry-After estimate. ``bucket`` is the tenant's bucket
    to store back (a token was taken only if admitted). ``predicted_finish_s`` is the
    feasibility estimate when one was made (for logs and metrics).
    """

    admitted: bool
    reason: RejectReason | None = None
    retry_after_s: float | None = None
    bucket: TokenBucket | None = None
    predicted_finish_s: float | None = field(default=None, compare=False)

    @property
    def status(self) -> int | None:
        return None if self.reason is None else _STATUS[self.reason]


def admit(
    request: RequestInfo, snapshot: AdmissionSnapshot, config: AdmissionConfig, now: float
) -> Decision:
    """Admit or reject one request; see the module docstring for the order of checks."""
    if now >= request.deadline_s:
        return Decision(False, RejectReason.DEADLINE, None, request.bucket)

    taken: TokenBucket | None = None
    if request.bucket is not None:
        allowed, after, wait_s = take(request.bucket, now)
        if not allowed:
            return Decision(
                False, RejectReason.RATE_LIMITED, config.clamp_retry(wait_s), request.bucket
            )
        taken = after

    if not within_concurrency(request.tenant_inflight, request.max_concurrency):
        retry = snapshot.batch_service_s or config.default_retry_after_s
        return Decision(False, RejectReason.CONCURRENCY, config.clamp_retry(retry), request.bucket)

    fraction = config.shed_fraction(request.priority)
    if snapshot.cold or fraction is None:
        return Decision(True, bucket=taken)

    rows_ahead = request.rows_ahead
    if rows_ahead is None:
        rows_ahead = snapshot.rows_ahead_by_class.get(request.priority, 0)
    rate = snapshot.service_rate_rows_per_s
    assert rate is not None  # not cold
    cap = snapshot.batch_rows
    free_in = snapshot.replica_free_in_s
    if free_in is not None and cap:
        # Rows ahead fill batches; the request rides in the one holding the remainder. A
        # tenant draining at less than the full rate (others' later arrivals go ahead of
        # it) has only its part of each batch: its rows ahead take that many more batches.
        per_batch = float(cap)
        if snapshot.drain_rows_per_s is not None:
            full_rate = rate * max(1, snapshot.ready_replicas)
            per_batch *= min(1.0, max(0.0, snapshot.drain_rows_per_s) / full_rate)
        fill = rows_ahead + min(max(1, request.rows), cap) - 1
        before = int(min(1e9, fill // per_batch)) if per_batch > 1e-9 else 10**9
        full_s = snapshot.full_batch_s if snapshot.full_batch_s is not None else cap / rate
        finish = estimate_finish_batched(
            now, free_in, before, full_s, snapshot.batch_service_s or 0.0,
            batch_wait_s=config.batch_wait_s)
    else:
        finish = estimate_finish(
            now,
            rows_ahead,
            rate,
            snapshot.ready_replicas,
            snapshot.batch_service_s or 0.0,
            inflight_rows=snapshot.inflight_rows,
            batch_wait_s=config.batch_wait_s,
            drain_rows_per_s=snapshot.drain_rows_per_s,
        )
    allowed_s = fraction * (request.deadline_s - now)
    overshoot_s = (finish - now) - allowed_s
    if overshoot_s > 0:
        # Without new arrivals the backlog ahead shrinks by the overshoot in that much time.
        return Decision(
            False,
            RejectReason.SHED,
            config.clamp_retry(overshoot_s),
            request.bucket,
            predicted_finish_s=finish,
        )
    return Decision(True, bucket=taken, predicted_finish_s=finish)
