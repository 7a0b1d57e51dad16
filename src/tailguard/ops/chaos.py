"""Chaos runs: load (:mod:`tailguard.load.runner`) while faults hit a deployment's replicas.

Faults (:class:`FaultKind`), on a fixed schedule or at seeded random times
(:func:`plan_faults`, pure and deterministic):

- ``kill``: SIGKILL a ready replica (the gateway retries its batch elsewhere and restarts it);
- ``stop``: SIGSTOP a replica, SIGCONT after ``stop_hold_s`` (a hung process);
- ``delay``: SIGSTOP/SIGCONT bursts of ``delay_ms`` for ``delay_burst_s`` (a slow replica);
- ``restart``: the rolling restart endpoint (``POST /v1/deployments/D/restart``).

Replica PIDs come from ``GET /v1/deployments``; signals only reach processes on this machine,
so the URL must be a loopback address, and a PID is signalled only if it is a tailguard
replica worker. The report (:class:`ChaosReport`) states each fault (time, kind, PID), the
requests lost (sent without ever getting an HTTP answer: must be 0), errors by kind, and the
time to recover the SLO after each fault, from per-second latency buckets
(:func:`latency_buckets`, :func:`recovery_s`)::

    report = run_chaos(LoadSpec(url, model="sleep", rate_rps=80, duration_s=60),
                       ChaosConfig(faults=(FaultKind.KILL,), every_s=10.0))
    assert report.lost == 0
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import heapq
import ipaddress
import itertools
import json
import math
import os
import signal
import threading
import time
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np

from tailguard.load.report import LoadResult, Recording, summarize
from tailguard.load.runner import new_event_loop, record_load
from tailguard.load.spec import LoadProgress, LoadSpec
from tailguard.observe.percentiles import percentile

__all__ = [
    "ChaosConfig",
    "ChaosReport",
    "FaultKind",
    "InjectedFault",
    "PlannedFault",
    "SecondBucket",
    "check_loopback",
    "format_report",
    "latency_buckets",
    "plan_faults",
    "recovery_s",
    "run_chaos",
]


class FaultKind(StrEnum):
    KILL = "kill"
    STOP = "stop"
    DELAY = "delay"
    RESTART = "restart"


@dataclass(frozen=True)
class ChaosConfig:
    """Which faults, when, and how hard. Seconds are from the start of the load."""

    faults: tuple[FaultKind, ...] = (FaultKind.KILL,)
    every_s: float = 10.0  # period of the schedule; the mean gap when ``random``
    random: bool = False
    seed: int = 0
    first_s: float | None = None  # first fault (default: ``every_s``)
    stop_hold_s: float = 2.0
    delay_ms: float = 50.0
    delay_burst_s: float = 2.0
    slo_ms: float | None = None  # default: the deployment's p99_ms

    def __post_init__(self) -> None:
        if not self.faults:
            raise ValueError("give at least one fault kind")
        if not self.every_s > 0:
            raise ValueError(f"every_s must be > 0, got {self.every_s}")
        if self.first_s is not None and self.first_s < 0:
            raise ValueError("first_s must be >= 0")
        if self.stop_hold_s <= 0 or self.delay_ms <= 0 or self.delay_burst_s <= 0:
            raise ValueError("stop_hold_s, delay_ms and delay_burst_s must be > 0")
        if self.slo_ms is not None and self.slo_ms <= 0:
            raise ValueError("slo_ms must be > 0")


@dataclass(frozen=True)
class PlannedFault:
    """A fault to inject ``at_s`` after the load starts; ``pick`` chooses the replica."""

    at_s: float
    kind: FaultKind
    pick: int


def plan_faults(cfg: ChaosConfig, duration_s: float) -> tuple[PlannedFault, ...]:
    """The faults of a run: every ``every_s`` (kinds and replicas in turn), or at Poisson
    times of mean gap ``every_s`` with random kinds and replicas from ``seed``."""
    first = cfg.every_s if cfg.first_s is None else cfg.first_s
    out: list[PlannedFault] = []
    if not cfg.random:
        for i in itertools.count():
            at = first + i * cfg.every_s
            if at >= duration_s:
                break
            out.append(PlannedFault(round(at, 6), cfg.faults[i % len(cfg.faults)], i))
        return tuple(out)
    rng = np.random.default_rng(cfg.seed)
    at = first
    while at < duration_s:
        kind = cfg.faults[int(rng.integers(len(cfg.faults)))]
        out.append(PlannedFault(round(at, 6), kind, int(rng.integers(2**31))))
        at += float(rng.exponential(cfg.every_s))
    return tuple(out)


@dataclass(frozen=True)
class SecondBucket:
    """Requests whose intended send time fell in ``[start_s, start_s + 1)``.

    ``p99_ms`` counts a server error (5xx, 429) or a missing answer as an infinite latency
    (so a second with over 1 % failures has ``p99_ms = inf``); client errors (other 4xx) are
    the caller's and left out; None for a second with nothing to judge.
    """

    start_s: float
    requests: int
    ok: int
    p99_ms: float | None

    def meets(self, slo_ms: float) -> bool | None:
        return None if self.p99_ms is None else self.p99_ms <= slo_ms


def latency_buckets(intended_s: np.ndarray, done_s: np.ndarray, code: np.ndarray,
                    duration_s: float) -> tuple[SecondBucket, ...]:
    """Per-second buckets of latency (times in seconds from the start of the load)."""
    ok = (code >= 200) & (code < 300)
    client = (code >= 400) & (code < 500) & (code != 429)
    latency = np.where(ok, done_s - intended_s, math.inf)[~client]
    ok = ok[~client]
    n = max(1, math.ceil(duration_s))
    which = np.floor(intended_s[~client]).astype(np.int64)
    order = np.argsort(which, kind="stable")
    edges = np.searchsorted(which[order], np.arange(n + 1))
    out: list[SecondBucket] = []
    for s in range(n):
        idx = order[edges[s]:edges[s + 1]]
        p99 = percentile(latency[idx], 99)
        out.append(SecondBucket(float(s), int(idx.size), int(np.count_nonzero(ok[idx])),
                                None if p99 is None else p99 * 1e3))
    return tuple(out)


def recovery_s(buckets: Sequence[SecondBucket], fault_at_s: float, until_s: float,
               slo_ms: float) -> float | None:
    """Seconds from a fault until the SLO holds again, judged per second up to ``until_s``
    (the next fault or the end): 0 if no second from the fault's own on missed it; else from
    the fault to the start of the first second meeting it after the first that missed;
    None if it never came back before ``until_s``. Times in seconds from the load start."""
    # Seconds from the fault's own up to the last one over before the next fault: the second
    # in which the next fault lands is that fault's to answer for.
    span = [b for b in buckets if b.start_s + 1 > fault_at_s and b.start_s + 1 <= until_s]
    if not span:
        span = [b for b in buckets if b.start_s + 1 > fault_at_s and b.start_s < until_s]
    missed = next((i for i, b in enumerate(span) if b.meets(slo_ms) is False), None)
    if missed is None:
        return 0.0
    back = next((b for b in span[missed + 1:] if b.meets(slo_ms)), None)
    return None if back is None else round(max(back.start_s - fault_at_s, 0.0), 3)


@dataclass(frozen=True)
class InjectedFault:
    """A fault as it happened: when (s from the load start), what, to which process."""

    at_s: float
    kind: str
    pid: int | None = None
    replica: int | None = None
    detail: str = ""
    error: str | None = None


@dataclass(frozen=True)
class ChaosReport:
    deployment: str
    slo_ms: float | None
    faults: tuple[InjectedFault, ...]
    recovery_s: tuple[float | None, ...]
    sent: int
    answered: int
    lost: int
    not_sent: int
    errors: dict[str, int]
    buckets: tuple[SecondBucket, ...]
    load: LoadResult
    warnings: tuple[str, ...] = field(default_factory=tuple)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["load"] = self.load.to_dict()
        data["buckets"] = [{**asdict(b), "p99_ms": None if b.p99_ms is None or
                            math.isinf(b.p99_ms) else round(b.p99_ms, 3)} for b in self.buckets]
        data["warnings"] = list(self.warnings)
        return data

    def to_json(self) -> str:
        return json.dumps(self.to_dict())


def check_loopback(url: str) -> None:
    """Refuse anything but a loopback URL: signals only reach processes on this machine."""
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return
    try:
        if ipaddress.ip_address(host).is_loopback:
            return
    except ValueError:
        pass
    raise ValueError(f"chaos signals the replicas' processes, so it only runs against a local "
                     f"server: {url!r} is not a loopback address (127.0.0.1, ::1, localhost)")


def _http(url: str, path: str, api_key: str | None, method: str = "GET",
          timeout_s: float = 10.0) -> Any:
    req = urllib.request.Request(url.rstrip("/") + path, method=method,
                                 data=b"" if method == "POST" else None)
    if api_key:
        req.add_header("Authorization", f"Bearer {api_key}")
    with urllib.request.urlopen(req, timeout=timeout_s) as resp:
        return json.loads(resp.read())


def _is_replica(pid: int) -> bool:
    """Only a tailguard replica worker is ever signalled (where /proc can tell)."""
    try:
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
    except FileNotFoundError:
        return not Path("/proc/self").exists()  # no /proc at all: trust the server
    except OSError:
        return False
    # A fresh interpreter runs the worker module; a replica forked from the replica template
    # keeps the template's command line (the pid is one the server lists as a replica).
    return (b"tailguard.serve.replicas.worker" in cmd
            or b"tailguard.serve.replicas.template" in cmd)


class _Injector:
    """Runs the fault plan against live replicas; every stopped PID is continued at the end."""

    def __init__(self, spec: LoadSpec, deployment: str, cfg: ChaosConfig) -> None:
        self._spec, self._name, self._cfg = spec, deployment, cfg
        self.faults: list[InjectedFault] = []
        self._events: list[tuple[float, int, Callable[[], None]]] = []
        self._seq = itertools.count()
        self._stopped: set[int] = set()
        self._threads: list[threading.Thread] = []

    def status(self) -> dict[str, Any]:
        data = _http(self._spec.url, "/v1/deployments", self._spec.api_key)
        for d in data["deployments"]:
            if d["name"] == self._name:
                return dict(d)
        raise ValueError(f"deployment {self._name!r} is not served at {self._spec.url} "
                         "(or not visible to this API key)")

    def _at(self, t: float, action: Callable[[], None]) -> None:
        heapq.heappush(self._events, (t, next(self._seq), action))

    def _signal(self, pid: int, sig: signal.Signals) -> None:
        # It may have died meanwhile (a kill, a restart): nothing left to signal then.
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
        if sig == signal.SIGSTOP:
            self._stopped.add(pid)
        elif sig == signal.SIGCONT:
            self._stopped.discard(pid)

    def inject(self, fault: PlannedFault, t0: float) -> None:
        kind = fault.kind
        at_s = round(time.perf_counter() - t0, 3)
        if kind is FaultKind.RESTART:
            self._restart(at_s)
            return
        try:
            replicas = [r for r in self.status()["replicas"] if r["state"] == "ready"
                        and r["pid"] is not None and r["pid"] not in self._stopped]
        except (OSError, ValueError) as exc:
            self.faults.append(InjectedFault(at_s, kind.value, error=f"status: {exc}"))
            return
        if not replicas:
            self.faults.append(InjectedFault(at_s, kind.value, error="no ready replica"))
            return
        r = sorted(replicas, key=lambda r: int(r["index"]))[fault.pick % len(replicas)]
        pid, index = int(r["pid"]), int(r["index"])
        if not _is_replica(pid):
            self.faults.append(InjectedFault(at_s, kind.value, pid, index,
                                             error="not a tailguard replica process"))
            return
        now = time.perf_counter()
        at_s = round(now - t0, 3)  # when the signal went, not when it was planned
        if kind is FaultKind.KILL:
            self._signal(pid, signal.SIGKILL)
            detail = "SIGKILL"
        elif kind is FaultKind.STOP:
            self._signal(pid, signal.SIGSTOP)
            self._at(now + self._cfg.stop_hold_s, lambda: self._signal(pid, signal.SIGCONT))
            detail = f"SIGSTOP, SIGCONT after {self._cfg.stop_hold_s:g} s"
        else:
            d = self._cfg.delay_ms / 1e3
            bursts = max(1, int(self._cfg.delay_burst_s / (2 * d)))
            for k in range(bursts):
                if k:
                    self._at(now + 2 * k * d, lambda: self._signal(pid, signal.SIGSTOP))
                self._at(now + (2 * k + 1) * d, lambda: self._signal(pid, signal.SIGCONT))
            self._signal(pid, signal.SIGSTOP)
            detail = f"{bursts} SIGSTOP bursts of {self._cfg.delay_ms:g} ms"
        self.faults.append(InjectedFault(at_s, kind.value, pid, index, detail))

    def _restart(self, at_s: float) -> None:
        slot = len(self.faults)
        self.faults.append(InjectedFault(at_s, "restart", detail="rolling restart requested"))

        def call() -> None:
            try:
                out = _http(self._spec.url, f"/v1/deployments/{self._name}/restart",
                            self._spec.api_key, "POST", timeout_s=600.0)
                fault = InjectedFault(at_s, "restart",
                                      detail=f"rolling restart of {out.get('restarted')} replicas")
            except (OSError, ValueError) as exc:
                fault = InjectedFault(at_s, "restart", error=f"restart: {exc}")
            self.faults[slot] = fault

        thread = threading.Thread(target=call, name="chaos-restart", daemon=True)
        thread.start()
        self._threads.append(thread)

    def run(self, plan: Sequence[PlannedFault], t0: float, done: threading.Event) -> None:
        """Inject ``plan`` (times from ``t0``, a perf_counter value) until ``done``."""
        for f in plan:
            self._at(t0 + f.at_s, functools.partial(self.inject, f, t0))
        try:
            while self._events:
                t, _, action = self._events[0]
                if done.wait(max(0.0, t - time.perf_counter())):
                    break
                heapq.heappop(self._events)
                action()
        finally:
            for pid in list(self._stopped):
                self._signal(pid, signal.SIGCONT)

    def join(self, timeout_s: float) -> None:
        for thread in self._threads:
            thread.join(timeout_s)


def run_chaos(spec: LoadSpec, cfg: ChaosConfig, deployment: str | None = None) -> ChaosReport:
    """Run ``spec``'s load against ``deployment`` (default: ``spec.model``) with faults."""
    check_loopback(spec.url)
    name = deployment or spec.model
    injector = _Injector(spec, name, cfg)
    status = injector.status()
    slo_ms = cfg.slo_ms or spec.slo_ms or (status.get("settings") or {}).get("p99_ms")
    plan = plan_faults(cfg, spec.warmup_s + spec.duration_s)
    started = threading.Event()
    done = threading.Event()
    t0_box: list[float] = []
    result: list[Recording | BaseException] = []

    def progress(p: LoadProgress) -> None:
        if not t0_box:
            t0_box.append(time.perf_counter() - p.elapsed_s)
            started.set()

    def load() -> None:
        try:
            with asyncio.Runner(loop_factory=new_event_loop) as runner:
                result.append(runner.run(record_load(spec, progress)))
        except BaseException as exc:  # re-raised in the caller's thread
            result.append(exc)
        finally:
            started.set()
            done.set()

    thread = threading.Thread(target=load, name="chaos-load", daemon=True)
    thread.start()
    started.wait()
    if t0_box and not done.is_set():
        injector.run(plan, t0_box[0], done)
    thread.join()
    injector.join(timeout_s=60.0)
    outcome = result[0] if result else RuntimeError("the load run ended without a result")
    if isinstance(outcome, BaseException):
        raise outcome
    return _report(name, slo_ms, outcome, injector.faults, spec)


def _report(name: str, slo_ms: float | None, rec: Recording, faults: list[InjectedFault],
            spec: LoadSpec) -> ChaosReport:
    start = rec.window_start_s - spec.warmup_s
    intended = rec.intended_s - start
    sent = np.isfinite(rec.sent_s)
    answered = sent & (rec.code > 0)
    load = summarize(rec, slo_ms)
    buckets = latency_buckets(intended, rec.done_s - start, rec.code,
                              spec.warmup_s + spec.duration_s)
    times = [f.at_s for f in faults]
    recovery: list[float | None] = []
    warnings = list(load.warnings)
    for i, t in enumerate(times):
        until = times[i + 1] if i + 1 < len(times) else buckets[-1].start_s + 1
        recovery.append(None if slo_ms is None else recovery_s(buckets, t, until, slo_ms))
    if slo_ms is None:
        warnings.append("no SLO (the deployment has no p99_ms; pass --slo-ms): "
                        "recovery times not computed")
    lost = int(np.count_nonzero(sent & ~answered))
    if lost:
        warnings.append(f"{lost} requests were sent and never answered (no HTTP response)")
    return ChaosReport(
        deployment=name, slo_ms=slo_ms, faults=tuple(faults), recovery_s=tuple(recovery),
        sent=int(np.count_nonzero(sent)), answered=int(np.count_nonzero(answered)), lost=lost,
        not_sent=int(np.count_nonzero(~sent)), errors=dict(load.errors), buckets=buckets,
        load=load, warnings=tuple(warnings),
    )


def format_report(report: ChaosReport) -> str:
    """The human summary ``tailguard chaos`` prints."""
    lines = [f"chaos on {report.deployment}: {len(report.faults)} faults, SLO P99 "
             f"{'-' if report.slo_ms is None else f'{report.slo_ms:g} ms'}",
             f"{'at s':>8}  {'kind':<8}{'pid':>8}{'replica':>8}  {'recovered in':<13} detail"]
    for f, rec in zip(report.faults, report.recovery_s, strict=True):
        got = "-" if rec is None else f"{rec:.1f} s"
        lines.append(f"{f.at_s:8.2f}  {f.kind:<8}{f.pid or '-':>8}"
                     f"{'-' if f.replica is None else f.replica:>8}  {got:<13} "
                     f"{f.error or f.detail}")
    verdict = "OK" if report.lost == 0 else "FAILED"
    lines.append(f"requests sent {report.sent}  answered {report.answered}  lost {report.lost} "
                 f"({verdict})  never sent {report.not_sent}")
    errors = "  ".join(f"{k} {n}" for k, n in sorted(report.errors.items())) or "none"
    lines.append(f"errors  {errors}")
    ld = report.load
    lines.append(f"latency ms  p50 {ld.p50_ms}  p99 {ld.p99_ms}  max {ld.max_ms}  "
                 f"ok {ld.ok}/{ld.requests}")
    lines.extend(f"WARNING: {w}" for w in report.warnings)
    return "\n".join(lines)
