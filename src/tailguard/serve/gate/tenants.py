"""Tenants: who may call which deployment, at what priority, weight and quota.

A tenant is declared in config; `tailguard apply` swaps the whole directory on a running gateway::

    spec = TenantSpec(
        id="search",
        api_keys=["sk-live-abc123"],          # plaintext is hashed at load ...
        # api_keys=["sha256:9f86d0..."],      # ... or give the sha256 hex yourself
        deployments=["minilm"],               # or ["*"] for every deployment
        priority="critical",
        weight=2.0,
        rate_limit_rps=200.0,
        burst=50,
        max_concurrency=64,
        p99_ms=100.0,
    )
    directory = TenantDirectory([spec])
    tenant = directory.authenticate(request_key)      # TenantSpec | None  -> 401
    if tenant is None or not directory.may_use(tenant, "minilm"):
        ...                                           # 401 / 403

Only sha256 digests of API keys are kept in memory, and they are left out of ``repr``/``str`` so
a logged spec never shows them. API keys are long random tokens, so an unsalted sha256 is the
usual choice (it is what GitHub and Stripe style tokens use); a password hash would only slow
every request down.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import re
from collections.abc import Iterable, Iterator
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from tailguard.names import NAME_RE

__all__ = [
    "ALL_DEPLOYMENTS",
    "Priority",
    "TenantDirectory",
    "TenantSpec",
    "hash_api_key",
    "verify_api_key",
]

ALL_DEPLOYMENTS = "*"
_HASH_PREFIX = "sha256:"
_HASH_RE = re.compile(r"^sha256:[0-9a-fA-F]{64}$")


class Priority(StrEnum):
    """Priority classes, served strictly in this order (with a starvation guard).

    ``critical`` > ``standard`` > ``sheddable``. ``rank`` is 0 for the highest class, so sorting
    by rank gives service order.
    """

    CRITICAL = "critical"
    STANDARD = "standard"
    SHEDDABLE = "sheddable"

    @property
    def rank(self) -> int:
        return _RANK[self]

    @classmethod
    def by_rank(cls) -> tuple[Priority, ...]:
        """All classes, highest first."""
        return _ORDER


_ORDER: tuple[Priority, ...] = (Priority.CRITICAL, Priority.STANDARD, Priority.SHEDDABLE)
_RANK: dict[Priority, int] = {p: i for i, p in enumerate(_ORDER)}


def hash_api_key(key: str) -> str:
    """``sha256:<hex>`` of a plaintext API key (the form stored in config and memory)."""
    return _HASH_PREFIX + hashlib.sha256(key.encode("utf-8")).hexdigest()


def _digest_bytes(hashed: str) -> bytes:
    return bytes.fromhex(hashed[len(_HASH_PREFIX) :])


def verify_api_key(key: str, hashed: str) -> bool:
    """True when plaintext ``key`` hashes to ``hashed`` (``sha256:<hex>``), in constant time."""
    if not _HASH_RE.match(hashed):
        raise ValueError("hashed key must look like 'sha256:<64 hex digits>'")
    candidate = hashlib.sha256(key.encode("utf-8")).digest()
    return hmac.compare_digest(candidate, _digest_bytes(hashed))


class TenantSpec(BaseModel):
    """One tenant. Immutable; validated at load with errors that say what to fix.

    ``api_keys`` accepts plaintext keys or ``sha256:<hex>`` digests and always holds digests
    after validation (a plaintext key that itself looks like ``sha256:<64 hex>`` is taken as a
    digest). ``rate_limit_rps=None`` means no rate limit; ``burst`` defaults to one second of
    rate (at least 1). ``max_concurrency=None`` means no cap on in-flight requests.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str
    api_keys: tuple[str, ...] = Field(default=(), repr=False)
    deployments: tuple[str, ...] = (ALL_DEPLOYMENTS,)
    priority: Priority = Priority.STANDARD
    weight: float = Field(default=1.0, gt=0, allow_inf_nan=False)
    rate_limit_rps: float | None = Field(default=None, gt=0, allow_inf_nan=False)
    burst: float | None = Field(default=None, ge=1, allow_inf_nan=False)
    max_concurrency: int | None = Field(default=None, ge=1)
    p99_ms: float | None = Field(default=None, gt=0, allow_inf_nan=False)
    # The tenant's availability objective (share of its requests without a 5xx), else each
    # deployment's: read only by `tailguard alerts render`.
    availability: float | None = Field(default=None, gt=0, lt=1, allow_inf_nan=False)

    @field_validator("id")
    @classmethod
    def _safe_id(cls, value: str) -> str:
        if not NAME_RE.match(value):
            raise ValueError(f"tenant id {value!r} must be 1-128 letters, digits, '_', '.', '-'")
        return value

    @field_validator("api_keys", mode="before")
    @classmethod
    def _hash_keys(cls, value: object) -> object:
        if isinstance(value, str):
            raise ValueError("api_keys must be a list of keys, not a single string")
        if not isinstance(value, Iterable):
            return value  # let pydantic report the type error
        hashed: list[str] = []
        for key in value:
            if not isinstance(key, str) or not key:
                # Never echo the key itself into the error message.
                raise ValueError("every api key must be a non-empty string")
            hashed.append(key.lower() if _HASH_RE.match(key) else hash_api_key(key))
        if len(set(hashed)) != len(hashed):
            raise ValueError("api_keys lists the same key twice")
        return tuple(hashed)

    @field_validator("deployments")
    @classmethod
    def _non_empty(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value or any(not name for name in value):
            raise ValueError("deployments must name at least one deployment, or '*' for all")
        return value

    @model_validator(mode="after")
    def _burst_needs_rate(self) -> TenantSpec:
        if self.burst is not None and self.rate_limit_rps is None:
            raise ValueError(f"tenant {self.id!r}: burst is set but rate_limit_rps is not")
        return self

    @property
    def effective_burst(self) -> float | None:
        """Bucket size: ``burst`` or one second of rate (at least 1); None without a limit."""
        if self.rate_limit_rps is None:
            return None
        if self.burst is not None:
            return self.burst
        return float(max(1, math.ceil(self.rate_limit_rps)))

    def allows(self, deployment: str) -> bool:
        return ALL_DEPLOYMENTS in self.deployments or deployment in self.deployments


class TenantDirectory:
    """The tenants a gateway knows, looked up by API key.

    ``authenticate`` hashes the presented key once and compares it with every stored digest
    using ``hmac.compare_digest`` without stopping at a match, so the time taken does not
    reveal which tenant (or which key position) matched. A key may belong to one tenant only.
    """

    def __init__(self, tenants: Iterable[TenantSpec]) -> None:
        self._by_id: dict[str, TenantSpec] = {}
        self._digests: list[tuple[bytes, TenantSpec]] = []
        owner: dict[str, str] = {}
        for spec in tenants:
            if spec.id in self._by_id:
                raise ValueError(f"tenant id {spec.id!r} is declared twice")
            self._by_id[spec.id] = spec
            for hashed in spec.api_keys:
                if hashed in owner:
                    raise ValueError(
                        f"tenants {owner[hashed]!r} and {spec.id!r} share an API key; "
                        "give each tenant its own keys"
                    )
                owner[hashed] = spec.id
                self._digests.append((_digest_bytes(hashed), spec))

    @classmethod
    def from_config(cls, tenants: Iterable[object]) -> TenantDirectory:
        """Build from parsed YAML/JSON (a list of mappings) or ready TenantSpecs."""
        return cls(
            t if isinstance(t, TenantSpec) else TenantSpec.model_validate(t) for t in tenants
        )

    def authenticate(self, key: str | None) -> TenantSpec | None:
        """The tenant owning ``key``, or None (missing or unknown key -> 401)."""
        if not key:
            return None
        return self.authenticate_digest(hashlib.sha256(key.encode("utf-8")).digest())

    def authenticate_digest(self, candidate: bytes) -> TenantSpec | None:
        """As :meth:`authenticate`, for a key already hashed (sha256 digest bytes)."""
        found: TenantSpec | None = None
        for digest, spec in self._digests:
            # No early exit: every digest is compared whatever matched before.
            if hmac.compare_digest(candidate, digest):
                found = spec
        return found

    def may_use(self, tenant: TenantSpec, deployment: str) -> bool:
        """True when ``tenant`` is authorised for ``deployment`` (else 403)."""
        return tenant.allows(deployment)

    def get(self, tenant_id: str) -> TenantSpec | None:
        return self._by_id.get(tenant_id)

    def __len__(self) -> int:
        return len(self._by_id)

    def __iter__(self) -> Iterator[TenantSpec]:
        return iter(self._by_id.values())

    def __contains__(self, tenant_id: object) -> bool:
        return tenant_id in self._by_id

    def __repr__(self) -> str:
        return f"TenantDirectory({sorted(self._by_id)!r})"
