"""The gateway's door without a server: keys, authorisation, admission decisions, release."""

from __future__ import annotations

import pytest

from tailguard.observe.metrics import DeploymentMetrics, ServeMetrics
from tailguard.observe.usage import UsageMeter
from tailguard.serve.config import DeploymentSpec, ServeConfig
from tailguard.serve.deployment import Deployment
from tailguard.serve.errors import Forbidden, TooManyRequests, Unauthorized
from tailguard.serve.loader import instantiate, signature
from tailguard.serve.tenancy import TenantGate, api_key_from_headers
from tests.unit.fake_replicas import FakeBackend


def _setup(**tenant: object) -> tuple[TenantGate, Deployment, UsageMeter]:
    spec = DeploymentSpec(name="m", model="tailguard.models.sleep:Sleep", p99_ms=100)
    config = ServeConfig(
        admin_api_keys=("root-key",),
        tenants=[{"id": "t", "api_keys": ["t-key"], **tenant},  # type: ignore[list-item]
                 {"id": "u", "api_keys": ["u-key"], "deployments": ["m"]}],
        deployments=[spec, DeploymentSpec(name="other", model="tailguard.models.echo:Echo")],
    )
    metrics = ServeMetrics()
    usage = UsageMeter(metrics.registry)
    dep = Deployment(spec, signature(instantiate(spec)), FakeBackend(),
                     DeploymentMetrics(metrics, "m"), usage)
    return TenantGate(config, usage), dep, usage


def test_key_sources_bearer_first_then_api_key_headers() -> None:
    assert api_key_from_headers([(b"authorization", b"Bearer abc")]) == "abc"
    assert api_key_from_headers([(b"api-key", b"xyz")]) == "xyz"
    assert api_key_from_headers([(b"x-api-key", b"k"), (b"authorization", b"Bearer b")]) == "b"
    assert api_key_from_headers([(b"authorization", b"Basic Zm9v")]) is None


def test_authentication_admin_and_authorisation() -> None:
    gate, _, _ = _setup(deployments=["other"])
    with pytest.raises(Unauthorized, match="missing API key"):
        gate.authenticate([])
    with pytest.raises(Unauthorized, match="invalid"):
        gate.authenticate([(b"authorization", b"Bearer nope")])
    tenant = gate.authenticate([(b"authorization", b"Bearer t-key")])
    assert tenant.id == "t" and not tenant.admin
    with pytest.raises(Forbidden, match="may not use deployment 'm'"):
        gate.authorise(tenant, "m")
    admin = gate.authenticate([(b"api-key", b"root-key")])
    assert admin.admin
    gate.authorise(admin, "m")


def test_concurrency_cap_then_release() -> None:
    gate, dep, usage = _setup(max_concurrency=2)
    who = gate.authenticate([(b"authorization", b"Bearer t-key")])
    callers = [gate.admit(who, dep, 1, now=0.0) for _ in range(2)]
    with pytest.raises(TooManyRequests) as info:
        gate.admit(who, dep, 1, now=0.0)
    assert info.value.reason == "concurrency" and info.value.retry_after_s
    gate.release(callers[0])
    gate.admit(who, dep, 1, now=0.0)
    assert usage.report("t")[0]["throttled"] == 1


def test_rate_limit_refills_with_time() -> None:
    gate, dep, _ = _setup(rate_limit_rps=10, burst=2)
    who = gate.authenticate([(b"authorization", b"Bearer t-key")])
    for _ in range(2):
        gate.release(gate.admit(who, dep, 1, now=100.0))
    with pytest.raises(TooManyRequests, match="over the rate limit"):
        gate.admit(who, dep, 1, now=100.0)
    gate.release(gate.admit(who, dep, 1, now=100.2))  # 0.2 s at 10/s: two tokens back


def test_open_mode_admits_everyone_without_keys() -> None:
    spec = DeploymentSpec(name="m", model="tailguard.models.sleep:Sleep")
    config = ServeConfig(deployments=[spec])
    gate = TenantGate(config, UsageMeter(ServeMetrics().registry))
    who = gate.authenticate([])
    assert who.admin and gate.may_use(who, "m")


def test_tenant_without_backlog_gets_its_whole_objective() -> None:
    import numpy as np

    from tailguard.serve.slots import Caller, Pending, Slot, SlotState
    from tailguard.serve.tenants import Priority

    gate, dep, _ = _setup(p99_ms=100)
    dep._slots.append(Slot(0, state=SlotState.READY))  # one replica ready (not started here)
    for _ in range(20):
        dep._service.observe(10, 0.09)  # 9 ms a row; batches capped at 3 rows (35 ms)
    who = gate.authenticate([(b"authorization", b"Bearer t-key")])

    def queued(tenant: str, priority: Priority, rows: int) -> None:
        item = Pending({"x": np.zeros((rows, 1), np.float32)}, rows, (), None,  # type: ignore[arg-type]
                       0.0, 9.0, Caller(tenant, priority))
        dep._queue.push(item, tenant=tenant, priority=priority, weight=1.0, deadline=9.0,
                        rows=rows, now=0.0)

    queued("u", Priority.CRITICAL, 6)  # served first: 6 rows ahead of anything standard
    # Predicted 6 x 9 ms + its own batch (27 ms) = 81 ms: past 80% of 100 ms, within it.
    gate.admit(who, dep, 1, now=0.0)  # no backlog of its own: admitted
    queued("t", Priority.STANDARD, 1)
    with pytest.raises(TooManyRequests) as info:  # with a backlog of its own: the margin holds
        gate.admit(who, dep, 1, now=0.0)
    assert info.value.reason == "shed"


def test_tenant_within_its_batch_share_gets_its_whole_objective() -> None:
    import numpy as np

    from tailguard.serve.slots import Caller, Pending, Slot, SlotState
    from tailguard.serve.tenants import Priority

    gate, dep, _ = _setup(p99_ms=50)  # t's own objective; the deployment's is 100 ms
    # One replica, 12 ms into an 8-row batch: free in 20 ms.
    dep._slots.append(Slot(0, state=SlotState.READY, busy=True, busy_since=-0.012,
                           batch_rows=8))
    for _ in range(20):
        dep._service.observe(10, 0.04)  # 4 ms a row; batches capped at 8 rows (35 ms)

    def queued(tenant: str, rows: int) -> None:
        item = Pending({"x": np.zeros((rows, 1), np.float32)}, rows, (), None,  # type: ignore[arg-type]
                       0.0, 9.0, Caller(tenant, Priority.STANDARD))
        dep._queue.push(item, tenant=tenant, priority=Priority.STANDARD, weight=1.0,
                        deadline=9.0, rows=rows, now=0.0)

    for _ in range(40):
        queued("u", 1)  # u floods: far beyond its half of a batch
    for _ in range(2):
        queued("t", 1)  # t has 2 rows waiting: with its next one, 3 of its 4-row share
    t = gate.authenticate([(b"authorization", b"Bearer t-key")])
    # Predicted: the replica frees in 20 ms, then t's batch (its 2 rows, 3 of u's and its
    # own: 6 rows, 24 ms) = 44 ms: past 80% of its 50 ms objective, within it. t is not the
    # overload, so the margin does not apply.
    gate.release(gate.admit(t, dep, 1, now=0.0))
    caller = Caller("t", Priority.STANDARD)
    assert dep.within_fair_share(caller, 2)
    queued("t", 2)  # now 4 queued: beyond its share of a batch, but far lighter than u,
    assert dep.within_fair_share(caller, 1)  # whose rows it goes ahead of
    assert not dep.within_fair_share(Caller("u", Priority.STANDARD), 1)  # the heaviest
    queued("t", 40)  # now t is the heavier one: the margin holds for it again
    assert not dep.within_fair_share(caller, 1)
    assert dep.within_fair_share(Caller("u", Priority.STANDARD), 1)
    u = gate.authenticate([(b"authorization", b"Bearer u-key")])
    with pytest.raises(TooManyRequests) as info:  # past its objective, even when lighter
        gate.admit(u, dep, 1, now=0.0)
    assert info.value.reason == "shed"
