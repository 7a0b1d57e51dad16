"""Events of a run's log become tailguard_train_* series; the tail reads only whole lines."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from tailguard.train.prometheus import EventTail, TrainExporter, TrainMetrics


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(s.name, tuple(sorted((k, v) for k, v in s.labels.items()
                                  if k not in ("train_job", "run_id")))): s.value
            for f in text_string_to_metric_families(text) for s in f.samples}


EVENTS = [
    {"event": "start", "world_size": 2},
    {"event": "step", "step": 1, "loss": 2.5, "samples_per_s": 640.0, "step_s": 0.05,
     "data_s": 0.01},
    {"event": "step", "step": 2, "loss": 2.0, "samples_per_s": 800.0},  # an older log's step
    {"event": "eval", "step": 2, "metrics": {"accuracy": 0.75, "loss": 1.1, "rows": 100}},
    {"event": "checkpoint", "step": 2, "save_s": 0.2},
    {"event": "restart", "world_size": 1},
    {"event": "start", "world_size": 1},
]


def test_events_become_the_series_the_dashboards_read() -> None:
    metrics = TrainMetrics("digits", "run-1")
    for event in EVENTS:
        metrics.record(event)
    got = _samples(generate_latest(metrics.registry).decode())
    assert got[("tailguard_train_loss", ())] == 2.0
    assert got[("tailguard_train_samples_per_second", ())] == 800.0
    assert got[("tailguard_train_step_seconds_count", ())] == 1.0
    assert got[("tailguard_train_data_wait_share", ())] == pytest.approx(0.2)
    assert got[("tailguard_train_eval_metric", (("metric", "accuracy"),))] == 0.75
    assert ("tailguard_train_eval_metric", (("metric", "rows"),)) not in got
    assert got[("tailguard_train_checkpoint_seconds_sum", ())] == 0.2
    assert got[("tailguard_train_restarts_total", ())] == 1.0
    assert got[("tailguard_train_world_size", ())] == 1.0


def test_tail_waits_for_a_line_to_be_whole_and_starts_where_the_log_stood(
        tmp_path: Path) -> None:
    log = tmp_path / "metrics.jsonl"
    log.write_text(json.dumps({"event": "old"}) + "\n")
    tail = EventTail(log)  # an earlier invocation's events are not this run's
    with log.open("a") as f:
        f.write(json.dumps({"event": "restart"}) + "\n" + '{"event": "st')
    assert tail.read() == [{"event": "restart"}]
    with log.open("a") as f:
        f.write('art", "world_size": 1}\n')
    assert tail.read() == [{"event": "start", "world_size": 1}]
    assert tail.read() == []


def test_exporter_serves_on_loopback_and_reads_what_is_left_on_close(tmp_path: Path) -> None:
    log = tmp_path / "metrics.jsonl"
    log.touch()
    exporter = TrainExporter(0, "digits", "run-1", log, interval_s=60)
    try:
        assert exporter.url.startswith("http://127.0.0.1:") and exporter.port > 0
        log.write_text("".join(json.dumps(e) + "\n" for e in EVENTS))
        exporter.poll()
        text = httpx.get(exporter.url, timeout=10).text
        assert 'tailguard_train_restarts_total{run_id="run-1",train_job="digits"} 1.0' in text
    finally:
        exporter.close()
