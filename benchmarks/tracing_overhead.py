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
reads the CPU seconds the server's processes (gateway and replicas, from /proc) spent per
request served: what tracing adds to each request, much less sensitive to the neighbours.

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


def server_cpu_s(target: Server) -> float:
    """CPU seconds so far of the gateway and its replica processes."""
    with urllib.request.urlopen(target.url + "/v1/deployments", timeout=10) as r:
        pids = [rep["pid"] for d in json.loads(r.read())["deployments"]
                for rep in d["replicas"] if rep["pid"]]
    return sum(_cpu_s(p) for p in [target.proc.pid, *pids])


def served(target: Server) -> float:
    """Requests the server has answered (warm-up included: traced like the others)."""
    with urllib.request.urlopen(target.url + "/metrics", timeout=10) as r:
        lines = r.read().decode().splitlines()
    return sum(float(line.rsplit(" ", 1)[1]) for line in lines
               if line.startswith("tailguard_requests_total{"))


def sink_counts(url: str) -> dict[str, int]:
    with urllib.request.urlopen(url + "/counts", timeout=5) as r:
        return dict(json.loads(r.read()))


def case(name: str, deployment: dict[str, Any], ratio: float, sink_url: str,
         flags: list[str], protocol: str, rounds: int) -> dict[str, Any]:
    on = {"enabled": True, "sample_ratio": ratio, "exporter": "otlp",
          "otlp_endpoint": f"{sink_url}/v1/traces"}
    before = sink_counts(sink_url)
    off_rps: list[float] = []
    on_rps: list[float] = []
    cpu_ms: dict[bool, list[float]] = {False: [], True: []}  # per request served
    with server(deployment, {}, f"{name}-off") as s_off, \
            server(deployment, on, f"{name}-on") as s_on:
        order = [s_off, s_on, s_on, s_off] * ((rounds + 1) // 2)
        for i, target in enumerate(order[: 2 * rounds]):
            cpu_before, served_before = server_cpu_s(target), served(target)
            result = load(target.url, deployment["name"], *flags, protocol=protocol)
            traced = target is s_on
            answered = max(1.0, served(target) - served_before)
            cpu_ms[traced].append((server_cpu_s(target) - cpu_before) * 1000 / answered)
            (on_rps if traced else off_rps).append(result["ok_rps"])
            print(f"{name} round {i // 2 + 1} tracing {'on ' if traced else 'off'}: "
                  f"{result['ok_rps']:.0f} req/s, p99 {result['p99_ms']:.1f} ms, "
                  f"errors {result['requests'] - result['ok']}, "
                  f"server CPU {cpu_ms[traced][-1]:.3f} ms/request", file=sys.stderr)
    # the servers stopped (SIGTERM): their exporters have flushed to the sink
    after = sink_counts(sink_url)
    spans = {k: after.get(k, 0) - before.get(k, 0) for k in after}
    total = sum(on_rps) / sum(off_rps)
    pairs = [a / b for a, b in zip(on_rps, off_rps, strict=True)]
    loss = 1 - total
    cpu_ratio = statistics.median(cpu_ms[True]) / statistics.median(cpu_ms[False])
    print(f"{name}: server CPU per request, median of rounds: off "
          f"{statistics.median(cpu_ms[False]):.3f} ms, on {statistics.median(cpu_ms[True]):.3f} "
          f"ms (ratio {cpu_ratio:.3f})", file=sys.stderr)
    print(f"{name} at {ratio:.0%} sampling: on/off throughput {total:.3f} "
          f"(loss {loss:.1%}, target <= {TARGETS[name]:.0%}); per-pair median "
          f"{statistics.median(pairs):.3f} (min {min(pairs):.3f}, max {max(pairs):.3f}); "
          f"spans exported {spans}", file=sys.stderr)
    return {"sample_ratio": ratio, "ratio": round(total, 4), "loss": round(loss, 4),
            "target_loss": TARGETS[name], "met": loss <= TARGETS[name],
            "median_pair_ratio": round(statistics.median(pairs), 4),
            "cpu_ms_per_request_off": [round(x, 4) for x in cpu_ms[False]],
            "cpu_ms_per_request_on": [round(x, 4) for x in cpu_ms[True]],
            "cpu_per_request_ratio": round(cpu_ratio, 4),
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

    port = free_port()
    result: dict[str, Any] = {}
    with Server([PY, __file__, "--sink", str(port)], port, "otlp-sink") as sink:
        if args.only in (None, "echo"):
            echo = {"name": "echo", "model": "tailguard.models.echo:Echo",
                    "max_batch_size": 256, "max_wait_ms": 0}
            result["echo"] = case("echo", echo, 0.01, sink.url, [
                "--concurrency", "64", "--duration", str(args.duration), "--warmup", "1"],
                "v2", args.rounds)
        if args.only in (None, "minilm"):
            minilm = {"name": "minilm", "model": "tailguard.models.minilm:MiniLM",
                      "replicas": 2, "max_batch_size": 32, "max_wait_ms": 2,
                      "options": {"threads": 1}}
            payloads = write_openai_payloads(varied_sentences(512))
            result["minilm"] = case("minilm", minilm, 1.0, sink.url, [
                "--concurrency", "32", "--duration", str(args.duration), "--warmup", "2",
                "--payloads", str(payloads)], "openai", args.rounds)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
