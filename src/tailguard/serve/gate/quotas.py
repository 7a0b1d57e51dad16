"""A tenant's quotas as values: token bucket (rate limit), concurrency cap, shed hold-off.

Every function here is pure; :class:`~tailguard.serve.gate.gate.TenantGate` stores the values
the decision hands back::

    bucket = initial_bucket(tenant, now)            # None: no rate limit
    allowed, bucket, retry_after_s = take(bucket, now)
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from tailguard.serve.gate.tenants import TenantSpec

__all__ = ["Hold", "TokenBucket", "initial_bucket", "take", "within_concurrency"]


@dataclass(frozen=True, slots=True)
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


def within_concurrency(inflight: int, max_concurrency: int | None) -> bool:
    """True when one more request fits under the cap (``None``: no cap)."""
    return max_concurrency is None or inflight < max_concurrency


@dataclass(frozen=True, slots=True)
class Hold:
    """A caller over its fair share was shed: its next requests of ``rows`` rows or more are
    shed at once until ``until_s``, when that request's predicted overshoot has passed (the
    backlog ahead drains no faster than real time, and other arrivals only add to it)."""

    until_s: float
    rows: int

    def holds(self, rows: int, now: float) -> bool:
        return now < self.until_s and rows >= self.rows
