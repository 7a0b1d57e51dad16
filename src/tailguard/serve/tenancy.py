"""The gateway's door: who is calling (API key), may they use this deployment, admit or refuse.

With no tenants in the config the gateway is open (every caller is the ``anonymous`` tenant,
with no quota). With tenants, every route but health needs ``Authorization: Bearer KEY`` (or an
``api-key`` / ``x-api-key`` header, as OpenAI clients send): a missing or unknown key is 401,
a deployment the tenant may not use is 403 on infer and absent from its listings. Admission
(token bucket, concurrency cap, deadline feasibility) runs here, before a request is queued,
through the pure functions of :mod:`tailguard.serve.admission`.
"""

from __future__ import annotations

import hashlib
import hmac
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import NoReturn

from tailguard.observe.usage import UsageMeter
from tailguard.serve.admission import (
    AdmissionConfig,
    RejectReason,
    RequestInfo,
    TokenBucket,
    admit,
    initial_bucket,
)
from tailguard.serve.config import ServeConfig
from tailguard.serve.deployment import Deployment
from tailguard.serve.errors import Forbidden, TooManyRequests, Unauthorized
from tailguard.serve.slots import OPEN_CALLER, Caller
from tailguard.serve.tenants import TenantDirectory, TenantSpec


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated caller: a tenant, an admin, or anyone (open mode)."""

    tenant: TenantSpec | None
    admin: bool

    @property
    def id(self) -> str:
        if self.tenant is not None:
            return self.tenant.id
        return "admin" if self.admin else OPEN_CALLER.tenant


_OPEN = Principal(None, admin=True)
_KEY_HEADERS = (b"api-key", b"x-api-key")


def api_key_from_headers(headers: Iterable[tuple[bytes, bytes]]) -> str | None:
    """The presented key: ``Authorization: Bearer KEY``, else ``api-key``/``x-api-key``."""
    fallback: str | None = None
    for name, value in headers:
        if name == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                return token.strip()
        elif name in _KEY_HEADERS and value:
            fallback = value.decode("latin-1").strip()
    return fallback


class TenantGate:
    """Authentication, authorisation, admission and metering for every request."""

    def __init__(self, config: ServeConfig, usage: UsageMeter) -> None:
        self.directory = TenantDirectory(config.tenants)
        self.open = len(self.directory) == 0
        self.usage = usage
        self._admin = [bytes.fromhex(k.split(":", 1)[1]) for k in config.admin_api_keys]
        settings = config.admission
        self._enabled = settings.enabled
        self._config = AdmissionConfig(
            shed_fraction_sheddable=settings.shed_fraction_sheddable,
            shed_fraction_standard=settings.shed_fraction_standard,
        )
        # A tenant whose recent demand fits its max-min fair share (Deployment.fair_share)
        # is not the cause of an overload: it is shed only when it would miss its objective
        # outright, never on the safety margin the tenants over their share get.
        self._config_within_share = AdmissionConfig(
            shed_fraction_sheddable=max(settings.shed_fraction_sheddable, 1.0),
            shed_fraction_standard=max(settings.shed_fraction_standard, 1.0),
        )
        self._buckets: dict[str, TokenBucket | None] = {}
        self._inflight: dict[str, int] = defaultdict(int)
        # (tenant, deployment) -> (until, rows) for a tenant over its fair share: its last
        # shed request's overshoot runs until then; a request of as many rows or more
        # arriving before is shed the same way.
        self._shed_until: dict[tuple[str, str], tuple[float, int]] = {}

    # ---------------------------------------------------------------- who and what
    def authenticate(self, headers: Iterable[tuple[bytes, bytes]]) -> Principal:
        if self.open:
            return _OPEN
        key = api_key_from_headers(headers)
        if key is None:
            raise Unauthorized("missing API key: send 'Authorization: Bearer KEY'")
        digest = hashlib.sha256(key.encode()).digest()
        admin = False
        for candidate in self._admin:  # no early exit, like the tenant directory
            admin |= hmac.compare_digest(digest, candidate)
        tenant = self.directory.authenticate_digest(digest)  # the key is hashed once
        if tenant is None and not admin:
            raise Unauthorized("invalid API key")
        return Principal(tenant, admin=admin and tenant is None)

    @staticmethod
    def may_use(principal: Principal, deployment: str) -> bool:
        return principal.tenant is None or principal.tenant.allows(deployment)

    def authorise(self, principal: Principal, deployment: str) -> None:
        if not self.may_use(principal, deployment):
            raise Forbidden(f"tenant {principal.id!r} may not use deployment {deployment!r}")

    # ---------------------------------------------------------------- admission
    def admit(self, principal: Principal, deployment: Deployment, rows: int,
              now: float) -> Caller:
        """Admit one request (the caller must :meth:`release` it) or raise 429."""
        tenant = principal.tenant
        if tenant is None:
            return OPEN_CALLER
        caller = Caller(tenant.id, tenant.priority, tenant.weight)
        if self._enabled:
            if tenant.id not in self._buckets:
                self._buckets[tenant.id] = initial_bucket(tenant, now)
            self._decide(tenant, caller, deployment, rows, rows, now, quotas=True)
        self._inflight[tenant.id] += 1
        return caller

    def resize(self, principal: Principal, deployment: Deployment, admitted_rows: int,
               rows: int, now: float) -> None:
        """A request admitted as ``admitted_rows`` rows (before its body was read) turned out
        to hold ``rows``: judge its deadline again at that size, or raise 429 ``shed``. Its
        quotas (token, concurrency slot) were taken at admission and stay so."""
        tenant = principal.tenant
        if tenant is None or not self._enabled or rows <= admitted_rows:
            return
        caller = Caller(tenant.id, tenant.priority, tenant.weight)
        self._decide(tenant, caller, deployment, rows, rows - admitted_rows, now, quotas=False)

    def _decide(self, tenant: TenantSpec, caller: Caller, deployment: Deployment, rows: int,
                new_rows: int, now: float, *, quotas: bool) -> None:
        """Run admission for ``rows`` rows (``new_rows`` of them not yet counted in the
        tenant's demand), with or without the tenant's quotas; raise 429 when refused."""
        until = self._held_until(tenant, deployment, rows, now) if quotas else None
        if until is not None:
            # The backlog that shed this tenant's last request cannot have drained yet (it
            # drains no faster than real time, and other arrivals only add to it): shed this
            # one too, without predicting again — under a flood, most requests end here.
            deployment.note_demand(caller, new_rows, now)
            self._refuse(tenant, deployment, RejectReason.SHED,
                         self._config.clamp_retry(until - now))
        slo_ms = tenant.p99_ms or deployment.spec.p99_ms or deployment.spec.timeout_ms
        ahead = deployment.rows_ahead(caller, rows)
        # Without quotas: no bucket, and nothing in flight, so no concurrency cap binds.
        request = RequestInfo.for_tenant(
            tenant, deadline_s=now + slo_ms / 1000.0,
            tenant_inflight=self._inflight[tenant.id] if quotas else 0,
            bucket=self._buckets[tenant.id] if quotas else None,
            rows_ahead=ahead, rows=rows,
        )
        share = deployment.fair_share(caller, now)
        within = share is None or share.within
        snapshot = deployment.admission_snapshot(
            ahead, rows, now,
            drain_rows_per_s=None if within or share is None else share.rows_per_s)
        config = self._config_within_share if within else self._config
        decision = admit(request, snapshot, config, now)
        if quotas:
            self._buckets[tenant.id] = decision.bucket
        if decision.reason not in _QUOTA_REASONS:
            # Demand is what the tenant asks within its own quotas: its rate limit and
            # concurrency cap already keep the rest off the deployment.
            deployment.note_demand(caller, new_rows, now)
        if not decision.admitted:
            assert decision.reason is not None
            fraction = config.shed_fraction(tenant.priority)
            if (decision.reason is RejectReason.SHED and not within
                    and decision.predicted_finish_s is not None and fraction is not None):
                # Only the overload holds: a tenant within its share is shed rarely, on a
                # burst, and its next request may well fit.
                allowed_s = fraction * (request.deadline_s - now)
                self._shed_until[(tenant.id, deployment.name)] = (
                    decision.predicted_finish_s - allowed_s, rows)
            self._refuse(tenant, deployment, decision.reason, decision.retry_after_s)

    def _held_until(self, tenant: TenantSpec, deployment: Deployment, rows: int,
                    now: float) -> float | None:
        """When the hold-off on this request ends, or None when it is not held."""
        held = self._shed_until.get((tenant.id, deployment.name))
        if held is None or now >= held[0] or rows < held[1]:
            return None
        bucket = self._buckets.get(tenant.id)
        # Out of tokens, it is over its rate limit first: the full check says so.
        return held[0] if bucket is None or bucket.level(now) >= 1.0 else None

    def _refuse(self, tenant: TenantSpec, deployment: Deployment, reason: RejectReason,
                retry_after_s: float | None) -> NoReturn:
        self.usage.rejected(tenant.id, deployment.name, reason.value)
        raise TooManyRequests(f"tenant {tenant.id!r}: {_REASONS[reason.value]}",
                              retry_after_s=retry_after_s, reason=reason.value)

    def release(self, caller: Caller) -> None:
        if caller is not OPEN_CALLER:
            self._inflight[caller.tenant] -= 1


_QUOTA_REASONS = frozenset({RejectReason.RATE_LIMITED, RejectReason.CONCURRENCY})
_REASONS = {
    "rate_limited": "over the rate limit",
    "concurrency": "too many requests in flight (max_concurrency)",
    "shed": "shed: at the current load it would miss its latency objective",
    "deadline": "the request's deadline has already passed",
}
