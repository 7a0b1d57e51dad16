"""The training supervisor's trace with real worker processes: one ``train`` span, an
``attempt`` per group, ``checkpoint`` spans from the run's events and a ``restart`` between
attempts (the SDK's in-memory exporter)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from tailguard.observe.trace_spec import TracingSpec
from tailguard.observe.tracing import Tracing
from tailguard.train import LocalEngine, parse_job
from tailguard.train.trainer import FAULT_ENV
from tests.integration.digits_data import make_digits

pytestmark = pytest.mark.timeout(120)


def test_a_run_with_one_restart_traces_attempts_checkpoints_and_the_restart(
        tmp_path: Path) -> None:
    (tmp_path / "digits").mkdir()
    digits = make_digits(tmp_path / "digits")
    job = parse_job({
        "name": "traced",
        "model": {"builder": "mlp", "kwargs": {"in_features": 64, "hidden": [32],
                                               "out_features": 10}},
        "data": {"train": str(digits["train"]), "features": ["px*"], "label": "label"},
        "batch_size": 16, "max_steps": 12, "checkpoint_every_steps": 5,
        "register_artifact": False,
    })
    exporter = InMemorySpanExporter()
    tracing = Tracing(TracingSpec(enabled=True, exporter="none"), "train", exporter=exporter)
    fault = json.dumps({"rank": 0, "step": 7, "attempt": 0, "code": 3})
    engine = LocalEngine(tmp_path / "home", env={FAULT_ENV: fault}, progress=False,
                         echo=lambda _m: None, tracing=tracing)
    result = engine.run(job)
    assert result.succeeded and result.restarts == 1, result.message

    spans = exporter.get_finished_spans()
    (run,) = [s for s in spans if s.name == "train"]
    attempts = sorted((s for s in spans if s.name == "attempt"),
                      key=lambda s: (s.attributes or {})["tailguard.attempt"])
    (restart,) = [s for s in spans if s.name == "restart"]
    checkpoints = [s for s in spans if s.name == "checkpoint"]
    assert run.parent is None and (run.attributes or {})["tailguard.succeeded"] is True
    for child in [*attempts, restart]:
        assert child.parent is not None and child.parent.span_id == run.context.span_id
        assert child.context.trace_id == run.context.trace_id
    first, second = attempts
    assert (first.attributes or {})["tailguard.action"] == "restart"
    assert "exited with code 3" in str((first.attributes or {})["tailguard.reason"])
    assert not first.status.is_ok and not first.status.is_unset
    assert (second.attributes or {})["tailguard.action"] == "succeed"
    assert (second.attributes or {})["tailguard.from_step"] == 5
    assert (restart.attributes or {})["tailguard.from_step"] == 5
    # the restart runs from the failed attempt's end to the next group started
    assert first.end_time is not None and restart.start_time is not None
    assert first.end_time <= restart.start_time
    assert restart.end_time is not None and second.start_time is not None
    assert second.start_time <= restart.end_time
    steps = {(s.parent.span_id if s.parent else None, (s.attributes or {})["tailguard.step"])
             for s in checkpoints}
    assert (first.context.span_id, 5) in steps and (second.context.span_id, 10) in steps
