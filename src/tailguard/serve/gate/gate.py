"""The gateway's door: who is calling (API key), may they use this deployment, admit or refuse.

With no tenants in the config the gateway is open and every caller is the implicit tenant
``anonymous``. With tenants, every route but health needs ``Authorization: Bearer KEY`` (or an
``api-key`` / ``x-api-key`` header, as OpenAI clients send): a missing or unknown key is 401,
a deployment the tenant may not use is 403 on infer and absent from its listings.

Admission runs here for every caller, configured or implicit, before a request is queued: the
gate keeps each caller's quotas (token bucket, requests in flight) and hold-offs, takes one
:class:`~tailguard.serve.deployment.view.LoadView` from the deployment, lets the pure
:func:`~tailguard.serve.gate.decide.decide` choose, and stores back what it hands over.
"""

from __future__ import annotations

import hashlib
import hmac
from collections import defaultdict
from collections.abc import Iterable
from typing import TYPE_CHECKING, NoReturn, Protocol

from tailguard.observe.usage import UsageMeter
from tailguard.serve.errors import DeadlineExceeded, Forbidden, TooManyRequests, Unauthorized
from tailguard.serve.gate.decide import (
    AdmissionRequest,
    Decision,
    RejectReason,
    decide,
    surely_admitted,
)
from tailguard.serve.gate.identity import (
    ADMIN,
    OPEN,
    Caller,
    Principal,
    api_key_from_headers,
)
from tailguard.serve.gate.policy import AdmissionSettings
from tailguard.serve.gate.quotas import Hold, TokenBucket, initial_bucket
from tailguard.serve.gate.tenants import TenantDirectory, TenantSpec

if TYPE_CHECKING:
    from tailguard.serve.config import DeploymentSpec, ServeConfig
    from tailguard.serve.deployment.view import LoadView

__all__ = ["Admissible", "TenantGate"]


class Admissible(Protocol):
    """What the gate reads of a deployment: one view of its load (or, first, a bound that
    makes the view needless), and the demand it writes back
    (:class:`~tailguard.serve.deployment.Deployment` is one)."""

    @property
    def name(self) -> str: ...
    @property
    def spec(self) -> DeploymentSpec: ...
    def finish_bound_s(self, caller: Caller, rows: int, now: float) -> float | None: ...
    def load_view(self, caller: Caller, rows: int, now: float) -> LoadView: ...
    def note_demand(self, caller: Caller, rows: int, now: float) -> None: ...
    def note_probe(self, now: float) -> None: ...



_REASONS = {
    RejectReason.RATE_LIMITED: "over the rate limit",
    RejectReason.CONCURRENCY: "too many requests in flight (max_concurrency)",
    RejectReason.SHED: "shed: at the current load it would miss its latency objective",
    RejectReason.DEADLINE: "the request's deadline has already passed",
}


class TenantGate:
    """Authentication, authorisation, admission and metering for every request."""

    def __init__(self, config: ServeConfig, usage: UsageMeter) -> None:
        self.directory = TenantDirectory(config.tenants)
        self.open = len(self.directory) == 0
        self.usage = usage
        self._admin = [bytes.fromhex(k.split(":", 1)[1]) for k in config.admin_api_keys]
        self.settings: AdmissionSettings = config.admission
        self._buckets: dict[str, TokenBucket | None] = {}
        self._inflight: dict[str, int] = defaultdict(int)
        self._holds: dict[tuple[str, str], Hold] = {}  # (caller, deployment) -> hold-off
        self._budgets: dict[tuple[str, str], float] = {}  # (caller, deployment) -> SLO, s

    def reconfigure(self, config: ServeConfig) -> None:
        """Serve ``config``'s tenants, admin keys and admission settings from the next
        request on (a config apply): a removed tenant's keys are refused at once, a changed
        tenant starts with fresh quotas, the others keep their buckets and hold-offs."""
        directory = TenantDirectory(config.tenants)  # may raise: then nothing changed
        before = {t.id: t for t in self.directory}
        self.directory = directory
        self.open = len(directory) == 0
        self._admin = [bytes.fromhex(k.split(":", 1)[1]) for k in config.admin_api_keys]
        self.settings = config.admission
        for tenant_id, spec in before.items():
            if directory.get(tenant_id) != spec:
                self._buckets.pop(tenant_id, None)
                for key in [k for k in self._holds if k[0] == tenant_id]:
                    del self._holds[key]
        self._budgets.clear()  # objectives may have changed (tenant's or deployment's)

    # ---------------------------------------------------------------- who and what
    def authenticate(self, headers: Iterable[tuple[bytes, bytes]]) -> Principal:
        if self.open:
            if self._admin and self._is_admin(api_key_from_headers(headers)):
                return ADMIN  # an operator's key, even on an open server: never shed
            return OPEN
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

    def _is_admin(self, key: str | None) -> bool:
        if key is None:
            return False
        digest = hashlib.sha256(key.encode()).digest()
        admin = False
        for candidate in self._admin:
            admin |= hmac.compare_digest(digest, candidate)
        return admin

    @staticmethod
    def may_use(principal: Principal, deployment: str) -> bool:
        return principal.tenant is None or principal.tenant.allows(deployment)

    def authorise(self, principal: Principal, deployment: str) -> None:
        if not self.may_use(principal, deployment):
            raise Forbidden(f"tenant {principal.id!r} may not use deployment {deployment!r}")

    # ---------------------------------------------------------------- admission
    def hold(self, caller: Caller, deployment: str) -> Hold | None:
        """The caller's current hold-off on ``deployment`` (None: not held)."""
        return self._holds.get((caller.tenant, deployment))

    def admit(self, principal: Principal, deployment: Admissible, rows: int,
              now: float) -> Caller:
        """Admit one request (the caller must :meth:`release` it) or raise 429."""
        caller = principal.caller()
        # An admin key is the operator's (capacity probes, chaos, the restart route): never
        # shed. In open mode anyone has an admin's rights, but is admitted like a tenant.
        operator = principal.admin and not principal.open
        if self.settings.enabled and not operator:
            tenant = principal.tenant
            if caller.tenant not in self._buckets:
                self._buckets[caller.tenant] = (None if tenant is None
                                                else initial_bucket(tenant, now))
            request = AdmissionRequest(
                caller.priority, now + self._budget(caller, tenant, deployment), rows,
                bucket=self._buckets[caller.tenant], inflight=self._inflight[caller.tenant],
                max_concurrency=None if tenant is None else tenant.max_concurrency)
            self._apply(caller, deployment, request, rows, now, quotas=True)
        self._inflight[caller.tenant] += 1
        return caller

    def resize(self, principal: Principal, deployment: Admissible, admitted_rows: int,
               rows: int, now: float) -> None:
        """A request admitted as ``admitted_rows`` rows (before its body was read) turned out
        to hold ``rows``: judge its deadline again at that size, or raise 429 ``shed``. Its
        quotas (token, concurrency slot) were taken at admission and stay so."""
        if not self.settings.enabled or rows <= admitted_rows or (
                principal.admin and not principal.open):
            return
        caller = principal.caller()
        request = AdmissionRequest(
            caller.priority, now + self._budget(caller, principal.tenant, deployment), rows)
        self._apply(caller, deployment, request, rows - admitted_rows, now, quotas=False)

    def release(self, caller: Caller) -> None:
        self._inflight[caller.tenant] -= 1

    # ---------------------------------------------------------------- internals
    def _budget(self, caller: Caller, tenant: TenantSpec | None,
                deployment: Admissible) -> float:
        """Seconds of the caller's objective on ``deployment``: the tenant's ``p99_ms``, else
        the deployment's, else its timeout (kept once computed; a config
        apply clears them)."""
        key = (caller.tenant, deployment.name)
        budget = self._budgets.get(key)
        if budget is None:
            spec = deployment.spec
            slo_ms = (tenant.p99_ms if tenant is not None else None) or spec.p99_ms
            budget = self._budgets[key] = (slo_ms or spec.timeout_ms) / 1000.0
        return budget

    def _apply(self, caller: Caller, deployment: Admissible, request: AdmissionRequest,
               new_rows: int, now: float, *, quotas: bool) -> None:
        """Decide on ``request`` and store what the decision hands back; ``new_rows`` of its
        rows are not yet counted in the caller's demand. Raises 429 when refused."""
        key = (caller.tenant, deployment.name)
        hold = self._holds.get(key) if quotas else None
        if hold is None and request.bucket is None and request.max_concurrency is None and (
                surely_admitted(request, deployment.finish_bound_s(caller, request.rows, now),
                                self.settings, now)):
            deployment.note_demand(caller, new_rows, now)  # what decide would hand back
            return
        view = deployment.load_view(caller, request.rows, now)
        decision = decide(request, view, hold, self.settings, now)
        if quotas:
            self._buckets[caller.tenant] = decision.bucket
        if decision.hold is not None:
            self._holds[key] = decision.hold
        elif quotas:  # judged again at its size, a request sees no hold: keep the one there
            self._holds.pop(key, None)
        if decision.probe:
            deployment.note_probe(now)
        if decision.counts_demand:
            # Demand is what a caller asks within its own quotas: its rate limit and
            # concurrency cap already keep the rest off the deployment.
            deployment.note_demand(caller, new_rows, now)
        if not decision.admitted:
            self._refuse(caller, deployment, decision)

    def _refuse(self, caller: Caller, deployment: Admissible, decision: Decision) -> NoReturn:
        reason = decision.reason
        assert reason is not None
        self.usage.rejected(caller.tenant, deployment.name, reason.value)
        if reason is RejectReason.DEADLINE:
            raise DeadlineExceeded(f"tenant {caller.tenant!r}: {_REASONS[reason]}")
        raise TooManyRequests(f"tenant {caller.tenant!r}: {_REASONS[reason]}",
                              retry_after_s=decision.retry_after_s, reason=reason.value)
