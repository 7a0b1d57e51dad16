"""A config apply swaps the gate's tenants at once; unchanged tenants keep their quotas."""

from __future__ import annotations

from typing import Any

import pytest

from tailguard.observe.metrics import ServeMetrics
from tailguard.observe.usage import UsageMeter
from tailguard.serve.config import ServeConfig
from tailguard.serve.errors import Unauthorized
from tailguard.serve.gate.gate import TenantGate
from tailguard.serve.gate.quotas import TokenBucket


def cfg(*tenants: dict[str, Any], admin: tuple[str, ...] = ()) -> ServeConfig:
    return ServeConfig.model_validate({
        "admin_api_keys": list(admin), "tenants": list(tenants),
        "deployments": [{"name": "echo", "model": "tailguard.models.echo:Echo"}]})


def headers(key: str) -> list[tuple[bytes, bytes]]:
    return [(b"authorization", f"Bearer {key}".encode())]


KEEP = {"id": "keep", "api_keys": ["k-keep"], "rate_limit_rps": 10}
GONE = {"id": "gone", "api_keys": ["k-gone"], "rate_limit_rps": 10}


def test_removed_tenant_is_refused_and_kept_tenant_keeps_its_bucket() -> None:
    gate = TenantGate(cfg(KEEP, GONE), UsageMeter(ServeMetrics().registry))
    assert gate.authenticate(headers("k-gone")).id == "gone"
    bucket = TokenBucket.full(10.0, 10.0, 1.0)
    gate._buckets.update({"keep": bucket, "gone": bucket})
    gate.reconfigure(cfg(KEEP))
    with pytest.raises(Unauthorized):
        gate.authenticate(headers("k-gone"))
    assert gate.authenticate(headers("k-keep")).id == "keep"
    assert gate._buckets == {"keep": bucket}  # unchanged tenant: same quota state


def test_changed_tenant_starts_with_fresh_quotas_and_admin_keys_swap() -> None:
    gate = TenantGate(cfg(KEEP, admin=("old-admin",)), UsageMeter(ServeMetrics().registry))
    gate._buckets["keep"] = TokenBucket.full(10.0, 10.0, 1.0)
    gate.reconfigure(cfg({**KEEP, "rate_limit_rps": 20}, admin=("new-admin",)))
    assert "keep" not in gate._buckets
    assert gate.authenticate(headers("new-admin")).admin
    with pytest.raises(Unauthorized):
        gate.authenticate(headers("old-admin"))


def test_no_tenants_left_opens_the_gate() -> None:
    gate = TenantGate(cfg(KEEP), UsageMeter(ServeMetrics().registry))
    gate.reconfigure(cfg())
    assert gate.open and gate.authenticate([]).open
