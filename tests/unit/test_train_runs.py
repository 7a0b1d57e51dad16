"""Run bookkeeping: metrics summary, replayed steps, latest run, heartbeats."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from tailguard.train.heartbeat import Heartbeat
from tailguard.train.metrics import MetricsWriter, last_per_step, read_events, summarize
from tailguard.train.runs import latest_run, run_paths


def test_summary_of_a_restarted_run(tmp_path: Path) -> None:
    w = MetricsWriter(tmp_path / "metrics.jsonl")
    w.write("start", attempt=0, world_size=2)
    for step in (1, 2, 3):
        w.write("step", step=step, loss=1.0 / step, samples_per_s=100.0, attempt=0)
    w.write("restart", attempt=1, world_size=2, from_step=2, reason="rank 1 was killed")
    w.write("start", attempt=1, world_size=2)
    for step in (3, 4):
        w.write("step", step=step, loss=0.5 / step, samples_per_s=300.0, attempt=1)
    w.write("eval", step=4, metrics={"accuracy": 0.9, "loss": 0.3, "rows": 10.0})
    w.write("target_reached", step=4, tta_s=1.5)
    w.write("finished", step=4, metrics={})
    w.write("registered", ref="m:1")
    with (tmp_path / "metrics.jsonl").open("a") as fh:
        fh.write('{"event": "step", "tor')  # a crash mid-write leaves a torn last line
    events = read_events(tmp_path / "metrics.jsonl")
    s = summarize("r", events)
    assert (s.status, s.attempts, s.restarts, s.world_sizes) == ("succeeded", 2, 1, (2, 2))
    assert s.last_step == 4 and s.tta_s == 1.5 and s.artifact_ref == "m:1"
    assert s.eval_metrics["accuracy"] == 0.9 and s.mean_samples_per_s == 180.0
    assert last_per_step(events)[3]["loss"] == 0.5 / 3  # the replayed step wins


def test_failed_run_reports_the_reason(tmp_path: Path) -> None:
    w = MetricsWriter(tmp_path / "m.jsonl")
    w.write("start", attempt=0, world_size=1)
    w.write("failed", reason="rank 0 exited with code 3; giving up")
    s = summarize("r", read_events(tmp_path / "m.jsonl"))
    assert s.status == "failed" and s.failure is not None and "giving up" in s.failure


def test_latest_run_picks_the_newest_of_the_job(tmp_path: Path) -> None:
    assert latest_run("a", tmp_path) is None
    for run_id, name, mtime in (("a-1", "a", 100), ("a-2", "a", 200), ("b-1", "b", 300)):
        paths = run_paths(run_id, tmp_path)
        paths.root.mkdir(parents=True)
        paths.job.write_text(json.dumps({"name": name}))
        os.utime(paths.job, (mtime, mtime))
    found = latest_run("a", tmp_path)
    assert found is not None and found.run_id == "a-2"


def test_keepalive_beats_while_the_loop_is_busy(tmp_path: Path) -> None:
    path = tmp_path / "hb-0"
    hb = Heartbeat(path)
    os.utime(path, (0, 0))
    with hb.keepalive(interval_s=0.01):
        deadline = time.monotonic() + 5
        while path.stat().st_mtime == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
    assert path.stat().st_mtime > 0
    os.utime(path, (0, 0))
    hb.beat(force=True)
    assert path.stat().st_mtime > 0


def test_resume_of_a_finished_run_says_it_is_finished(tmp_path: Path) -> None:
    """Issue 19: it used to start workers that ran no step and wrote a NaN loss."""
    import pytest

    from tailguard.train.engine import LocalEngine
    from tailguard.train.job import JobError, parse_job

    job = parse_job({"name": "t", "model": {"builder": "mlp", "kwargs": {
        "in_features": 4, "out_features": 2}}, "data": {"train": "d/train", "features": ["x*"],
        "label": "y"}, "batch_size": 8, "max_steps": 10}, base_dir=tmp_path)
    paths = run_paths("t-1", tmp_path)
    paths.root.mkdir(parents=True)
    paths.job.write_text(json.dumps({"name": "t"}))
    w = MetricsWriter(paths.metrics)
    w.write("start", attempt=0, world_size=1)
    w.write("finished", step=10, metrics={})
    with pytest.raises(JobError, match="run t-1 already finished; nothing to resume"):
        LocalEngine(tmp_path).run(job, resume=True)


def test_metrics_never_hold_nan(tmp_path: Path) -> None:
    from tailguard.train.runs import write_json

    w = MetricsWriter(tmp_path / "m.jsonl")
    w.write("step", step=0, loss=float("nan"), nested={"x": [float("inf"), 1.0]})
    text = (tmp_path / "m.jsonl").read_text()
    assert "NaN" not in text and "Infinity" not in text
    assert json.loads(text)["loss"] is None and json.loads(text)["nested"]["x"] == [None, 1.0]
    write_json(tmp_path / "s.json", {"loss": float("nan")})
    assert json.loads((tmp_path / "s.json").read_text()) == {"loss": None}
