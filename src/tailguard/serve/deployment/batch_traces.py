"""The spans of one batch: a batch span *linked* to the spans of the traced requests in it.

A batch serves many requests, each of its own trace, so it cannot be any one request's child
(parenting it to the first request's span, as BentoML did — bentoml#2989 — files every other
request's work under a stranger's trace). It is the root of its own trace, with one span link
per traced request; each request span gets a ``dequeued`` event (its queue wait) and a link back
to the batch. The replica's ``predict`` is the batch span's child across the process boundary,
by the traceparent the batch message carries.

Queue wait and admission are events on the request span, not child spans: a span costs the
gateway ~20 µs to make and as much again to export (measured), an event half of one, and at
100% sampling of a cheap model three spans per request were most of tracing's cost.

A batch with no traced request makes no span at all: under 1% sampling most batches carry none.
"""

from __future__ import annotations

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
        self.span: Span = tracing.start(
            "batch",
            attributes={"tailguard.deployment": deployment, "tailguard.replica": replica,
                        "tailguard.batch_id": batch_id, "tailguard.rows": rows,
                        "tailguard.requests": requests},
            links=[Link(p.trace.get_span_context()) for p in traced if p.trace is not None])
        self.traceparent = traceparent_of(self.span)
        batch = self.span.get_span_context()
        for p in traced:
            assert p.trace is not None  # only traced requests are passed
            p.trace.add_event("dequeued", {
                "tailguard.queue_wait_ms": max(0.0, loop_now - p.enqueued) * 1000,
                "tailguard.batch_id": batch_id})
            p.trace.add_link(batch)

    def end(self, outcome: str, error: str | None = None) -> None:
        """``outcome``: ok, bad_input, model_error, replica_died or hung."""
        self.span.set_attribute("tailguard.outcome", outcome)
        if error is not None:
            Tracing.fail(self.span, error)
        self.span.end()
