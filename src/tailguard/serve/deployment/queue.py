"""A deployment's request queue: strict priority classes, weighted fairness, EDF, aging.

The batcher of a deployment calls ``peek``/``pop`` repeatedly to fill a batch; the gateway
``push``es admitted requests and ``remove``s those whose client went away::

    q: FairQueue[Request] = FairQueue(FairQueueConfig(starvation_s=1.0))
    q.push(req, tenant="search", priority=Priority.CRITICAL, weight=2.0,
           deadline=now + 0.1, rows=8, now=now)
    while batch_rows < max_batch_size and (nxt := q.peek(now)) is not None:
        ...
        q.pop(now)

Order of service, decided at every ``pop``:

1. **Strict priority between classes**: an item of a lower class is served only when every
   higher class is empty ...
2. **... except for the starvation guard (aging with a share cap)**: when the oldest item of a
   lower class has waited longer than ``starvation_s``, it is served next (the oldest such item
   of all lower classes first), but at most one of every ``promotion_every_n_pops`` pops is such
   a promotion. So while higher classes are busy, a lower-class item waits at most
   ``starvation_s`` plus ``n`` pops (as long as lower-class arrivals stay within ``1/n`` of the
   pops), and lower classes can never take more than ``1/n`` of the pops from a backlogged
   higher class. A promoted item is charged to its tenant's fair share like any other.
   Admission control sheds lower classes first, so promotions stay rare in practice.
3. **Weighted fair sharing of rows between tenants within a class**: start-time fair queueing
   (Goyal et al., 1996) over per-tenant flows. Each flow has a virtual start tag; the flow with
   the smallest tag is served and its tag advances by ``rows / weight``, so under backlog the
   rows served converge to the weights, whatever the request sizes. A flow that was idle
   restarts at the class's virtual time, so idling earns no credit.
4. **Earliest deadline first within a tenant's flow** (FIFO between equal deadlines).

Before all of this comes the **front lane**: ``push(..., front=True)`` is for a request that
already left the queue once (its replica died mid-batch) and is retried. Front items are served
first, in FIFO order, and are not charged to their tenant again.

Everything is deterministic given the call sequence (ties go to the tenant first seen, then to
the item pushed first). ``now`` must not go backwards between calls. Push and pop are
O(log n) heap operations; ``remove`` marks the entry dead and heaps drop it lazily (with
compaction when dead entries outnumber live ones).
"""

from __future__ import annotations

import heapq
import math
from collections import deque
from dataclasses import dataclass
from enum import Enum
from typing import Generic, TypeVar

from tailguard.serve.gate.tenants import Priority

__all__ = ["FairQueue", "FairQueueConfig"]

T = TypeVar("T")

_CLASSES = Priority.by_rank()
_COMPACT_MIN = 64


class _Kind(Enum):
    """Why ``_select`` chose an entry."""

    FRONT = "front"
    PROMOTED = "promoted"
    REGULAR = "regular"


_FRONT, _PROMOTED, _REGULAR = _Kind.FRONT, _Kind.PROMOTED, _Kind.REGULAR


@dataclass(frozen=True)
class FairQueueConfig:
    """Scheduling knobs of one deployment queue.

    ``starvation_s``: a lower-class item that has waited longer than this is promoted.
    ``promotion_every_n_pops``: at most one of every n pops serves a promoted item (1 = every
    pop may; higher = a smaller guaranteed share for lower classes under overload).
    """

    starvation_s: float = 1.0
    promotion_every_n_pops: int = 4

    def __post_init__(self) -> None:
        if not self.starvation_s > 0:
            raise ValueError(f"starvation_s must be > 0, got {self.starvation_s}")
        if self.promotion_every_n_pops < 1:
            raise ValueError(
                f"promotion_every_n_pops must be >= 1, got {self.promotion_every_n_pops}"
            )


class _Entry(Generic[T]):
    __slots__ = ("alive", "deadline", "enqueued_s", "flow", "item", "rank", "rows")

    def __init__(
        self,
        item: T,
        rank: int,
        flow: _Flow[T] | None,  # None in the front lane
        deadline: float,
        rows: int,
        enqueued_s: float,
    ) -> None:
        self.item = item
        self.rank = rank
        self.flow = flow
        self.deadline = deadline
        self.rows = rows
        self.enqueued_s = enqueued_s
        self.alive = True


class _Flow(Generic[T]):
    """One tenant's items within one class, in EDF order."""

    __slots__ = ("dead", "heap", "in_class_heap", "live", "order", "rows", "tag", "weight")

    def __init__(self, order: int, weight: float, tag: float) -> None:
        self.order = order  # tie-break between equal tags: first seen first
        self.weight = weight
        self.tag = tag  # virtual start tag of this flow's next service
        self.heap: list[tuple[float, int, _Entry[T]]] = []
        self.live = 0
        self.dead = 0  # entries in heap that were removed or promoted
        self.rows = 0
        self.in_class_heap = False


class _Class(Generic[T]):
    """One priority class: tenant flows, the SFQ heap of flows, and an arrival FIFO for aging."""

    __slots__ = ("fifo", "fifo_dead", "flows", "heap", "live", "priority", "rows", "vtime")

    def __init__(self, priority: Priority) -> None:
        self.priority = priority
        self.flows: dict[str, _Flow[T]] = {}
        self.heap: list[tuple[float, int, _Flow[T]]] = []
        self.fifo: deque[_Entry[T]] = deque()
        self.fifo_dead = 0
        self.vtime = 0.0
        self.live = 0
        self.rows = 0

    def top_flow(self) -> _Flow[T] | None:
        heap = self.heap
        while heap:
            tag, order, flow = heap[0]
            if flow.live == 0:
                heapq.heappop(heap)
                flow.in_class_heap = False
                # All its entries are dead: drop them now.
                flow.heap.clear()
                flow.dead = 0
            elif tag != flow.tag:
                # Tags only grow, so a stale entry sits too high: re-key it.
                heapq.heapreplace(heap, (flow.tag, order, flow))
            else:
                return flow
        return None

    def oldest(self) -> _Entry[T] | None:
        fifo = self.fifo
        while fifo and not fifo[0].alive:
            fifo.popleft()
            self.fifo_dead -= 1
        return fifo[0] if fifo else None


def _head(flow: _Flow[T]) -> _Entry[T]:
    heap = flow.heap
    while not heap[0][2].alive:
        heapq.heappop(heap)
        flow.dead -= 1
    return heap[0][2]


class FairQueue(Generic[T]):
    """Per-deployment queue; see the module docstring for the service order."""

    def __init__(self, config: FairQueueConfig | None = None) -> None:
        self.config = config or FairQueueConfig()
        self._classes: tuple[_Class[T], ...] = tuple(_Class(p) for p in _CLASSES)
        self._entries: dict[int, _Entry[T]] = {}  # id(item) -> entry; items need not hash
        self._seq = 0
        self._flow_seq = 0
        self._rows = 0
        # Pops since the last promotion; starts "long ago" so the first promotion may happen.
        self._since_promotion = self.config.promotion_every_n_pops
        self._front: deque[_Entry[T]] = deque()
        self._front_dead = 0
        self._front_live = [0] * len(_CLASSES)
        self._front_rows = [0] * len(_CLASSES)

    # ------------------------------------------------------------------ sizes

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def rows(self) -> int:
        """Rows of all queued items."""
        return self._rows

    def depth_by_priority(self) -> dict[Priority, int]:
        return {c.priority: c.live + self._front_live[i] for i, c in enumerate(self._classes)}

    def rows_by_priority(self) -> dict[Priority, int]:
        return {c.priority: c.rows + self._front_rows[i] for i, c in enumerate(self._classes)}

    def rows_ahead_by_class(self) -> dict[Priority, int]:
        """Per class: queued rows of that class and every higher one (tenant-blind, pessimistic).

        O(1); tenant-blind: admission reads the tenant-aware :meth:`rows_ahead`.
        """
        out: dict[Priority, int] = {}
        total = sum(self._front_rows)
        for cls in self._classes:
            total += cls.rows
            out[cls.priority] = total
        return out

    def rows_ahead(
        self, priority: Priority, tenant: str, *, rows: int = 1, weight: float | None = None
    ) -> int:
        """Estimated rows served before a new item of ``rows`` rows from this class and tenant.

        All rows of higher classes, all of the tenant's own queued rows in the class (as if the
        new item had the latest deadline), and for every other tenant of the class the rows it
        gets by weight while the tenant's rows drain: ``min(its rows, ceil(drained * w_u / w_t))``
        — an upper bound for backlogged flows of one-row items, within about one request per
        tenant otherwise. Promotions of lower classes are ignored. O(tenants in the class).
        """
        ahead = sum(self._front_rows)
        for cls in self._classes:
            if cls.priority == priority:
                break
            ahead += cls.rows
        cls = self._classes[priority.rank]
        own = cls.flows.get(tenant)
        own_rows = own.rows if own is not None else 0
        if weight is None:
            weight = own.weight if own is not None else 1.0
        elif not 0 < weight < math.inf:
            raise ValueError(f"weight must be a positive finite number, got {weight}")
        drained = own_rows + rows
        ahead += own_rows
        for name, flow in cls.flows.items():
            if name != tenant and flow.rows:
                ahead += min(flow.rows, math.ceil(drained * flow.weight / weight))
        return ahead

    def oldest_wait_s(self, now: float) -> float:
        """How long the oldest queued item has waited (0 when empty)."""
        starts = [e.enqueued_s for c in self._classes if (e := c.oldest()) is not None]
        starts.extend(e.enqueued_s for e in self._front if e.alive)
        return max(0.0, now - min(starts)) if starts else 0.0

    # ------------------------------------------------------------------ mutation

    def push(
        self,
        item: T,
        *,
        tenant: str,
        priority: Priority,
        weight: float,
        deadline: float,
        rows: int,
        now: float,
        front: bool = False,
    ) -> None:
        """Enqueue ``item``; ``deadline`` is absolute on the same clock as ``now``.

        ``front=True`` puts a retried item in the front lane (served before everything else).
        """
        if not 0 < weight < math.inf:
            raise ValueError(f"weight must be a positive finite number, got {weight}")
        if rows < 0:
            raise ValueError(f"rows must be >= 0, got {rows}")
        key = id(item)
        if key in self._entries:
            raise ValueError("item is already queued")
        if front:
            entry = _Entry(item, priority.rank, None, deadline, rows, now)
            self._front.append(entry)
            self._front_live[priority.rank] += 1
            self._front_rows[priority.rank] += rows
            self._entries[key] = entry
            self._rows += rows
            return
        cls = self._classes[priority.rank]
        flow = cls.flows.get(tenant)
        if flow is None:
            self._flow_seq += 1
            flow = _Flow(self._flow_seq, weight, cls.vtime)
            cls.flows[tenant] = flow
        flow.weight = weight
        if flow.live == 0:
            # An idle flow restarts at the class's virtual time: no credit for idling.
            flow.tag = max(flow.tag, cls.vtime)
        entry = _Entry(item, priority.rank, flow, deadline, rows, now)
        self._seq += 1
        heapq.heappush(flow.heap, (deadline, self._seq, entry))
        flow.live += 1
        flow.rows += rows
        if not flow.in_class_heap:
            heapq.heappush(cls.heap, (flow.tag, flow.order, flow))
            flow.in_class_heap = True
        cls.fifo.append(entry)
        cls.live += 1
        cls.rows += rows
        self._entries[key] = entry
        self._rows += rows

    def peek(self, now: float) -> T | None:
        """The item ``pop(now)`` would return, without removing it.

        Pass the same ``now`` to the ``pop`` that follows: the starvation guard depends on it.
        """
        chosen = self._select(now)
        return None if chosen is None else chosen[0].item

    def pop(self, now: float) -> T | None:
        """Remove and return the next item to serve, or None when empty."""
        chosen = self._select(now)
        if chosen is None:
            return None
        entry, kind = chosen
        if kind is _FRONT:
            self._front.popleft()
            self._drop_front(entry)
            return entry.item
        flow = entry.flow
        assert flow is not None
        cls = self._classes[entry.rank]
        if kind is _PROMOTED:
            self._since_promotion = 0
            self._kill(entry, cls)  # stays in its flow heap as a dead entry
        else:
            self._since_promotion += 1
            heapq.heappop(flow.heap)  # the head, as _select found it
            cls.vtime = max(cls.vtime, flow.tag)
            self._forget(entry, cls)
        # Promoted or not, the tenant is charged for the rows, which keeps the shares honest.
        flow.tag += entry.rows / flow.weight
        return entry.item

    def remove(self, item: T) -> bool:
        """Drop a queued item (client went away, deadline timer fired). False if not queued."""
        entry = self._entries.get(id(item))
        if entry is None or entry.item is not item:
            return False
        if entry.flow is None:
            self._drop_front(entry)
            self._front_dead += 1
            if self._front_dead > _COMPACT_MIN and self._front_dead > len(self._front) // 2:
                self._front = deque(e for e in self._front if e.alive)
                self._front_dead = 0
        else:
            self._kill(entry, self._classes[entry.rank])
        return True

    # ------------------------------------------------------------------ internals

    def _drop_front(self, entry: _Entry[T]) -> None:
        entry.alive = False
        self._front_live[entry.rank] -= 1
        self._front_rows[entry.rank] -= entry.rows
        self._rows -= entry.rows
        del self._entries[id(entry.item)]

    def _select(self, now: float) -> tuple[_Entry[T], _Kind] | None:
        front = self._front
        while front and not front[0].alive:
            front.popleft()
            self._front_dead -= 1
        if front:
            return front[0], _FRONT
        top: _Class[T] | None = None
        promoted: _Entry[T] | None = None
        allow_promotion = self._since_promotion >= self.config.promotion_every_n_pops - 1
        limit = now - self.config.starvation_s
        for cls in self._classes:
            if cls.live == 0:
                continue
            if top is None:
                top = cls
                if not allow_promotion:
                    break
                continue
            oldest = cls.oldest()
            if (
                oldest is not None
                and oldest.enqueued_s < limit
                and (promoted is None or oldest.enqueued_s < promoted.enqueued_s)
            ):
                promoted = oldest
        if promoted is not None:
            return promoted, _PROMOTED
        if top is None:
            return None
        flow = top.top_flow()
        assert flow is not None  # top.live > 0 means some flow has live entries
        return _head(flow), _REGULAR

    def _forget(self, entry: _Entry[T], cls: _Class[T]) -> None:
        """Bookkeeping shared by pop and remove (the entry's heap slot is handled by callers)."""
        entry.alive = False
        flow = entry.flow
        assert flow is not None
        flow.live -= 1
        flow.rows -= entry.rows
        cls.live -= 1
        cls.rows -= entry.rows
        cls.fifo_dead += 1
        self._rows -= entry.rows
        del self._entries[id(entry.item)]
        if cls.fifo_dead > _COMPACT_MIN and cls.fifo_dead > cls.live:
            cls.fifo = deque(e for e in cls.fifo if e.alive)
            cls.fifo_dead = 0

    def _kill(self, entry: _Entry[T], cls: _Class[T]) -> None:
        """Forget an entry that is not at its flow's head right now (lazy heap deletion)."""
        self._forget(entry, cls)
        flow = entry.flow
        assert flow is not None
        flow.dead += 1
        if flow.live == 0:
            flow.heap.clear()
            flow.dead = 0
        elif flow.dead > _COMPACT_MIN and flow.dead > flow.live:
            flow.heap = [t for t in flow.heap if t[2].alive]
            heapq.heapify(flow.heap)
            flow.dead = 0
