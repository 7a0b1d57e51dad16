"""Closed- and open-loop load engines (the entry points are in :mod:`.load_runner`).

Closed loop (``concurrency=C``): C connections, each sending its next request the moment the
previous answer arrives; the send chain runs inside the response callback, with no task or
future per request.

Open loop (``rate_rps=R`` or a trace): intended send times come from a seeded arrival
process (:meth:`LoadSpec.offsets`) computed before the run. One timer callback sends every request
that is due, on an idle keep-alive connection, or queues it while a new connection opens (up
to ``max_connections``), then re-arms a precise wake-up (a ``timerfd`` on Linux, see
:mod:`tailguard.load.timer`) at the next intended time: sends leave within microseconds of
their schedule on an idle machine, without spinning a core. Latency is measured from the
intended time, so lag in the generator or a full pool shows up in the numbers and in the
``fell_behind`` verdict, never as a flattering tail.

Both engines stop by themselves: no new request after the window ends; what is in flight gets
``timeout_s`` to finish; a hard deadline ends the run whatever happens.

Which bytes each request sends (its body and, with a tenant mix, its tenant's key) is decided
before the run: a list with one entry per scheduled request (open loop) or a cyclic block of
2**16 entries (closed loop), so the send path does one list lookup per request.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from collections.abc import Sequence
from typing import Any

import numpy as np

from tailguard.load.client import Connection, RetryAfterConnection, Target, open_connection
from tailguard.load.report import (
    CODE_CLOSED,
    CODE_CONNECT,
    CODE_NOT_SENT,
    CODE_PROTOCOL,
    CODE_TIMEOUT,
    Recording,
)
from tailguard.load.spec import LoadProgress, LoadSpec, ProgressCallback
from tailguard.load.tenants import request_plan
from tailguard.load.timer import Wakeup, make_wakeup

_SWEEP_S = 0.02
_PROGRESS_S = 0.25
_START_DELAY_S = 0.01
_CONNECT_BACKOFF_S = 0.01
# The closed loop's request plan repeats every _BLOCK requests (a power of two: i & mask).
_BLOCK = 1 << 16


class _Engine:
    """What both loops share: connections, the record arrays, timeouts, progress, the end."""

    def __init__(
        self, spec: LoadSpec, target: Target, requests: list[bytes],
        progress: ProgressCallback | None,
        per_tenant: Sequence[Sequence[bytes]] | None = None,
    ) -> None:
        """``requests``: the bytes of each body; ``per_tenant[t]``: the same bodies with
        tenant ``t``'s key (``spec.tenants``), when the run has a tenant mix."""
        self._spec = spec
        self._target = target
        self._per_tenant: Sequence[Sequence[bytes]] = per_tenant or [requests]
        if spec.tenants is not None and len(self._per_tenant) != len(spec.tenants.tenants):
            raise ValueError("per_tenant needs one list of requests per tenant")
        self._reqs: list[bytes] = []  # the plan: the bytes of request i (see the docstring)
        self._tenant: np.ndarray | None = None
        self._timeout = spec.timeout_s
        self._progress = progress
        self._loop = asyncio.get_running_loop()
        self._finished: asyncio.Future[None] = self._loop.create_future()
        self._conns: set[Connection] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._handles: list[asyncio.Handle] = []
        self._connection_type: type[Connection] = Connection
        self._sweep_handle: asyncio.Handle | None = None
        self._opened = 0
        self._connecting = 0
        self._inflight = 0
        self._completed = 0
        self._ok = 0
        self._started = 0.0
        self._hard_deadline = math.inf
        self._next_progress = 0.0
        self._sent = np.empty(0)
        self._done = np.empty(0)
        self._code = np.empty(0, dtype=np.int32)

    def _allocate(self, n: int) -> None:
        self._sent = np.full(n, np.nan)
        self._done = np.full(n, np.nan)
        self._code = np.zeros(n, dtype=np.int32)

    def _plan(self, n: int) -> None:
        """The request of each of ``n`` slots: which tenant (seeded draw) and which body."""
        mix = self._spec.tenants
        tenant = mix.assign(n, self._spec.seed) if mix is not None else np.zeros(n, np.int16)
        self._reqs = request_plan(self._per_tenant, tenant)
        self._tenant = tenant if mix is not None else None

    def _tenant_fields(self, n: int, cyclic: bool) -> dict[str, Any]:
        mix = self._spec.tenants
        if mix is None or self._tenant is None:
            return {}
        tenant = self._tenant[np.arange(n) & (_BLOCK - 1)] if cyclic else self._tenant
        return {"tenant": tenant, "tenant_names": mix.names}

    def request_bytes(self, i: int) -> bytes:
        """The bytes request ``i`` was sent as (the closed loop's plan repeats)."""
        return self._reqs[i % len(self._reqs)]

    def _finish_error(self, i: int, code: int, now: float) -> None:
        self._done[i] = now
        self._code[i] = code
        self._completed += 1

    def _record_answer(self, conn: Connection, status: int) -> float:
        """Book an HTTP answer on ``conn`` for its request; returns the time it arrived."""
        now = time.perf_counter()
        i = conn.token
        conn.token = -1
        if now - conn.sent_at > self._timeout:
            status = CODE_TIMEOUT  # the answer came, but after the deadline the sweep checks
        self._done[i] = now
        self._code[i] = status
        self._inflight -= 1
        self._completed += 1
        if 200 <= status < 300:
            self._ok += 1
        return now

    def _spawn_connect(self) -> None:
        self._connecting += 1
        task = self._loop.create_task(self._connect())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _connect(self) -> None:
        try:
            conn = await asyncio.wait_for(
                open_connection(self, self._target, self._connection_type), self._timeout)
        except OSError:  # refused, unreachable, or TimeoutError (an OSError too)
            self._connecting -= 1
            self._on_connect_failed()
            return
        self._connecting -= 1
        self._opened += 1
        self._conns.add(conn)
        self._on_connected(conn)

    def _on_connected(self, conn: Connection) -> None:
        raise NotImplementedError

    def on_response(self, conn: Connection, status: int, keep_alive: bool) -> None:
        raise NotImplementedError

    def on_lost(self, conn: Connection, error: str) -> None:
        raise NotImplementedError

    def _on_connect_failed(self) -> None:
        raise NotImplementedError

    def _on_error(self, conn: Connection, error: str) -> None:
        """A connection was lost: fail its request in flight, if any."""
        self._conns.discard(conn)
        i = conn.token
        if i >= 0:
            conn.token = -1
            self._inflight -= 1
            self._finish_error(i, CODE_PROTOCOL if error == "protocol" else CODE_CLOSED,
                               time.perf_counter())

    def _sweep(self) -> None:
        """Time out requests past ``timeout_s``, report progress, enforce the hard deadline."""
        if self._finished.done():
            return
        now = time.perf_counter()
        for conn in list(self._conns):
            i = conn.token
            if i >= 0 and now - conn.sent_at > self._timeout:
                conn.token = -1
                self._inflight -= 1
                self._finish_error(i, CODE_TIMEOUT, now)
                conn.abort("timeout")
        self._sweep_more(now)
        if now >= self._hard_deadline:
            self._abandon(now)
            self._finish()
            return
        self._check_drained()
        if self._finished.done():
            return
        self._sweep_handle = self._loop.call_later(_SWEEP_S, self._sweep)
        if self._progress is not None and now >= self._next_progress:
            self._next_progress = now + _PROGRESS_S
            self._progress(self._snapshot(now))

    def _sweep_more(self, now: float) -> None:
        """Engine-specific timeouts (the open loop's queue)."""

    def _abandon(self, now: float) -> None:
        """At the hard deadline: whatever is still in flight timed out."""
        for conn in list(self._conns):
            if conn.token >= 0:
                self._finish_error(conn.token, CODE_TIMEOUT, now)
                conn.token = -1
        self._inflight = 0

    def _snapshot(self, now: float) -> LoadProgress:
        raise NotImplementedError

    def _check_drained(self) -> None:
        raise NotImplementedError

    def _finish(self) -> None:
        if not self._finished.done():
            self._finished.set_result(None)

    async def _wait_and_close(self) -> None:
        try:
            await self._finished
        finally:
            for handle in self._handles:
                handle.cancel()
            if self._sweep_handle is not None:
                self._sweep_handle.cancel()
            for task in list(self._tasks):
                task.cancel()
            for conn in list(self._conns):
                if conn.token >= 0:
                    conn.token = -1
                    conn.abort("closed")
                else:
                    conn.close()
            if self._progress is not None:
                self._progress(self._snapshot(time.perf_counter()))


class ClosedLoop(_Engine):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._n = 0
        self._stopping = False
        self._stop_at = math.inf
        assert self._spec.concurrency is not None
        self._concurrency = self._spec.concurrency
        if self._spec.honour_retry_after:
            self._connection_type = RetryAfterConnection

    async def run(self) -> Recording:
        spec = self._spec
        # Room for 20k req/s over the run, grown by doubling if a faster server needs it.
        self._allocate(int(min(2_000_000, 20_000 * (spec.warmup_s + spec.duration_s) + 1024)))
        self._plan(_BLOCK)
        self._started = time.perf_counter()
        window_start = self._started + spec.warmup_s
        self._stop_at = window_start + spec.duration_s
        self._hard_deadline = self._stop_at + self._timeout + 1.0
        for _ in range(self._concurrency):
            self._spawn_connect()
        self._handles.append(self._loop.call_later(self._stop_at - time.perf_counter(),
                                                   self._stop))
        self._sweep()
        await self._wait_and_close()
        n = self._n
        return Recording(
            intended_s=self._sent[:n], sent_s=self._sent[:n], done_s=self._done[:n],
            code=self._code[:n], window_start_s=window_start, window_end_s=self._stop_at,
            mode="closed", concurrency=self._concurrency, connections_opened=self._opened,
            started_s=self._started, **self._tenant_fields(n, cyclic=True),
        )

    def _stop(self) -> None:
        self._stopping = True
        self._check_drained()

    def _check_drained(self) -> None:
        if self._stopping and self._inflight == 0:
            self._finish()

    def _index(self) -> int:
        i = self._n
        self._n = i + 1
        if i >= self._sent.size:
            extra = self._sent.size
            self._sent = np.concatenate([self._sent, np.full(extra, np.nan)])
            self._done = np.concatenate([self._done, np.full(extra, np.nan)])
            self._code = np.concatenate([self._code, np.zeros(extra, dtype=np.int32)])
        return i

    def _send(self, conn: Connection) -> None:
        i = self._index()
        now = time.perf_counter()
        self._sent[i] = now
        self._inflight += 1
        conn.send(self._reqs[i & (_BLOCK - 1)], i, now)

    def _on_connected(self, conn: Connection) -> None:
        if self._stopping:
            conn.close()
        else:
            self._send(conn)

    def _on_connect_failed(self) -> None:
        now = time.perf_counter()
        i = self._index()
        self._sent[i] = now
        self._finish_error(i, CODE_CONNECT, now)
        if not self._stopping:
            self._loop.call_later(_CONNECT_BACKOFF_S, self._respawn)  # checks state itself

    def _respawn(self) -> None:
        if not self._stopping:
            self._spawn_connect()

    def on_response(self, conn: Connection, status: int, keep_alive: bool) -> None:
        now = self._record_answer(conn, status)
        if now >= self._stop_at:
            self._stopping = True
            self._check_drained()
        elif not keep_alive:
            conn.close()  # -> on_lost, which opens the next connection
        elif isinstance(conn, RetryAfterConnection) and conn.retry_after_s and status in (
                429, 503):
            # A real client waits as told (not past the end of the run).
            wait_s = min(conn.retry_after_s, self._stop_at - now)
            self._handles.append(self._loop.call_later(wait_s, self._send_later, conn))
        else:
            self._send(conn)

    def _send_later(self, conn: Connection) -> None:
        if conn.lost:
            return
        if self._stopping or time.perf_counter() >= self._stop_at:
            self._stopping = True
            self._check_drained()
        else:
            self._send(conn)

    def on_lost(self, conn: Connection, error: str) -> None:
        self._on_error(conn, error)
        if not self._stopping and not self._finished.done():
            self._spawn_connect()
        self._check_drained()

    def _snapshot(self, now: float) -> LoadProgress:
        return LoadProgress(now - self._started, self._stop_at - self._started, self._n,
                            self._completed, self._ok, self._inflight)


class OpenLoop(_Engine):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._idle: list[Connection] = []
        self._pending: deque[int] = deque()
        self._schedule: list[float] = []
        self._intended = np.empty(0)
        self._queued = np.zeros(0, dtype=bool)
        self._i = 0
        self._waited = 0
        self._window_end = math.inf
        self._spare = 2
        self._running = False  # set once the schedule exists
        self._wakeup: Wakeup = make_wakeup(self._loop, self._tick)

    async def run(self) -> Recording:
        try:
            return await self._run()
        finally:
            self._wakeup.close()

    async def _run(self) -> Recording:
        spec = self._spec
        offsets = spec.offsets()
        self._allocate(offsets.size)
        self._plan(offsets.size)
        # The mean offered rate: the spec's, or that of a trace over the window.
        in_window = np.count_nonzero((offsets >= spec.warmup_s)
                                     & (offsets < spec.warmup_s + spec.duration_s))
        rate = spec.rate_rps if not spec.is_trace else round(in_window / spec.duration_s, 3)
        mean_rate = max(1.0, offsets.size / (spec.warmup_s + spec.duration_s))
        self._queued = np.zeros(offsets.size, dtype=bool)
        # Open a few connections up front (about 5 ms worth of arrivals); the pool grows on
        # demand up to max_connections.
        initial = min(spec.max_connections, max(4, math.ceil(mean_rate * 0.005)))
        self._spare = min(initial, max(2, math.ceil(mean_rate * 0.001)))
        for _ in range(initial):
            self._spawn_connect()
        ready_by = time.perf_counter() + min(1.0, self._timeout)
        while self._connecting and time.perf_counter() < ready_by:
            await asyncio.sleep(0.001)
        self._started = time.perf_counter() + _START_DELAY_S
        self._intended = offsets + self._started
        self._schedule = self._intended.tolist()
        window_start = self._started + spec.warmup_s
        self._window_end = window_start + spec.duration_s
        self._hard_deadline = self._window_end + self._timeout + 1.0
        self._running = True
        self._wakeup.at(self._schedule[0] if self._schedule else self._started)
        self._sweep()
        await self._wait_and_close()
        return Recording(
            intended_s=self._intended, sent_s=self._sent, done_s=self._done, code=self._code,
            window_start_s=window_start, window_end_s=self._window_end, mode="open",
            offered_rps=rate, connections_opened=self._opened,
            waited_for_connection=self._waited, max_connections=spec.max_connections,
            queued=self._queued, started_s=self._started,
            **self._tenant_fields(offsets.size, cyclic=False),
        )

    def _tick(self) -> None:
        if self._finished.done():
            return
        schedule = self._schedule
        n = len(schedule)
        i = self._i
        now = time.perf_counter()
        idle = self._idle
        sent = self._sent
        reqs = self._reqs
        while i < n and schedule[i] <= now:
            if idle:
                conn = idle.pop()
                t = time.perf_counter()
                sent[i] = t
                self._inflight += 1
                conn.send(reqs[i], i, t)
                if len(idle) < self._spare:
                    # Open the next connection before it is needed: a request that has to
                    # wait for a connect is a late request.
                    self._grow(count_wait=False)
            else:
                self._queued[i] = True
                self._pending.append(i)
                self._grow(count_wait=True)
            i += 1
            if i & 63 == 0:
                now = time.perf_counter()
        self._i = i
        if i >= n:
            self._check_drained()
            return
        self._wakeup.at(schedule[i])

    def _grow(self, count_wait: bool) -> None:
        if self._connecting >= self._spare + len(self._pending):
            return  # enough connects under way for the demand already seen
        if len(self._conns) + self._connecting < self._spec.max_connections:
            self._spawn_connect()
        elif count_wait:
            self._waited += 1

    def _release(self, conn: Connection) -> None:
        """A connection became free: it takes the oldest queued request, or waits idle."""
        if self._pending:
            i = self._pending.popleft()
            t = time.perf_counter()
            self._sent[i] = t
            self._inflight += 1
            conn.send(self._reqs[i], i, t)
        else:
            self._idle.append(conn)

    def _on_connected(self, conn: Connection) -> None:
        if self._finished.done():
            conn.close()
        else:
            self._release(conn)

    def _on_connect_failed(self) -> None:
        if self._pending:
            self._finish_error(self._pending.popleft(), CODE_CONNECT, time.perf_counter())
            if self._pending:
                self._loop.call_later(_CONNECT_BACKOFF_S, self._regrow)  # checks state itself
        self._check_drained()

    def _regrow(self) -> None:
        if self._pending and not self._finished.done():
            self._grow(count_wait=False)

    def on_response(self, conn: Connection, status: int, keep_alive: bool) -> None:
        self._record_answer(conn, status)
        if keep_alive:
            self._release(conn)
        else:
            conn.close()  # -> on_lost, which opens another if requests are queued
        if self._i >= len(self._schedule):
            self._check_drained()

    def on_lost(self, conn: Connection, error: str) -> None:
        self._on_error(conn, error)
        if conn in self._idle:
            self._idle.remove(conn)
        if self._pending and not self._finished.done():
            self._grow(count_wait=False)
        self._check_drained()

    def _sweep_more(self, now: float) -> None:
        # A request queued for a connection longer than the timeout has timed out unsent.
        pending = self._pending
        while pending and now - self._intended[pending[0]] > self._timeout:
            self._finish_error(pending.popleft(), CODE_TIMEOUT, now)

    def _abandon(self, now: float) -> None:
        super()._abandon(now)
        while self._pending:
            self._finish_error(self._pending.popleft(), CODE_TIMEOUT, now)
        for i in range(self._i, len(self._schedule)):
            self._finish_error(i, CODE_NOT_SENT, now)
        self._i = len(self._schedule)

    def _check_drained(self) -> None:
        if (self._running and self._i >= len(self._schedule) and self._inflight == 0
                and not self._pending):
            self._finish()

    def _snapshot(self, now: float) -> LoadProgress:
        return LoadProgress(now - self._started, self._window_end - self._started, self._i,
                            self._completed, self._ok, self._inflight)
