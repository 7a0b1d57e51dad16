"""What tracing costs in throughput: the same gateway with ``tracing`` off and on, same run.

Two cases, each with two servers up at once (tracing off, tracing on exporting over OTLP/HTTP
to a local sink that decodes and counts the spans, as a collector would receive them) and the
same closed-loop load (`tailguard load`, a separate process) sent to them in interleaved rounds
in ABBA order (off, on, on, off, ...), so that drift in the machine's load falls on both:

- echo at 1% sampling (target: at most 3% throughput lost): the gateway's own cost dominates,
  so any per-request work of tracing shows;
- minilm at 100% sampling (target: at most 1% lost): every request traced, as a service
  debugging its tail would run.

The figure is the ratio of the summed throughput on / off over all rounds (and the median of
the per-pair ratios, to see the noise); the sink's span count shows the spans were exported.
On a machine shared with other work throughput swings from round to round, so each round also
reads the CPU seconds the server's processes spent per request served (from /proc), the
gateway's apart from the replicas': nearly all of tracing's work is the gateway's (spans made,
and encoded for OTLP by the exporter's thread), while the replicas' CPU per request moves with
batch sizes, i.e. with the neighbours. ``cpu_loss_estimate`` = (gateway CPU per request on -
off) / (all server CPU per request off): the throughput a CPU-bound server would lose.

Both still move with the neighbours, so the run also measures the cost model in-process, in CPU
time (``time.process_time``): an unsampled request's tracing work, a sampled request's (its
span, events and link, and encoding it for OTLP as the exporter's thread does) and a batch's
(the gateway's batch span and the replica's predict span, encoded). ``model_loss_estimate`` =
that CPU per request, at the case's sampling ratio and measured requests per batch, over the
server's CPU per request with tracing off.

    python benchmarks/tracing_overhead.py [--rounds 4] [--duration 6] [--only echo|minilm]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import threading
import urllib.request
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import yaml
from _harness import PY, Server, free_port, load

TARGETS = {"echo": 0.03, "minilm": 0.01}


def run_sink(port: int) -> None:
    """An OTLP/HTTP traces endpoint that decodes each export and counts spans by name."""
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
    )

    counts: Counter[str] = Counter()
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length", 0)))
            request = ExportTraceServiceRequest.FromString(body)
            with lock:
                for rs in request.resource_spans:
                    for ss in rs.scope_spans:
                        counts.update(s.name for s in ss.spans)
            self.send_response(200)
            self.send_header("content-type", "application/x-protobuf")
            self.send_header("content-length", "0")
            self.end_headers()

        def do_GET(self) -> None:
            with lock:
                data = json.dumps(dict(counts)).encode()
            if self.path == "/v2/health/ready":
                data = b'{"ready": true}'
            self.send_response(200)
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *_args: object) -> None:
            pass

    ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()


def server(deployment: dict[str, Any], tracing: dict[str, Any], name: str) -> Server:
    port = free_port()
    cfg = Path(tempfile.gettempdir()) / f"tailguard-bench-{name}-{port}.yaml"
    cfg.write_text(yaml.safe_dump({"port": port, "deployments": [deployment],
                                   "tracing": tracing}))
    return Server([PY, "-m", "tailguard", "serve", "--config", str(cfg)], port, name)


def _cpu_s(pid: int) -> float:
    """utime + stime of one process, in seconds (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def server_cpu_s(target: Server) -> tuple[float, float]:
    """CPU seconds so far of the gateway, and of its replica processes."""
    with urllib.request.urlopen(target.url + "/v1/deployments", timeout=10) as r:
        pids = [rep["pid"] for d in json.loads(r.read())["deployments"]
                for rep in d["replicas"] if rep["pid"]]
    return _cpu_s(target.proc.pid), sum(_cpu_s(p) for p in pids)


def served(target: Server) -> float:
    """Requests the server has answered (warm-up included: traced like the others)."""
    with urllib.request.urlopen(target.url + "/metrics", timeout=10) as r:
        lines = r.read().decode().splitlines()
    return sum(float(line.rsplit(" ", 1)[1]) for line in lines
               if line.startswith("tailguard_requests_total{"))


def span_costs_us(n: int = 3000) -> dict[str, float]:
    """CPU µs of tracing's work per unsampled request, per sampled request, per batch span
    (with 8 links) and per replica predict span, each including its OTLP encoding."""
    import time
    from types import SimpleNamespace

    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from tailguard.observe.trace_spec import TracingSpec
    from tailguard.observe.tracing import Tracing, traceparent_of
    from tailguard.serve.deployment.batch_traces import BatchTrace

    headers = [(b"host", b"127.0.0.1:8000"), (b"user-agent", b"python-httpx/0.27"),
               (b"accept", b"*/*"), (b"content-type", b"application/json"),
               (b"content-length", b"80")]
    out: dict[str, float] = {}
    unsampled = Tracing(TracingSpec(enabled=True, sample_ratio=1e-9, exporter="none"), "g")
    start = time.process_time()
    for _ in range(50 * n):
        unsampled.incoming(headers)
    out["unsampled_request"] = (time.process_time() - start) / (50 * n) * 1e6
    memory = InMemorySpanExporter()
    tracing = Tracing(TracingSpec(enabled=True, exporter="none"), "g", exporter=memory)
    batch_parent = tracing.start("batch")

    def request() -> None:  # what the gateway does for one traced request (app.py)
        span = tracing.start("v2 infer", tracing.incoming(headers), kind=tracing.SERVER,
                             attributes={"tailguard.protocol": "v2"})
        span.set_attribute("tailguard.tenant", "anonymous")
        span.add_event("admitted")
        span.set_attributes({"tailguard.rows": 1, "tailguard.priority": "standard"})
        span.add_event("dequeued", {"tailguard.queue_wait_ms": 1.5, "tailguard.batch_id": 7})
        span.add_link(batch_parent.get_span_context())
        span.set_attributes({"tailguard.deployment": "echo", "http.response.status_code": 200})
        span.end()

    def timed(make: Any, count: int) -> float:
        memory.clear()
        start = time.process_time()
        for _ in range(count):
            make()
        spans = memory.get_finished_spans()
        for i in range(0, len(spans), 512):  # the exporter's batches
            encode_spans(spans[i:i + 512]).SerializeToString()
        return (time.process_time() - start) / count * 1e6

    out["sampled_request"] = timed(request, n)
    pending = [SimpleNamespace(trace=tracing.start("r"), enqueued=0.0, dispatches=1)
               for _ in range(8)]
    out["batch"] = timed(lambda: BatchTrace(tracing, "echo", "echo-0", 7, 8, 8, pending,  # type: ignore[arg-type]
                                            0.001).end("ok"), n // 8)
    parent = tracing.remote_parent(traceparent_of(batch_parent))
    out["predict"] = timed(lambda: tracing.start("predict", parent, attributes={
        "tailguard.batch_id": 7, "tailguard.rows": 8}).end(), n)
    return {k: round(v, 2) for k, v in out.items()}


def sink_counts(url: str) -> dict[str, int]:
    with urllib.request.urlopen(url + "/counts", timeout=5) as r:
        return dict(json.loads(r.read()))


def case(name: str, deployment: dict[str, Any], ratio: float, sink_url: str,
         flags: list[str], protocol: str, rounds: int, costs: dict[str, float]
         ) -> dict[str, Any]:
    on = {"enabled": True, "sample_ratio": ratio, "exporter": "otlp",
          "otlp_endpoint": f"{sink_url}/v1/traces"}
    before = sink_counts(sink_url)
    off_rps: list[float] = []
    on_rps: list[float] = []
    # per request served: (gateway, replicas) CPU ms, by tracing on
    cpu_ms: dict[bool, list[tuple[float, float]]] = {False: [], True: []}
    with server(deployment, {}, f"{name}-off") as s_off, \
            server(deployment, on, f"{name}-on") as s_on:
        order = [s_off, s_on, s_on, s_off] * ((rounds + 1) // 2)
        for i, target in enumerate(order[: 2 * rounds]):
            cpu_before, served_before = server_cpu_s(target), served(target)
            result = load(target.url, deployment["name"], *flags, protocol=protocol)
            traced = target is s_on
            answered = max(1.0, served(target) - served_before)
            cpu_after = server_cpu_s(target)
            cpu_ms[traced].append(tuple(  # type: ignore[arg-type]
                (a - b) * 1000 / answered for a, b in zip(cpu_after, cpu_before, strict=True)))
            (on_rps if traced else off_rps).append(result["ok_rps"])
            print(f"{name} round {i // 2 + 1} tracing {'on ' if traced else 'off'}: "
                  f"{result['ok_rps']:.0f} req/s, p99 {result['p99_ms']:.1f} ms, "
                  f"errors {result['requests'] - result['ok']}, "
                  f"CPU ms/request gateway {cpu_ms[traced][-1][0]:.3f} "
                  f"replicas {cpu_ms[traced][-1][1]:.3f}", file=sys.stderr)
    # the servers stopped (SIGTERM): their exporters have flushed to the sink
    after = sink_counts(sink_url)
    spans = {k: after[k] - before.get(k, 0) for k in after if after[k] > before.get(k, 0)}
    total = sum(on_rps) / sum(off_rps)
    pairs = [a / b for a, b in zip(on_rps, off_rps, strict=True)]
    loss = 1 - total
    gw = {on: statistics.median(x[0] for x in cpu_ms[on]) for on in (False, True)}
    rep = {on: statistics.median(x[1] for x in cpu_ms[on]) for on in (False, True)}
    cpu_loss = (gw[True] - gw[False]) / (gw[False] + rep[False])
    requests = max(spans.get("v2 infer", 0), spans.get("openai infer", 0))
    per_batch = requests / max(1, spans.get("batch", 0))
    model_us = ((1 - ratio) * costs["unsampled_request"] + ratio * (
        costs["sampled_request"] + (costs["batch"] + costs["predict"]) / max(1.0, per_batch)))
    model_loss = model_us / 1000 / (gw[False] + rep[False])
    print(f"{name}: CPU ms per request, median of rounds: gateway off {gw[False]:.3f}, on "
          f"{gw[True]:.3f} (+{(gw[True] - gw[False]) * 1000:.0f} us); replicas off "
          f"{rep[False]:.3f}, on {rep[True]:.3f}; CPU-bound loss estimate {cpu_loss:.1%}",
          file=sys.stderr)
    print(f"{name}: cost model {model_us:.1f} us of tracing CPU per request "
          f"({per_batch:.1f} traced requests per traced batch) = {model_loss:.2%} of the "
          f"server's CPU per request (target <= {TARGETS[name]:.0%})", file=sys.stderr)
    print(f"{name} at {ratio:.0%} sampling: on/off throughput {total:.3f} "
          f"(loss {loss:.1%}, target <= {TARGETS[name]:.0%}); per-pair median "
          f"{statistics.median(pairs):.3f} (min {min(pairs):.3f}, max {max(pairs):.3f}); "
          f"spans exported {spans}", file=sys.stderr)
    return {"sample_ratio": ratio, "ratio": round(total, 4), "loss": round(loss, 4),
            "target_loss": TARGETS[name], "throughput_met": loss <= TARGETS[name],
            "median_pair_ratio": round(statistics.median(pairs), 4),
            "gateway_cpu_ms_off": round(gw[False], 4), "gateway_cpu_ms_on": round(gw[True], 4),
            "replica_cpu_ms_off": round(rep[False], 4), "replica_cpu_ms_on": round(rep[True], 4),
            "cpu_loss_estimate": round(cpu_loss, 4), "cpu_met": cpu_loss <= TARGETS[name],
            "model_us_per_request": round(model_us, 2),
            "model_loss_estimate": round(model_loss, 4),
            "model_met": model_loss <= TARGETS[name],
            "off_rps": [round(x) for x in off_rps], "on_rps": [round(x) for x in on_rps],
            "spans_exported": spans}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=4, help="rounds per setting")
    parser.add_argument("--duration", type=float, default=6.0)
    parser.add_argument("--only", choices=["echo", "minilm"])
    parser.add_argument("--sink", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.sink:
        run_sink(args.sink)
        return
    sys.path.insert(0, str(Path(__file__).parent))
    from serve_minilm import varied_sentences, write_openai_payloads

    costs = span_costs_us()
    print(f"tracing CPU cost model (us, in-process): {costs}", file=sys.stderr)
    port = free_port()
    result: dict[str, Any] = {"cost_model_us": costs}
    with Server([PY, __file__, "--sink", str(port)], port, "otlp-sink") as sink:
        if args.only in (None, "echo"):
            echo = {"name": "echo", "model": "tailguard.models.echo:Echo",
                    "max_batch_size": 256, "max_wait_ms": 0}
            result["echo"] = case("echo", echo, 0.01, sink.url, [
                "--concurrency", "64", "--duration", str(args.duration), "--warmup", "1"],
                "v2", args.rounds, costs)
        if args.only in (None, "minilm"):
            minilm = {"name": "minilm", "model": "tailguard.models.minilm:MiniLM",
                      "replicas": 2, "max_batch_size": 32, "max_wait_ms": 2,
                      "options": {"threads": 1}}
            payloads = write_openai_payloads(varied_sentences(512))
            result["minilm"] = case("minilm", minilm, 1.0, sink.url, [
                "--concurrency", "32", "--duration", str(args.duration), "--warmup", "2",
                "--payloads", str(payloads)], "openai", args.rounds, costs)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
