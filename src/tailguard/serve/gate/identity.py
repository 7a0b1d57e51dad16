"""Who is calling: the presented API key, the authenticated principal, the queue's caller.

With no tenants in the config the gateway is open: every caller is the one implicit tenant
``anonymous`` (standard class, weight 1, no quota) — admitted and shed like any configured
tenant. An admin key without a tenant calls as ``admin``, likewise implicit.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from tailguard.serve.gate.tenants import Priority, TenantSpec

__all__ = ["ADMIN", "ANONYMOUS", "OPEN", "RESERVED_IDS", "Caller", "Principal",
           "api_key_from_headers"]

ANONYMOUS = "anonymous"
ADMIN_ID = "admin"
RESERVED_IDS = frozenset({ANONYMOUS, ADMIN_ID})  # the implicit callers: no tenant takes them
_KEY_HEADERS = (b"api-key", b"x-api-key")


@dataclass(frozen=True, slots=True)
class Caller:
    """Who sent a request, as the queue and admission see it."""

    tenant: str = ANONYMOUS
    priority: Priority = Priority.STANDARD
    weight: float = 1.0


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated caller: a tenant, an admin, or anyone (open mode)."""

    tenant: TenantSpec | None
    admin: bool
    open: bool = False  # no tenants configured: anyone, with every right

    @property
    def id(self) -> str:
        if self.tenant is not None:
            return self.tenant.id
        return ADMIN_ID if self.admin and not self.open else ANONYMOUS

    def caller(self) -> Caller:
        tenant = self.tenant
        if tenant is None:
            return _IMPLICIT[self.id]
        return Caller(tenant.id, tenant.priority, tenant.weight)


OPEN = Principal(None, admin=True, open=True)
ADMIN = Principal(None, admin=True)  # an admin key with no tenant: the operator
OPEN_CALLER = Caller()
_IMPLICIT = {ANONYMOUS: OPEN_CALLER, ADMIN_ID: Caller(ADMIN_ID)}


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
