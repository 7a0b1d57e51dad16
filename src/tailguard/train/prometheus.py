"""``tailguard_train_*``: a running job's metrics on a Prometheus scrape endpoint.

The supervising engine, not a worker, serves them: workers die and restart (the endpoint must
not go with them), and only the engine knows a restart happened. It already owns the run's
event log (``metrics.jsonl``, :mod:`tailguard.train.metrics`), which rank 0 appends to, so
the exporter follows that file from a thread and turns events into series::

    step        -> tailguard_train_loss, _samples_per_second, _step_seconds, _data_wait_share
    eval        -> tailguard_train_eval_metric{metric="accuracy"|"loss"|...}
    checkpoint  -> tailguard_train_checkpoint_seconds
    start       -> tailguard_train_world_size
    restart     -> tailguard_train_restarts_total

Every series carries ``train_job`` (the job's name; ``job`` is Prometheus's own label) and
``run_id``. The endpoint binds 127.0.0.1 only; port 0 takes a free one. It follows the log
from where it stood when the run began, so a ``--resume`` counts its own restarts.

Usage::

    with TrainExporter(port=0, job="digits", run_id=run_id, events=paths.metrics) as exp:
        print(exp.url)   # http://127.0.0.1:PORT/metrics
        ...              # run the job
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

# Steps of tiny models take ~1 ms, of real ones seconds: a wide range, coarse in between.
STEP_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
                30.0, 60.0)
CHECKPOINT_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)


class TrainMetrics:
    """The ``tailguard_train_*`` series of one run, in a registry of their own."""

    def __init__(self, job: str, run_id: str) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r, labels, values = self.registry, ["train_job", "run_id"], (job, run_id)
        self.loss = Gauge("tailguard_train_loss", "Training loss at the last logged step",
                          labels, registry=r).labels(*values)
        self.samples = Gauge("tailguard_train_samples_per_second",
                             "Global samples per second of the last logged step",
                             labels, registry=r).labels(*values)
        self.step = Histogram("tailguard_train_step_seconds", "Wall time of a logged step",
                              labels, buckets=STEP_BUCKETS, registry=r).labels(*values)
        self.restarts = Counter("tailguard_train_restarts", "Group restarts after a failure",
                                labels, registry=r).labels(*values)
        self._eval = Gauge("tailguard_train_eval_metric", "Held-out metrics of the last eval",
                           [*labels, "metric"], registry=r)
        self.checkpoint = Histogram("tailguard_train_checkpoint_seconds",
                                    "Time to save a checkpoint", labels,
                                    buckets=CHECKPOINT_BUCKETS, registry=r).labels(*values)
        self.data_wait = Gauge("tailguard_train_data_wait_share",
                               "Share of the last logged step spent waiting for its batch",
                               labels, registry=r).labels(*values)
        self.world_size = Gauge("tailguard_train_world_size", "Workers in the current attempt",
                                labels, registry=r).labels(*values)
        self._values = values

    def record(self, event: dict[str, Any]) -> None:
        """Fold one event of the run's log into the series (unknown events are ignored)."""
        kind = event.get("event")
        if kind == "step":
            self.loss.set(float(event["loss"]))
            self.samples.set(float(event["samples_per_s"]))
            if "step_s" in event:  # older logs lack it
                step_s = float(event["step_s"])
                self.step.observe(step_s)
                self.data_wait.set(float(event["data_s"]) / step_s if step_s > 0 else 0.0)
        elif kind == "eval":
            for name, value in dict(event.get("metrics", {})).items():
                if name != "rows":
                    self._eval.labels(*self._values, name).set(float(value))
        elif kind == "checkpoint":
            self.checkpoint.observe(float(event["save_s"]))
        elif kind == "start":
            self.world_size.set(int(event["world_size"]))
        elif kind == "restart":
            self.restarts.inc()


class EventTail:
    """Complete new lines of an append-only JSON-lines file, from a starting offset."""

    def __init__(self, path: Path, offset: int | None = None) -> None:
        self.path = Path(path)
        self.offset = (self.path.stat().st_size if self.path.is_file() else 0
                       ) if offset is None else offset
        self._partial = b""

    def read(self) -> list[dict[str, Any]]:
        try:
            with self.path.open("rb") as f:
                f.seek(self.offset)
                chunk = f.read()
        except FileNotFoundError:
            return []
        self.offset += len(chunk)
        lines = (self._partial + chunk).split(b"\n")
        self._partial = lines.pop()  # a line still being written waits for its newline
        events = []
        for line in lines:
            try:
                events.append(json.loads(line))
            except ValueError:
                continue  # a torn line from a crashed writer: skip it, like read_events
        return events


class TrainExporter:
    """Serves :class:`TrainMetrics` on ``http://127.0.0.1:PORT/metrics`` and feeds it from
    the run's event log every ``interval_s``, until :meth:`close` (which reads what is left,
    then stops the server)."""

    def __init__(self, port: int, job: str, run_id: str, events: Path, *,
                 interval_s: float = 0.25, host: str = "127.0.0.1") -> None:
        self.metrics = TrainMetrics(job, run_id)
        self._tail = EventTail(events)
        self._interval_s = interval_s
        self._server, self._server_thread = start_http_server(
            port, addr=host, registry=self.metrics.registry)
        self.port = int(self._server.server_port)
        self.url = f"http://{host}:{self.port}/metrics"
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._follow, name="train-metrics", daemon=True)
        self._thread.start()

    def poll(self) -> None:
        for event in self._tail.read():
            self.metrics.record(event)

    def _follow(self) -> None:
        while not self._stop.wait(self._interval_s):
            self.poll()

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.poll()
        self._server.shutdown()
        self._server.server_close()
        self._server_thread.join()

    def __enter__(self) -> TrainExporter:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

