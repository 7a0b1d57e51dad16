"""The live autoscaling controller: a loop in the serve process, off the request path.

Every ``tick_s`` (each deployment its own, from its ``autoscaling:`` spec) it builds the
deployment's :class:`MetricsSnapshot` from its :class:`LiveRecorder`, replica counts and
queue, asks the configured :class:`Autoscaler` for a count (``decide(snapshot, state, now)``,
the very code the simulator runs), and calls ``deployment.scale_to(n)`` when the count
changes. The loop never dies: an exception in one deployment's step is logged, counted in its
status and the loop goes on. The request path never waits for it: if the controller stalls,
the deployments keep serving with the replicas they have.

Scale to zero: with ``min_replicas: 0`` the controller sets ``deployment.on_cold``, so the
first request to a deployment at zero starts a replica at once rather than at the next tick.

Use it from asyncio (the gateway does)::

    controller = AutoscaleController(deployments)   # those with spec.autoscaling
    controller.start()                              # a task on the running loop
    controller.status("minilm")  # {"policy": "slo", "last_decision": {...}, "decisions": [...]}
    await controller.stop()

or step it by hand, as the unit tests do: ``controller.step("minilm", now)``.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import math
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any, Protocol

from tailguard.autoscale.live import LiveRecorder
from tailguard.autoscale.policies import Autoscaler, AutoscalerState
from tailguard.autoscale.policies.slo import SloConfig, recommend
from tailguard.autoscale.queueing import predict_latency_quantile
from tailguard.autoscale.snapshot import MetricsSnapshot
from tailguard.autoscale.spec import AutoscalingSpec
from tailguard.observe.gpu import GpuProbe

__all__ = [
    "AutoscaleController",
    "Decision",
    "ScalableDeployment",
    "ScalableSpec",
    "controller_for",
]

log = logging.getLogger("tailguard.autoscale")

_MIN_SLEEP_S = 0.005  # never spin, even when a tick is overdue


class ScalableSpec(Protocol):
    """The deployment settings the controller reads (``DeploymentSpec`` has them all)."""

    @property
    def name(self) -> str: ...
    @property
    def max_batch_size(self) -> int: ...
    @property
    def max_wait_ms(self) -> float: ...
    @property
    def p99_ms(self) -> float | None: ...
    @property
    def autoscaling(self) -> AutoscalingSpec | None: ...


class ScalableDeployment(Protocol):
    """What the controller needs of a deployment: metrics, counts and ``scale_to``."""

    on_cold: Callable[[], None] | None

    @property
    def spec(self) -> ScalableSpec: ...
    @property
    def recorder(self) -> LiveRecorder: ...
    @property
    def queued_rows(self) -> int: ...
    def replica_counts(self) -> dict[str, int]: ...
    def scale_to(self, replicas: int) -> None: ...


@dataclass(frozen=True)
class Decision:
    """One controller step for one deployment: what it saw, chose and why."""

    at_s: float  # loop clock
    wall_time: float  # unix time, for people reading the status
    current: int  # ready + starting replicas before the step
    target: int
    applied: bool  # scale_to was called
    reason: str
    arrival_rps: float
    p99_s: float | None
    busy_ratio: float
    queue_depth: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class _Managed:
    """One autoscaled deployment: its policy, state, schedule and decision log."""

    def __init__(self, deployment: ScalableDeployment, spec: AutoscalingSpec) -> None:
        self.deployment = deployment
        self.spec = spec
        self.autoscaler: Autoscaler[Any, Any] = spec.autoscaler(deployment.spec.p99_ms)
        self.state: AutoscalerState[Any] = self.autoscaler.initial_state()
        self.decisions: deque[Decision] = deque(maxlen=spec.history)  # changes only
        self.last: Decision | None = None
        self.last_snapshot: MetricsSnapshot | None = None
        self.next_due_s: float | None = None
        self.errors = 0
        self.last_error: str | None = None


class AutoscaleController:
    """Runs the autoscaling loop of every deployment whose spec has ``autoscaling``."""

    def __init__(
        self,
        deployments: Iterable[ScalableDeployment],
        *,
        wall_clock: Callable[[], float] = time.time,
        gpu: GpuProbe | None = None,
    ) -> None:
        self._managed: dict[str, _Managed] = {}
        self._wall = wall_clock
        self._gpu = GpuProbe() if gpu is None else gpu
        self._task: asyncio.Task[None] | None = None
        for deployment in deployments:
            self.add(deployment)

    # ---------------------------------------------------------------- set-up
    def add(self, deployment: ScalableDeployment) -> None:
        """Manage ``deployment`` (it must have ``spec.autoscaling``)."""
        spec = deployment.spec.autoscaling
        name = deployment.spec.name
        if spec is None:
            raise ValueError(f"deployment {name!r} has no autoscaling spec")
        if name in self._managed:
            raise ValueError(f"deployment {name!r} is already autoscaled")
        managed = _Managed(deployment, spec)
        self._managed[name] = managed
        if spec.min_replicas == 0:
            deployment.on_cold = lambda: self._cold_start(managed)

    def remove(self, name: str) -> None:
        """Stop managing ``name`` (a removed deployment, or one whose autoscaling spec
        changed: ``add`` it again). Its replicas stay as they are."""
        managed = self._managed.pop(name, None)
        if managed is not None:
            managed.deployment.on_cold = None

    @property
    def names(self) -> list[str]:
        return list(self._managed)

    def __contains__(self, name: object) -> bool:
        return name in self._managed

    # ---------------------------------------------------------------- one step
    def snapshot(
        self, name: str, now: float, counts: Mapping[str, int] | None = None
    ) -> MetricsSnapshot:
        """The metrics snapshot of ``name`` at ``now`` (loop clock, seconds)."""
        m = self._managed[name]
        d, spec = m.deployment, m.spec
        snap = d.recorder.snapshot(
            now,
            counts=d.replica_counts() if counts is None else counts,
            queue_depth=d.queued_rows,
            window_s=spec.window_s,
            recent_window_s=min(spec.recent_window_s, spec.window_s),
            max_batch_size=d.spec.max_batch_size,
            batch_wait_s=d.spec.max_wait_ms / 1000.0,
            deployment=name,
        )
        return dataclasses.replace(snap, **_extra_signals(d, self._gpu))

    def step(self, name: str, now: float) -> Decision:
        """Snapshot, decide and actuate ``name`` once; returns the decision."""
        m = self._managed[name]
        counts = m.deployment.replica_counts()
        snap = self.snapshot(name, now, counts)
        current = snap.current_replicas
        target, state = m.autoscaler.decide(snap, m.state, now)
        m.state = state
        m.last_snapshot = snap
        applied = target != counts["desired"]
        if applied:
            m.deployment.scale_to(target)
        decision = Decision(
            at_s=now,
            wall_time=self._wall(),
            current=current,
            target=target,
            applied=applied,
            reason=self._reason(m, snap, target),
            arrival_rps=snap.arrival_rate_rps,
            p99_s=snap.latency_p99_s,
            busy_ratio=snap.busy_ratio,
            queue_depth=snap.queue_depth,
        )
        m.last = decision
        if target != current:
            m.decisions.append(decision)
            log.info("autoscale %s: %d -> %d replicas (%s)", name, current, target,
                     decision.reason)
        return decision

    def tick(self, now: float) -> float:
        """Step every deployment that is due at ``now``; returns when the next one is due.

        A failing step is logged and counted; it never stops the others or the loop.
        """
        for name, m in self._managed.items():
            if m.next_due_s is not None and now < m.next_due_s:
                continue
            try:
                self.step(name, now)
            except Exception as exc:  # the loop must survive any bug or bad metric
                m.errors += 1
                m.last_error = f"{type(exc).__name__}: {exc}"
                log.exception("autoscale %s: step failed", name)
            # Fixed-rate schedule, skipping ticks missed while the loop was blocked.
            due = now + m.spec.tick_s if m.next_due_s is None else m.next_due_s + m.spec.tick_s
            m.next_due_s = due if due > now else now + m.spec.tick_s
        dues = [m.next_due_s for m in self._managed.values() if m.next_due_s is not None]
        return min(dues, default=math.inf)

    def _cold_start(self, m: _Managed) -> None:
        """A request arrived while scaled to zero: start one replica now, not at the tick."""
        counts = m.deployment.replica_counts()
        if counts["desired"] > 0:
            return
        target = max(1, m.spec.min_replicas)
        m.deployment.scale_to(target)
        now = asyncio.get_running_loop().time() if _loop_running() else math.nan
        decision = Decision(
            at_s=now, wall_time=self._wall(), current=0, target=target, applied=True,
            reason="cold start: a request arrived while scaled to zero",
            arrival_rps=0.0, p99_s=None, busy_ratio=0.0, queue_depth=m.deployment.queued_rows,
        )
        m.last = decision
        m.decisions.append(decision)
        log.info("autoscale %s: cold start, 0 -> %d replicas", m.deployment.spec.name, target)

    # ---------------------------------------------------------------- the loop
    def start(self) -> None:
        """Start the loop as a task on the running event loop (no-op with nothing to scale)."""
        if self._task is not None or not self._managed:
            return
        self._task = asyncio.create_task(self._run(), name="tailguard-autoscaler")

    async def stop(self) -> None:
        """Stop the loop; the deployments keep the replica counts they have."""
        task, self._task = self._task, None
        if task is None:
            return
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                next_due = self.tick(loop.time())
                delay = max(next_due - loop.time(), _MIN_SLEEP_S)
            except Exception:  # tick() catches per deployment; this is the last net
                log.exception("autoscale loop error")
                delay = 1.0
            await asyncio.sleep(delay)

    # ---------------------------------------------------------------- status
    def status(self, name: str) -> dict[str, Any]:
        """What ``GET /v1/deployments`` adds under ``autoscaling`` for ``name``."""
        m = self._managed[name]
        snap = m.last_snapshot
        return {
            "policy": m.autoscaler.name,
            "min_replicas": m.spec.min_replicas,
            "max_replicas": m.spec.max_replicas,
            "tick_s": m.spec.tick_s,
            "window_s": m.spec.window_s,
            "running": self.running,
            "metrics": None if snap is None else _metrics(snap),
            "last_decision": None if m.last is None else m.last.to_dict(),
            "decisions": [d.to_dict() for d in reversed(m.decisions)],  # newest first
            "state": m.state.state_dict(),
            "errors": m.errors,
            "last_error": m.last_error,
        }

    def statuses(self) -> dict[str, dict[str, Any]]:
        return {name: self.status(name) for name in self._managed}

    # ---------------------------------------------------------------- reasons
    @staticmethod
    def _reason(m: _Managed, snap: MetricsSnapshot, target: int) -> str:
        """One line a person can check: the signals, and what the policy made of them."""
        parts: list[str] = []
        config = m.autoscaler.config
        if snap.latency_p99_s is not None:
            if isinstance(config, SloConfig):
                cmp = ">" if snap.latency_p99_s > config.slo_p99_s else "<="
                parts.append(f"p99 {snap.latency_p99_s:.3f} s {cmp} target "
                             f"{config.slo_p99_s:.3f} s")
            else:
                parts.append(f"p99 {snap.latency_p99_s:.3f} s")
        parts.append(f"arrival {snap.arrival_rate_rps:.1f} rps "
                     f"(recent {snap.recent_arrival_rate_rps or 0.0:.1f})")
        parts.append(f"busy {snap.busy_ratio:.2f}")
        if snap.queue_depth:
            parts.append(f"queue {snap.queue_depth} rows")
        if isinstance(config, SloConfig):
            parts.append(f"slo recommends {recommend(snap, config)}")
            if target > 0 and snap.rows_per_s > 0:
                pred = predict_latency_quantile(
                    snap.rows_per_s, target, snap.service_profile, config.quantile,
                    snap.arrival_cv, snap.batch_wait_s).latency_s
                shown = "overloaded" if not math.isfinite(pred) else f"{pred:.3f} s"
                parts.append(f"predicted p99 at {target}: {shown}")
        bounds = m.autoscaler.bounds
        if target == bounds.max_replicas and target != snap.current_replicas:
            parts.append("at max_replicas")
        elif target == bounds.min_replicas and target != snap.current_replicas:
            parts.append("at min_replicas")
        verb = ("scale up" if target > snap.current_replicas
                else "scale down" if target < snap.current_replicas else "hold")
        return f"{verb} {snap.current_replicas} -> {target}: " + "; ".join(parts)


def _metrics(snap: MetricsSnapshot) -> dict[str, Any]:
    profile = snap.service_profile
    return {
        "window_s": snap.window_s,
        "arrival_rps": snap.arrival_rate_rps,
        "recent_arrival_rps": snap.recent_arrival_rate_rps,
        "rows_per_s": snap.rows_per_s,
        "arrival_cv": snap.arrival_cv,
        "p50_s": snap.latency_p50_s,
        "p99_s": snap.latency_p99_s,
        "completed": snap.completed,
        "busy_ratio": snap.busy_ratio,
        "busy_replicas": snap.busy_replicas,
        "gpu_utilization": snap.gpu_utilization,
        "gpu_memory_fraction": snap.gpu_memory_fraction,
        "cold_start_s": snap.cold_start_s,
        "queue_depth": snap.queue_depth,
        "ongoing_requests": snap.ongoing_requests,
        "service_profile": {"fixed_s": profile.fixed_s, "per_row_s": profile.per_row_s,
                            "max_batch_size": profile.max_batch_size,
                            "table": [list(p) for p in profile.table]},
    }


def _extra_signals(d: ScalableDeployment, gpu: GpuProbe) -> dict[str, Any]:
    """The signals a deployment may or may not have: GPU (of its replicas' pids) and the
    measured cold start. Read with ``getattr``: a deployment without them lacks the signal."""
    extra: dict[str, Any] = {}
    pids = getattr(d, "replica_pids", None)
    sample = gpu.sample(pids()) if callable(pids) else None
    if sample is not None:
        extra["gpu_utilization"] = sample.utilization
        extra["gpu_memory_fraction"] = sample.memory_fraction
    cold = getattr(d, "cold_start_s", None)
    if isinstance(cold, int | float) and cold >= 0:
        extra["cold_start_s"] = float(cold)
    return extra


def _loop_running() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def controller_for(deployments: Mapping[str, ScalableDeployment],
                   gpu: GpuProbe | None = None) -> AutoscaleController:
    """A controller for those of ``deployments`` that have an ``autoscaling`` spec."""
    return AutoscaleController(
        (d for d in deployments.values() if d.spec.autoscaling is not None), gpu=gpu
    )
