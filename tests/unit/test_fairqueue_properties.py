"""Property tests of FairQueue: exactly-once, fairness bound, EDF, starvation bound, share cap."""

from __future__ import annotations

from dataclasses import dataclass

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tailguard.serve.deployment.queue import FairQueue, FairQueueConfig
from tailguard.serve.gate.tenants import Priority

CRIT, STD, SHED = Priority.CRITICAL, Priority.STANDARD, Priority.SHEDDABLE
CLASSES = Priority.by_rank()
FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@dataclass(eq=False)
class Item:
    n: int
    tenant: str
    priority: Priority
    deadline: float
    rows: int
    enqueued: float


def put(q: FairQueue[Item], item: Item, weight: float = 1.0, front: bool = False) -> None:
    q.push(
        item,
        tenant=item.tenant,
        priority=item.priority,
        weight=weight,
        deadline=item.deadline,
        rows=item.rows,
        now=item.enqueued,
        front=front,
    )


@dataclass(frozen=True)
class Push:
    tenant: int
    cls: int
    weight: float
    deadline: int
    rows: int
    front: bool


@dataclass(frozen=True)
class Pop:
    pass


@dataclass(frozen=True)
class Remove:
    index: int


@dataclass(frozen=True)
class Tick:
    seconds: float


Op = Push | Pop | Remove | Tick
_ops = st.lists(
    st.one_of(
        st.builds(
            Push,
            tenant=st.integers(0, 3),
            cls=st.integers(0, 2),
            weight=st.sampled_from([0.5, 1.0, 3.0]),
            deadline=st.integers(0, 20),
            rows=st.integers(0, 9),
            front=st.sampled_from([False, False, False, True]),
        ),
        st.builds(Pop),
        st.builds(Remove, index=st.integers(0, 10_000)),
        st.builds(Tick, seconds=st.floats(0.0, 0.7)),
    ),
    max_size=250,
)


@FAST
@given(ops=_ops, n=st.integers(1, 4))
def test_every_pushed_item_leaves_exactly_once_and_sizes_stay_true(ops: list[Op], n: int) -> None:
    q: FairQueue[Item] = FairQueue(FairQueueConfig(starvation_s=0.5, promotion_every_n_pops=n))
    queued: dict[int, Item] = {}
    gone: list[int] = []
    now = 0.0
    counter = 0
    for op in ops:
        if isinstance(op, Push):
            item = Item(counter, f"t{op.tenant}", CLASSES[op.cls], op.deadline, op.rows, now)
            put(q, item, weight=op.weight, front=op.front)
            queued[counter] = item
            counter += 1
        elif isinstance(op, Pop):
            peeked = q.peek(now)
            popped = q.pop(now)
            assert popped is peeked
            if popped is None:
                assert not queued
            else:
                assert queued.pop(popped.n) is popped
                gone.append(popped.n)
        elif isinstance(op, Remove):
            if queued:
                victim = list(queued.values())[op.index % len(queued)]
                assert q.remove(victim)
                assert not q.remove(victim)
                del queued[victim.n]
                gone.append(victim.n)
        else:
            now += op.seconds
        assert len(q) == len(queued)
        assert q.rows == sum(i.rows for i in queued.values())
        assert q.depth_by_priority() == {
            p: sum(1 for i in queued.values() if i.priority is p) for p in CLASSES
        }
    while (rest := q.pop(now)) is not None:
        assert queued.pop(rest.n) is rest
        gone.append(rest.n)
    assert not queued and len(q) == 0 and q.rows == 0
    assert sorted(gone) == list(range(counter))


@FAST
@given(
    weights=st.lists(st.floats(0.25, 8.0), min_size=2, max_size=4),
    sizes=st.lists(st.lists(st.integers(1, 16), min_size=1, max_size=30), min_size=4, max_size=4),
)
def test_backlogged_tenants_get_rows_in_proportion_to_weight(
    weights: list[float], sizes: list[list[int]]
) -> None:
    # Start-time fair queueing bound: for any two tenants backlogged throughout,
    # |served_u/w_u - served_v/w_v| <= max_rows_u/w_u + max_rows_v/w_v at every point.
    q: FairQueue[Item] = FairQueue()
    tenants = [f"t{i}" for i in range(len(weights))]
    per_tenant = 200
    max_rows = {}
    for t, w, pattern in zip(tenants, weights, sizes, strict=False):
        max_rows[t] = max(pattern)
        for k in range(per_tenant):
            rows = pattern[k % len(pattern)]
            put(q, Item(k, t, STD, float(k), rows, 0.0), weight=w)
    weight = dict(zip(tenants, weights, strict=False))
    served = dict.fromkeys(tenants, 0)
    left = dict.fromkeys(tenants, per_tenant)
    while all(left.values()):
        item = q.pop(0.0)
        assert item is not None
        served[item.tenant] += item.rows
        left[item.tenant] -= 1
        for u in tenants:
            for v in tenants:
                gap = served[u] / weight[u] - served[v] / weight[v]
                bound = max_rows[u] / weight[u] + max_rows[v] / weight[v]
                assert gap <= bound + 1e-9


@FAST
@given(
    items=st.lists(st.tuples(st.integers(0, 2), st.floats(0, 100), st.integers(1, 5)), max_size=80)
)
def test_each_tenant_is_served_earliest_deadline_first(
    items: list[tuple[int, float, int]],
) -> None:
    q: FairQueue[Item] = FairQueue()
    for n, (tenant, deadline, rows) in enumerate(items):
        put(q, Item(n, f"t{tenant}", STD, deadline, rows, 0.0), weight=1.0 + tenant)
    last: dict[str, tuple[float, int]] = {}
    while (item := q.pop(0.0)) is not None:
        key = (item.deadline, item.n)  # FIFO among equal deadlines
        assert key > last.get(item.tenant, (-1.0, -1))
        last[item.tenant] = key


def _run_with_continuous_critical(
    q: FairQueue[Item], dt: float, steps: int, low_every: int, low_class: Priority
) -> list[float]:
    """One critical push and one pop per step (critical never runs dry); a low-class item
    arrives every ``low_every`` steps. Returns the waits of low-class items served."""
    waits: list[float] = []
    n = 0
    for step in range(steps):
        now = step * dt
        for _ in range(10 if step == 0 else 1):
            n += 1
            put(q, Item(n, "c", CRIT, now + 5, 1, now))
        if step % low_every == 0:
            n += 1
            put(q, Item(n, "s", low_class, now + 5, 1, now))
        item = q.pop(now)
        assert item is not None
        if item.priority is not CRIT:
            waits.append(now - item.enqueued)
    return waits


@FAST
@given(
    starvation_s=st.floats(0.05, 1.0),
    n=st.integers(1, 6),
    dt=st.sampled_from([0.001, 0.005, 0.01]),
    spacing=st.integers(1, 4),
    low_class=st.sampled_from([STD, SHED]),
)
def test_lower_class_is_served_within_the_starvation_bound_under_continuous_critical(
    starvation_s: float, n: int, dt: float, spacing: int, low_class: Priority
) -> None:
    low_every = n * spacing  # lower-class arrivals within the share the guard guarantees
    steps = int((starvation_s * 3) / dt) + 4 * low_every
    q: FairQueue[Item] = FairQueue(
        FairQueueConfig(starvation_s=starvation_s, promotion_every_n_pops=n)
    )
    waits = _run_with_continuous_critical(q, dt, steps, low_every, low_class)
    assert waits, "the lower class was starved"
    for wait in waits:
        assert wait > starvation_s - 1e-9  # strict priority until the guard fires
        assert wait <= starvation_s + (n + 1) * dt + 1e-9


def test_promotions_never_take_more_than_one_in_n_pops() -> None:
    q: FairQueue[Item] = FairQueue(FairQueueConfig(starvation_s=1.0, promotion_every_n_pops=4))
    for k in range(200):
        for cls in (CRIT, SHED):
            put(q, Item(k, "t", cls, 0.0, 1, 0.0))
    served = [q.pop(10.0) for _ in range(100)]  # every sheddable item is long overdue
    pattern = [i.priority for i in served if i is not None]
    assert pattern.count(SHED) == 25
    assert pattern[:8] == [SHED, CRIT, CRIT, CRIT, SHED, CRIT, CRIT, CRIT]


def test_promotion_serves_the_oldest_overdue_item_of_all_lower_classes() -> None:
    q: FairQueue[Item] = FairQueue(FairQueueConfig(starvation_s=1.0, promotion_every_n_pops=1))
    for k, (cls, at) in enumerate([(SHED, 0.1), (STD, 0.2), (SHED, 1.5), (CRIT, 0.0)]):
        put(q, Item(k, "t", cls, 9.0, 1, at))
    for k in range(4, 10):
        put(q, Item(k, "c", CRIT, 9.0, 1, 1.6))
    order = [q.pop(2.0) for _ in range(4)]
    # The shed@0.1 and std@0.2 items are overdue (> 1 s) and go first, oldest first; the
    # shed@1.5 item is not, so critical work follows. Within the top class no aging applies.
    assert [(i.priority, i.enqueued) for i in order if i is not None] == [
        (SHED, 0.1), (STD, 0.2), (CRIT, 0.0), (CRIT, 1.6),
    ]  # fmt: skip
