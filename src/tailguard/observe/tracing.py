"""Distributed traces with OpenTelemetry: one process's tracer (config: :mod:`.trace_spec`).

Each process that traces — the gateway, every replica, the training supervisor — builds its own
:class:`Tracing` from the same :class:`TracingSpec` and exports its own spans (to an OTLP
collector in production); what joins them into one trace is the W3C ``traceparent`` that travels
with the work: the client's header into the gateway, the batch span's into the replica in the
batch message. Off (the default), nothing here is built and the request path only checks that
its tracer is ``None``::

    tracing:
      enabled: true
      sample_ratio: 0.01          # of requests that arrive without a sampled traceparent
      exporter: otlp              # otlp | console | jsonl | none
      otlp_endpoint: http://127.0.0.1:4318/v1/traces

Sampling is parent-based and decided *before* any span object exists: a request whose
``traceparent`` says sampled is traced, one whose ``traceparent`` says not sampled is not, and
one without a header is traced with probability ``sample_ratio``. Every span started here was
decided that way, so the SDK's own sampler is ``ParentBased(ALWAYS_ON)``: an unsampled request
costs one random draw, not a non-recording span with fresh ids (measured in
``benchmarks/tracing_overhead.py``).
"""

from __future__ import annotations

import os
import random
import threading
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SimpleSpanProcessor,
    SpanExporter,
    SpanExportResult,
)
from opentelemetry.sdk.trace.sampling import ALWAYS_ON, ParentBased
from opentelemetry.trace import Span, SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from tailguard.observe.trace_spec import TracingSpec

__all__ = ["JsonLinesExporter", "Tracing", "traceparent_of"]

_PROPAGATOR = TraceContextTextMapPropagator()


class JsonLinesExporter(SpanExporter):
    """Each finished span as one JSON line, appended with one ``write`` so that the processes
    sharing the file do not interleave within a line. For debugging without a collector, and
    for tests that read what another process exported."""

    def __init__(self, path: Path) -> None:
        self._path = Path(path)
        self._lock = threading.Lock()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        data = "".join(s.to_json(indent=None) + "\n" for s in spans).encode()
        with self._lock:
            fd = os.open(self._path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
            try:
                os.write(fd, data)
            finally:
                os.close(fd)
        return SpanExportResult.SUCCESS


def _processor(spec: TracingSpec) -> SpanProcessor | None:
    if spec.exporter == "otlp":
        try:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        except ImportError as exc:
            raise RuntimeError("tracing exporter otlp needs the OTLP exporter: "
                               "pip install 'tailguard[otlp]'") from exc
        return BatchSpanProcessor(OTLPSpanExporter(endpoint=spec.otlp_endpoint))
    if spec.exporter == "console":
        return SimpleSpanProcessor(ConsoleSpanExporter())
    if spec.exporter == "jsonl":
        assert spec.jsonl_path is not None  # checked by the spec
        # Synchronous: a span is on disk when it ends (a local file write, not a network call).
        return SimpleSpanProcessor(JsonLinesExporter(spec.jsonl_path))
    return None


def traceparent_of(span: Span) -> str:
    """The W3C ``traceparent`` naming ``span`` as the parent of remote work."""
    ctx = span.get_span_context()
    return f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-{int(ctx.trace_flags):02x}"


class Tracing:
    """One process's tracer, built from a :class:`TracingSpec` (``None`` when it is off, so
    callers hold ``Tracing | None`` and the off path is one ``is None``).

    ``exporter`` replaces the spec's (tests pass the SDK's ``InMemorySpanExporter``)."""

    SERVER = SpanKind.SERVER

    def __init__(self, spec: TracingSpec, role: str, *, exporter: SpanExporter | None = None,
                 attributes: Mapping[str, str] | None = None) -> None:
        self.spec = spec
        self._ratio = spec.sample_ratio
        resource = Resource.create({"service.name": f"{spec.service_name}-{role}",
                                    **(attributes or {})})
        self.provider = TracerProvider(resource=resource, sampler=ParentBased(ALWAYS_ON))
        processor = (SimpleSpanProcessor(exporter) if exporter is not None
                     else _processor(spec))
        if processor is not None:
            self.provider.add_span_processor(processor)
        self.tracer = self.provider.get_tracer("tailguard")

    # ------------------------------------------------------------------ sampling
    def root_sampled(self) -> bool:
        ratio = self._ratio
        return ratio >= 1.0 or (ratio > 0.0 and random.random() < ratio)

    def incoming(self, headers: Iterable[tuple[bytes, bytes]]) -> Context | None:
        """The parent of a request with these (ASGI, lower-case) headers if it is to be
        traced, else ``None``: its ``traceparent``'s sampled flag decides, else the ratio."""
        for name, value in headers:
            if name == b"traceparent":
                ctx = _PROPAGATOR.extract({"traceparent": value.decode("latin-1")})
                parent = trace.get_current_span(ctx).get_span_context()
                if parent.is_valid:
                    return ctx if parent.trace_flags.sampled else None
                break  # malformed: as if absent (W3C: restart the trace)
        return Context() if self.root_sampled() else None

    @staticmethod
    def remote_parent(traceparent: str | None) -> Context | None:
        """The context of a ``traceparent`` carried in a message (None if absent or bad)."""
        if not traceparent:
            return None
        ctx = _PROPAGATOR.extract({"traceparent": traceparent})
        return ctx if trace.get_current_span(ctx).get_span_context().is_valid else None

    # ------------------------------------------------------------------ spans
    def start(self, name: str, parent: Span | Context | None = None, *,
              kind: SpanKind = SpanKind.INTERNAL,
              attributes: Mapping[str, str | int | float | bool] | None = None,
              links: Sequence[trace.Link] = (), start_time_ns: int | None = None) -> Span:
        """A span under ``parent`` (a span, a context, or none: a new trace)."""
        if isinstance(parent, Span):
            parent = trace.set_span_in_context(parent, Context())
        return self.tracer.start_span(name, context=parent if parent is not None else Context(),
                                      kind=kind, attributes=attributes, links=links,
                                      start_time=start_time_ns)

    @staticmethod
    def fail(span: Span, description: str) -> None:
        span.set_status(Status(StatusCode.ERROR, description))

    def shutdown(self) -> None:
        """Export what is buffered and stop (a process calls it on its way out)."""
        self.provider.shutdown()
