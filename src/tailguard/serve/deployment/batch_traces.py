"""The spans of one batch: a batch span *linked* to the spans of the traced requests in it.

A batch serves many requests, each of its own trace, so it cannot be any one request's child
(parenting it to the first request's span, as BentoML did — bentoml#2989 — files every other
request's work under a stranger's trace). It is the root of its own trace, with one span link
per traced request, and each request gets a ``queue`` child span, from enqueue to dispatch,
linked back to the batch. The replica's ``predict`` is the batch span's child across the process
boundary, by the traceparent the batch message carries.

A batch with no traced request makes no span at all: under 1% sampling most batches carry none.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from opentelemetry.trace import Link, Span

from tailguard.observe.tracing import Tracing, traceparent_of

if TYPE_CHECKING:
    from tailguard.serve.deployment.slots import Pending

__all__ = ["BatchTrace"]


class BatchTrace:
    """The batch span and the traceparent to send with the batch; ``end`` it with the
    outcome."""

    __slots__ = ("span", "traceparent")

    def __init__(self, tracing: Tracing, deployment: str, replica: str, batch_id: int,
                 rows: int, requests: int, traced: list[Pending], loop_now: float) -> None:
        wall_ns = time.time_ns()
        self.span: Span = tracing.start(
            "batch",
            attributes={"tailguard.deployment": deployment, "tailguard.replica": replica,
                        "tailguard.batch_id": batch_id, "tailguard.rows": rows,
                        "tailguard.requests": requests,
                        "tailguard.traced_requests": len(traced)},
            links=[Link(p.trace.get_span_context()) for p in traced if p.trace is not None])
        self.traceparent = traceparent_of(self.span)
        back = [Link(self.span.get_span_context())]
        for p in traced:
            assert p.trace is not None  # only traced requests are passed
            waited_s = max(0.0, loop_now - p.enqueued)
            # Loop time is monotonic, spans want wall-clock ns: the wait is measured on the
            # loop clock and laid back from now.
            queue = tracing.start("queue", p.trace, links=back,
                                  start_time_ns=wall_ns - int(waited_s * 1e9),
                                  attributes={"tailguard.batch_id": batch_id,
                                              "tailguard.dispatch": p.dispatches})
            queue.end(end_time=wall_ns)

    def end(self, outcome: str, error: str | None = None) -> None:
        """``outcome``: ok, bad_input, model_error, replica_died or hung."""
        self.span.set_attribute("tailguard.outcome", outcome)
        if error is not None:
            Tracing.fail(self.span, error)
        self.span.end()
