"""The typed ``tracing:`` config, apart from the tracer so that a process with tracing off never
imports OpenTelemetry (see :mod:`tailguard.observe.tracing`)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

if TYPE_CHECKING:
    from tailguard.observe.tracing import Tracing

__all__ = ["TRACING_ENV", "TracingSpec", "build_tracing"]

TRACING_ENV = "TAILGUARD_TRACING"  # a TracingSpec as JSON, for the processes a parent starts


class TracingSpec(BaseModel):
    """Traces of one component (the gateway and its replicas, or a training job)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = Field(False, description="off: no span is ever created")
    sample_ratio: float = Field(
        1.0, ge=0, le=1,
        description="share of root requests traced (those without a sampled traceparent); "
                    "a traceparent header's sampled flag decides for its request")
    exporter: Literal["otlp", "console", "jsonl", "none"] = Field(
        "otlp", description="otlp: each process sends its spans to the collector over "
                            "OTLP/HTTP (needs the `otlp` extra); console: JSON on stdout; "
                            "jsonl: JSON lines appended to `jsonl_path` (every process to "
                            "the same file); none: spans are made but not exported")
    otlp_endpoint: str | None = Field(
        None, description="OTLP/HTTP traces URL (default: $OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, "
                          "else http://localhost:4318/v1/traces)")
    jsonl_path: Path | None = Field(None, description="with exporter jsonl: the file")
    service_name: str = Field("tailguard", description="prefix of each process's "
                                                       "service.name (…-gateway, …-replica)")

    @model_validator(mode="after")
    def _check(self) -> TracingSpec:
        if self.exporter == "jsonl" and self.jsonl_path is None:
            raise ValueError("tracing: exporter jsonl needs `jsonl_path`")
        if self.otlp_endpoint is not None and self.exporter != "otlp":
            raise ValueError(f"tracing: otlp_endpoint is set but exporter is "
                             f"{self.exporter!r}: set `exporter: otlp` or remove it")
        return self

    def env(self) -> dict[str, str]:
        """What a child process needs to trace as this spec says (nothing when off)."""
        return {TRACING_ENV: self.model_dump_json()} if self.enabled else {}

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> TracingSpec | None:
        raw = (os.environ if environ is None else environ).get(TRACING_ENV)
        return None if not raw else cls.model_validate_json(raw)


def build_tracing(spec: TracingSpec | None, role: str,
                  attributes: Mapping[str, str] | None = None) -> Tracing | None:
    """This process's tracer for ``role`` (gateway, replica, train), or None when off."""
    if spec is None or not spec.enabled:
        return None
    from tailguard.observe.tracing import Tracing

    return Tracing(spec, role, attributes=attributes)
