"""The gate without a server: keys, authorisation, quotas, and writing each decision back.

The decision itself is :func:`decide`'s (``test_gate_decide.py``); here a stub deployment
hands the gate a fixed :class:`LoadView`, so nothing below the gate runs."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from tailguard.observe.metrics import ServeMetrics
from tailguard.observe.usage import UsageMeter
from tailguard.serve.config import DeploymentSpec, ServeConfig
from tailguard.serve.deployment.demand import FairShare
from tailguard.serve.deployment.estimates import ServiceFit
from tailguard.serve.deployment.view import LoadView
from tailguard.serve.errors import Forbidden, TooManyRequests, Unauthorized
from tailguard.serve.gate.gate import TenantGate
from tailguard.serve.gate.identity import Caller, api_key_from_headers

SPEC = DeploymentSpec(name="m", model="tailguard.models.sleep:Sleep", p99_ms=100)
IDLE = LoadView(0, (0.0,), 0, ServiceFit(0.0, 0.001), 10)
OVER = FairShare(within=False, rows_per_s=1000.0, demand_rows_per_s=5000.0,
                 capacity_rows_per_s=1000.0)


@dataclass
class StubDeployment:
    """What the gate reads of a deployment: its spec, one view, and the demand it writes."""

    view: LoadView = IDLE
    spec: DeploymentSpec = SPEC
    asked: list[tuple[str, int]] = field(default_factory=list)
    views: list[tuple[Caller, int]] = field(default_factory=list)
    probes: list[float] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.spec.name

    def finish_bound_s(self, caller: Caller, rows: int, now: float) -> float | None:
        return None  # never the shortcut: every request goes through decide

    def load_view(self, caller: Caller, rows: int, now: float) -> LoadView:
        self.views.append((caller, rows))
        return self.view

    def note_demand(self, caller: Caller, rows: int, now: float) -> None:
        self.asked.append((caller.tenant, rows))

    def note_probe(self, now: float) -> None:
        self.probes.append(now)


def _gate(tenants: bool = True, **tenant: object) -> tuple[TenantGate, UsageMeter]:
    config = ServeConfig(
        admin_api_keys=("root-key",) if tenants else (),
        tenants=[{"id": "t", "api_keys": ["t-key"], **tenant},  # type: ignore[list-item]
                 {"id": "u", "api_keys": ["u-key"], "deployments": ["m"]}] if tenants else [],
        deployments=[SPEC, DeploymentSpec(name="other", model="tailguard.models.echo:Echo")],
    )
    usage = UsageMeter(ServeMetrics().registry)
    return TenantGate(config, usage), usage


def _key(key: str) -> list[tuple[bytes, bytes]]:
    return [(b"authorization", f"Bearer {key}".encode())]


def test_key_sources_bearer_first_then_api_key_headers() -> None:
    assert api_key_from_headers([(b"authorization", b"Bearer abc")]) == "abc"
    assert api_key_from_headers([(b"api-key", b"xyz")]) == "xyz"
    assert api_key_from_headers([(b"x-api-key", b"k"), (b"authorization", b"Bearer b")]) == "b"
    assert api_key_from_headers([(b"authorization", b"Basic Zm9v")]) is None


def test_authentication_admin_and_authorisation() -> None:
    gate, _ = _gate(deployments=["other"])
    with pytest.raises(Unauthorized, match="missing API key"):
        gate.authenticate([])
    with pytest.raises(Unauthorized, match="invalid"):
        gate.authenticate(_key("nope"))
    tenant = gate.authenticate(_key("t-key"))
    assert tenant.id == "t" and not tenant.admin
    with pytest.raises(Forbidden, match="may not use deployment 'm'"):
        gate.authorise(tenant, "m")
    admin = gate.authenticate([(b"api-key", b"root-key")])
    assert admin.admin and admin.id == "admin"
    gate.authorise(admin, "m")


def test_concurrency_cap_then_release() -> None:
    gate, usage = _gate(max_concurrency=2)
    dep = StubDeployment()
    who = gate.authenticate(_key("t-key"))
    callers = [gate.admit(who, dep, 1, now=0.0) for _ in range(2)]
    with pytest.raises(TooManyRequests) as info:
        gate.admit(who, dep, 1, now=0.0)
    assert info.value.reason == "concurrency" and info.value.retry_after_s
    gate.release(callers[0])
    gate.admit(who, dep, 1, now=0.0)
    assert usage.report("t")[0]["throttled"] == 1
    assert dep.asked == [("t", 1)] * 3  # the refused one asked nothing of the deployment


def test_rate_limit_refills_with_time() -> None:
    gate, _ = _gate(rate_limit_rps=10, burst=2)
    dep = StubDeployment()
    who = gate.authenticate(_key("t-key"))
    for _ in range(2):
        gate.release(gate.admit(who, dep, 1, now=100.0))
    with pytest.raises(TooManyRequests, match="over the rate limit"):
        gate.admit(who, dep, 1, now=100.0)
    gate.release(gate.admit(who, dep, 1, now=100.2))


def test_open_mode_callers_are_one_implicit_tenant_admitted_and_shed() -> None:
    gate, usage = _gate(tenants=False)
    who = gate.authenticate([])
    assert who.admin and who.id == "anonymous" and gate.may_use(who, "m")
    caller = gate.admit(who, StubDeployment(), 1, now=0.0)
    assert caller == Caller("anonymous")
    flooded = StubDeployment(LoadView(1000, (0.0,), 0, ServiceFit(0.0, 0.001), 10,
                                      share=OVER))
    with pytest.raises(TooManyRequests) as info:  # the P99 guard holds for every caller
        gate.admit(who, flooded, 1, now=0.0)
    assert info.value.reason == "shed" and info.value.retry_after_s
    assert gate.hold(caller, "m") is not None
    assert usage.report("anonymous")[0]["shed"] == 1


def test_an_admin_key_is_the_operators_and_is_never_shed() -> None:
    gate, _ = _gate()
    flooded = StubDeployment(LoadView(10**6, (0.0,), 0, ServiceFit(0.0, 0.001), 10,
                                      share=OVER))
    admin = gate.authenticate([(b"api-key", b"root-key")])
    assert gate.admit(admin, flooded, 1, now=0.0) == Caller("admin")
    gate.resize(admin, flooded, 1, 50, now=0.0)
    assert flooded.views == []


def test_a_probe_is_noted_once_so_a_burst_is_not_waved_through() -> None:
    gate, _ = _gate(tenants=False)
    who = gate.authenticate([])
    stale = StubDeployment(LoadView(0, (0.0,), 0, ServiceFit(0.2, 0.0), 10, share=OVER,
                                    idle_replicas=1, probed_ago_s=5.0))
    gate.admit(who, stale, 1, now=10.0)  # 200 ms predicted, 65 ms allowed: a probe
    assert stale.probes == [10.0]
    stale.view = stale.view._replace(probed_ago_s=0.0)  # the deployment noted it
    with pytest.raises(TooManyRequests):
        gate.admit(who, stale, 1, now=10.0)


def test_an_admin_key_on_an_open_server_is_the_operators_too() -> None:
    config = ServeConfig(admin_api_keys=("root-key",), deployments=[SPEC])
    gate = TenantGate(config, UsageMeter(ServeMetrics().registry))
    assert gate.authenticate([]).id == "anonymous"
    assert gate.authenticate(_key("wrong")).id == "anonymous"  # open: anyone may call
    admin = gate.authenticate(_key("root-key"))
    assert admin.id == "admin" and not admin.open
    flooded = StubDeployment(LoadView(10**6, (0.0,), 0, ServiceFit(0.0, 0.001), 10,
                                      share=OVER))
    gate.admit(admin, flooded, 1, now=0.0)  # never shed
    with pytest.raises(ValueError, match="reserved"):
        ServeConfig(tenants=[{"id": "admin", "api_keys": ["k"]}], deployments=[SPEC])


def test_admission_disabled_admits_everything() -> None:
    config = ServeConfig(admission={"enabled": False}, deployments=[SPEC])
    gate = TenantGate(config, UsageMeter(ServeMetrics().registry))
    flooded = StubDeployment(LoadView(10**6, (0.0,), 0, ServiceFit(0.0, 0.001), 10,
                                      share=OVER))
    gate.admit(gate.authenticate([]), flooded, 1, now=0.0)
    assert flooded.views == [] and flooded.asked == []


def test_a_hold_is_stored_used_and_dropped() -> None:
    gate, usage = _gate()
    who = gate.authenticate(_key("t-key"))
    caller = Caller("t")
    over = StubDeployment(LoadView(200, (0.0,), 0, ServiceFit(0.0, 0.001), 10, share=OVER))
    with pytest.raises(TooManyRequests):
        gate.admit(who, over, 1, now=0.0)
    hold = gate.hold(caller, "m")
    assert hold is not None and hold.until_s == pytest.approx(0.21 - 0.065)
    with pytest.raises(TooManyRequests) as held:  # an idle view, but still held
        gate.admit(who, StubDeployment(), 1, now=0.01)
    assert held.value.reason == "shed"
    gate.release(gate.admit(who, StubDeployment(), 1, now=hold.until_s))
    assert gate.hold(caller, "m") is None
    assert usage.report("t")[0]["shed"] == 2


def test_a_request_admitted_as_one_row_is_judged_again_at_its_real_size() -> None:
    gate, usage = _gate()
    dep = StubDeployment(LoadView(0, (0.0,), 0, ServiceFit(0.0, 0.009), 3))
    who = gate.authenticate(_key("t-key"))
    caller = gate.admit(who, dep, 1, now=0.0)
    gate.resize(who, dep, 1, 1, now=0.0)
    gate.resize(who, dep, 1, 3, now=0.0)  # 27 ms: admitted
    with pytest.raises(TooManyRequests) as info:  # 30 rows, one batch of 270 ms: shed
        gate.resize(who, dep, 1, 30, now=0.0)
    assert info.value.reason == "shed"
    gate.release(caller)
    assert dep.asked == [("t", 1), ("t", 2), ("t", 29)]  # each row counted once
    assert [rows for _, rows in dep.views] == [1, 3, 30]
    assert usage.report("t")[0]["shed"] == 1
