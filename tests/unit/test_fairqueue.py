from __future__ import annotations

import random
from dataclasses import dataclass, field

import pytest

from tailguard.serve.deployment.queue import FairQueue, FairQueueConfig
from tailguard.serve.gate.tenants import Priority

CRIT, STD, SHED = Priority.CRITICAL, Priority.STANDARD, Priority.SHEDDABLE


@dataclass(eq=False)
class Req:
    """A queued request; eq=False so items are distinct objects, as in the gateway."""

    name: str
    tenant: str = "t"
    priority: Priority = STD
    weight: float = 1.0
    deadline: float = 100.0
    rows: int = 1
    meta: dict[str, float] = field(default_factory=dict)


def push(q: FairQueue[Req], req: Req, now: float = 0.0, front: bool = False) -> Req:
    q.push(
        req,
        tenant=req.tenant,
        priority=req.priority,
        weight=req.weight,
        deadline=req.deadline,
        rows=req.rows,
        now=now,
        front=front,
    )
    return req


def drain(q: FairQueue[Req], now: float = 0.0) -> list[Req]:
    out: list[Req] = []
    while (nxt := q.peek(now)) is not None:
        got = q.pop(now)
        assert got is nxt, "peek must return what pop returns"
        out.append(got)
    assert len(q) == 0 and q.rows == 0
    return out


def test_empty_queue() -> None:
    q: FairQueue[Req] = FairQueue()
    assert q.peek(0.0) is None and q.pop(0.0) is None
    assert len(q) == 0 and q.rows == 0 and q.oldest_wait_s(5.0) == 0.0
    assert q.depth_by_priority() == {CRIT: 0, STD: 0, SHED: 0}


def test_sizes_and_depths_track_pushes_and_pops() -> None:
    q: FairQueue[Req] = FairQueue()
    push(q, Req("a", rows=3, priority=CRIT))
    push(q, Req("b", rows=5), now=1.0)
    push(q, Req("c", rows=2, priority=SHED), now=2.0)
    assert len(q) == 3 and q.rows == 10
    assert q.depth_by_priority() == {CRIT: 1, STD: 1, SHED: 1}
    assert q.rows_by_priority() == {CRIT: 3, STD: 5, SHED: 2}
    assert q.rows_ahead_by_class() == {CRIT: 3, STD: 8, SHED: 10}
    assert q.oldest_wait_s(4.0) == pytest.approx(4.0)
    assert q.pop(0.5) is not None
    assert len(q) == 2 and q.rows == 7 and q.oldest_wait_s(4.0) == pytest.approx(3.0)


def test_strict_priority_between_classes() -> None:
    q: FairQueue[Req] = FairQueue()
    reqs = [
        push(q, Req("s1", priority=SHED, deadline=1)),
        push(q, Req("n1", priority=STD, deadline=2)),
        push(q, Req("c1", priority=CRIT, deadline=50)),
        push(q, Req("n2", priority=STD, deadline=3)),
        push(q, Req("c2", priority=CRIT, deadline=60)),
    ]
    assert [r.name for r in drain(q, now=0.5)] == ["c1", "c2", "n1", "n2", "s1"]
    assert len(reqs) == 5


def test_earliest_deadline_first_within_a_tenant_fifo_on_ties() -> None:
    q: FairQueue[Req] = FairQueue()
    for name, deadline in [("late", 9.0), ("tie1", 5.0), ("early", 1.0), ("tie2", 5.0)]:
        push(q, Req(name, deadline=deadline))
    assert [r.name for r in drain(q)] == ["early", "tie1", "tie2", "late"]


def test_front_lane_serves_retries_first_in_fifo_order() -> None:
    q: FairQueue[Req] = FairQueue(FairQueueConfig(starvation_s=0.1))
    push(q, Req("crit", priority=CRIT, deadline=0.0, rows=2))
    push(q, Req("old-shed", priority=SHED, rows=3))  # overdue at now=5, still after retries
    r1 = push(q, Req("retry1", priority=SHED, deadline=9.0, rows=4), front=True)
    push(q, Req("retry2", priority=STD, deadline=1.0, rows=5), front=True)
    assert q.depth_by_priority() == {CRIT: 1, STD: 1, SHED: 2}
    assert q.rows_by_priority() == {CRIT: 2, STD: 5, SHED: 7}
    assert q.rows_ahead_by_class() == {CRIT: 11, STD: 11, SHED: 14}
    assert q.rows_ahead(CRIT, "t") == 9 + 2
    assert len(q) == 4 and q.rows == 14
    assert [r.name for r in drain(q, now=5.0)[:2]] == ["retry1", "retry2"]
    push(q, r1, front=True)
    assert q.remove(r1) and not q.remove(r1)
    assert q.peek(5.0) is None and q.rows_ahead_by_class()[SHED] == 0


def test_remove_drops_an_item_once() -> None:
    q: FairQueue[Req] = FairQueue()
    a = push(q, Req("a", rows=2, deadline=1))
    b = push(q, Req("b", rows=3, deadline=2))
    assert q.remove(a) is True
    assert q.remove(a) is False
    assert q.remove(Req("stranger")) is False
    assert len(q) == 1 and q.rows == 3
    assert q.peek(0.0) is b
    assert drain(q) == [b]
    assert q.remove(b) is False


def test_remove_last_item_of_a_flow_then_reuse_the_flow() -> None:
    q: FairQueue[Req] = FairQueue()
    a = push(q, Req("a", tenant="x"))
    assert q.remove(a)
    b = push(q, Req("b", tenant="x"))
    c = push(q, Req("c", tenant="y"))
    assert set(map(id, drain(q))) == {id(b), id(c)}


def test_push_validates_arguments() -> None:
    q: FairQueue[Req] = FairQueue()
    a = push(q, Req("a"))
    with pytest.raises(ValueError, match="already queued"):
        push(q, a)
    with pytest.raises(ValueError, match="weight"):
        push(q, Req("w", weight=0))
    with pytest.raises(ValueError, match="weight"):
        push(q, Req("w", weight=float("inf")))
    with pytest.raises(ValueError, match="weight"):
        q.rows_ahead(STD, "t", weight=0.0)
    with pytest.raises(ValueError, match="rows"):
        push(q, Req("r", rows=-1))
    with pytest.raises(ValueError, match="starvation_s"):
        FairQueueConfig(starvation_s=0)
    with pytest.raises(ValueError, match="promotion_every_n_pops"):
        FairQueueConfig(promotion_every_n_pops=0)


@pytest.mark.parametrize("front", [False, True])
def test_many_removals_compact_and_keep_the_order(front: bool) -> None:
    rng = random.Random(3)
    q: FairQueue[Req] = FairQueue()
    reqs = [push(q, Req(f"r{i}", deadline=rng.random()), front=front) for i in range(600)]
    doomed = set(rng.sample(reqs, 500))
    for r in doomed:
        assert q.remove(r)
    kept = [r for r in reqs if r not in doomed]  # the front lane is FIFO ...
    if not front:
        kept.sort(key=lambda r: r.deadline)  # ... a tenant's flow is EDF
    assert len(q) == 100 and q.rows == 100
    assert drain(q) == kept


def test_weighted_rows_not_requests_are_shared() -> None:
    # Tenant "big" sends 8-row requests, "small" 1-row requests, equal weight:
    # rows served converge to 1:1, so "small" gets ~8 requests per "big" request.
    q: FairQueue[Req] = FairQueue()
    for i in range(400):
        push(q, Req(f"b{i}", tenant="big", rows=8))
        push(q, Req(f"s{i}", tenant="small", rows=1))
    served = {"big": 0, "small": 0}
    for _ in range(300):
        r = q.pop(0.0)
        assert r is not None
        served[r.tenant] += r.rows
    assert served["small"] == pytest.approx(served["big"], abs=8)


def test_weights_set_the_shares_under_backlog() -> None:
    rng = random.Random(7)
    weights = {"a": 1.0, "b": 2.0, "c": 4.0}
    q: FairQueue[Req] = FairQueue()
    for i in range(3000):
        for tenant, weight in weights.items():
            push(q, Req(f"{tenant}{i}", tenant=tenant, weight=weight, rows=rng.randint(1, 8)))
    served = dict.fromkeys(weights, 0)
    total = 0
    while total < 20_000:
        r = q.pop(0.0)
        assert r is not None
        served[r.tenant] += r.rows
        total += r.rows
    for tenant, weight in weights.items():
        assert served[tenant] / total == pytest.approx(weight / 7.0, abs=0.01)


def test_an_idle_tenant_earns_no_credit() -> None:
    q: FairQueue[Req] = FairQueue()
    push(q, Req("b-early", tenant="b"))
    for i in range(200):
        push(q, Req(f"a{i}", tenant="a"))
    for _ in range(100):
        q.pop(0.0)  # "b" is served once, then idles while "a" is served alone
    assert len(q) == 101
    for i in range(200):
        push(q, Req(f"b{i}", tenant="b"))
    window = [q.pop(0.0) for _ in range(40)]
    counts = {t: sum(1 for r in window if r is not None and r.tenant == t) for t in "ab"}
    # "b" restarts at the virtual time (one tag behind "a"): alternation, no catch-up burst.
    assert abs(counts["a"] - counts["b"]) <= 2


def test_rows_ahead_accounts_for_classes_own_backlog_and_weights() -> None:
    q: FairQueue[Req] = FairQueue()
    push(q, Req("c", priority=CRIT, rows=3))
    for i in range(4):
        push(q, Req(f"a{i}", tenant="a", weight=1.0))
    for i in range(20):
        push(q, Req(f"b{i}", tenant="b", weight=2.0))
    push(q, Req("s", priority=SHED, rows=7))
    # 3 critical + a's own 4 + b's share while a drains 5 rows at weight ratio 2 = 10.
    assert q.rows_ahead(STD, "a") == 3 + 4 + 10
    assert q.rows_ahead(STD, "b") == 3 + 20 + 4  # a's share is capped by its 4 queued rows
    assert q.rows_ahead(STD, "newcomer", weight=1.0) == 3 + 1 + 2
    # The 3-row critical item belongs to a peer tenant of equal weight: one row of it counts.
    assert q.rows_ahead(CRIT, "x") == 1
    assert q.rows_ahead(SHED, "t") == 3 + 24 + 7  # all higher rows, then its own 7
    assert q.rows_ahead(SHED, "other") == 3 + 24 + 1


def _served_before(q: FairQueue[Req], target: Req) -> int:
    rows = 0
    while (r := q.pop(0.0)) is not target:
        assert r is not None
        rows += r.rows
    return rows


def test_rows_ahead_is_an_upper_bound_for_fresh_unit_row_backlogs() -> None:
    rng = random.Random(11)
    for _ in range(200):
        q: FairQueue[Req] = FairQueue()
        tenants = {f"t{i}": rng.choice([0.5, 1.0, 1.5, 3.0]) for i in range(rng.randint(1, 4))}
        for tenant, weight in tenants.items():
            for j in range(rng.randint(0, 12)):
                push(q, Req(f"{tenant}-{j}", tenant=tenant, weight=weight, deadline=j))
        me = rng.choice(list(tenants))
        estimate = q.rows_ahead(STD, me, rows=1)
        target = push(q, Req("new", tenant=me, weight=tenants[me], deadline=1e9))
        actual = _served_before(q, target)
        assert actual <= estimate <= actual + len(tenants) + 1
