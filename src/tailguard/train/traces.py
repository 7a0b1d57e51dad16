"""The trace of one training run, from the supervisor: a ``train`` span with one ``attempt``
child per worker group, a ``checkpoint`` span per save and a ``restart`` span from a failed
attempt's end to its successor's workers started.

Checkpoint spans come from the run's own events (``checkpoint`` carries ``save_s`` and its end
time), read after each attempt: the workers need no tracer of their own. Without a tracer
(``tracing`` off, or the run not sampled) every method does nothing: the engine calls them
unconditionally, off its hot loop.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from opentelemetry.trace import Span

    from tailguard.observe.tracing import Tracing

__all__ = ["RunTrace"]


class RunTrace:
    """Spans of one ``LocalEngine.run``."""

    def __init__(self, tracing: Tracing | None, job: str, run_id: str, world_size: int,
                 resume: bool) -> None:
        self._tracing = tracing if tracing is not None and tracing.root_sampled() else None
        self._run: Span | None = None
        self._attempt: Span | None = None
        self._restart: Span | None = None
        if self._tracing is not None:
            self._run = self._tracing.start("train", attributes={
                "tailguard.job": job, "tailguard.run_id": run_id,
                "tailguard.world_size": world_size, "tailguard.resume": resume})

    def attempt_started(self, attempt: int, world_size: int, from_step: int | None) -> None:
        if self._tracing is None:
            return
        self._attempt = self._tracing.start("attempt", self._run, attributes={
            "tailguard.attempt": attempt, "tailguard.world_size": world_size,
            "tailguard.from_step": -1 if from_step is None else from_step})

    def workers_started(self, pids: list[int | None]) -> None:
        if self._restart is not None:  # a Ray rank learns its pid later: None here
            self._restart.set_attribute("tailguard.pids", [p for p in pids if p is not None])
            self._restart.end()
            self._restart = None

    def attempt_ended(self, attempt: int, action: str, reason: str, failed_ranks: list[int],
                      events: Callable[[], list[dict[str, Any]]]) -> None:
        """The attempt's outcome (the policy's action and reason) and its checkpoints, from
        the run's ``events`` (read only when traced)."""
        tracing, span = self._tracing, self._attempt
        if tracing is None or span is None:
            return
        for event in events():
            if event.get("event") != "checkpoint" or event.get("attempt") != attempt:
                continue
            end_ns = int(float(event["t"]) * 1e9)
            save_s = float(event.get("save_s", 0.0))
            tracing.start("checkpoint", span, start_time_ns=end_ns - int(save_s * 1e9),
                          attributes={"tailguard.step": int(event["step"]),
                                      "tailguard.save_s": save_s}).end(end_time=end_ns)
        span.set_attribute("tailguard.action", action)
        span.set_attribute("tailguard.reason", reason)
        if failed_ranks:
            span.set_attribute("tailguard.failed_ranks", failed_ranks)
            tracing.fail(span, reason)
        span.end()
        self._attempt = None

    def restarting(self, restarts: int, reason: str, world_size: int,
                   from_step: int | None) -> None:
        if self._tracing is None:
            return
        self._restart = self._tracing.start("restart", self._run, attributes={
            "tailguard.restarts": restarts, "tailguard.reason": reason,
            "tailguard.world_size": world_size,
            "tailguard.from_step": -1 if from_step is None else from_step})

    def end(self, succeeded: bool, message: str) -> None:
        if self._tracing is None or self._run is None:
            return
        for open_span in (self._restart, self._attempt):
            if open_span is not None:  # interrupted (Ctrl-C, SIGTERM) mid-attempt
                open_span.end()
        self._run.set_attribute("tailguard.succeeded", succeeded)
        if not succeeded:
            self._tracing.fail(self._run, message)
        self._run.end()
        self._run = None
