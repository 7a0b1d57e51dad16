"""MiniLM through Ray replicas against local replicas, same run, same replica count.

A real Ray cluster on this machine (``ray.cluster_utils.Cluster``: a head with no CPUs and
three 1-CPU worker nodes, each its own raylet). Both gateways run the built-in ``minilm``
deployment exactly as ``make serve`` configures it (2 single-threaded replicas here,
``p99_ms`` 100, admission on); the Ray one adds ``backend: ray``. Sentences of 5-60 tokens on
the OpenAI embeddings route, as ``serve_minilm.py``. Figures:

1. saturated throughput (closed loop, ``--concurrency``), Ray / local (target >= 0.9);
2. P99 at 100 req/s open loop, Ray and local;
3. a node holding a replica SIGKILLed under closed-loop load: seconds from the kill until the
   deployment has its replicas ready again (target <= 3 s), and failed requests (target 0).

Ray's GCS health checks keep their defaults here (a dead node is declared dead after ~14 s):
the gateway notices the death from the replica's calls.

    python benchmarks/ray_serve_minilm.py [--duration 10] [--concurrency 64]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml
from _harness import PY, Server, free_port, load, load_result, start_load
from serve_minilm import varied_sentences, write_openai_payloads


def _server(deployment: dict[str, Any], extra: dict[str, Any], name: str) -> Server:
    port = free_port()
    cfg = Path(tempfile.gettempdir()) / f"tailguard-bench-{name}-{port}.yaml"
    cfg.write_text(yaml.safe_dump({"port": port, "deployments": [deployment], **extra}))
    return Server([PY, "-m", "tailguard", "serve", "--config", str(cfg)], port, name)


def _status(url: str) -> dict[str, Any]:
    import urllib.request

    with urllib.request.urlopen(url + "/v1/deployments", timeout=5) as r:
        return next(d for d in json.loads(r.read())["deployments"] if d["name"] == "minilm")


def measure(url: str, payloads: Path, args: argparse.Namespace) -> dict[str, Any]:
    common = ["--payloads", str(payloads), "--warmup", "3"]
    sat = load(url, "minilm", "--concurrency", str(args.concurrency), "--duration",
               str(args.duration), "--retry-after", *common, protocol="openai")
    at100 = load(url, "minilm", "--rate", "100", "--duration", str(args.duration),
                 "--slo-ms", "100", *common, protocol="openai")
    return {"sat_rps": round(sat["ok_rps"], 1), "sat_p99_ms": sat["p99_ms"],
            "p99_ms_at_100rps": at100["p99_ms"], "p50_ms_at_100rps": at100["p50_ms"],
            "not_ok_at_100rps": round(1 - at100["ok"] / max(1, at100["requests"]), 4)}


def node_kill(url: str, cluster: Any, payloads: Path, replicas: int) -> dict[str, Any]:
    """Kill the node of replica 0 under load; time until ``replicas`` are ready again."""
    # Closed loop well inside one replica's capacity, honouring Retry-After as the openai
    # client does: a request that fails for any reason but a 429 counts as lost.
    proc = start_load(url, "minilm", "--protocol", "openai", "--concurrency", "4",
                      "--duration", "25", "--retry-after", "--payloads", str(payloads))
    time.sleep(6)
    victim = next(r["node"] for r in _status(url)["replicas"] if r["state"] == "ready")
    node = next(n for n in cluster.list_all_nodes() if n.node_id == victim)
    killed = time.monotonic()
    cluster.remove_node(node, allow_graceful=False)
    healed_s = detected_s = None
    while time.monotonic() - killed < 60:
        st = _status(url)
        nodes = [r["node"] for r in st["replicas"] if r["state"] == "ready"]
        if detected_s is None and victim not in nodes:
            detected_s = time.monotonic() - killed  # the gateway took it out of service
        if len(nodes) == replicas and victim not in nodes:
            healed_s = time.monotonic() - killed
            break
        time.sleep(0.05)
    result = load_result(proc)
    refused = result["errors"].get("http_429", 0)
    return {"heal_s": None if healed_s is None else round(healed_s, 2),
            "detected_s": None if detected_s is None else round(detected_s, 2),
            "failed_requests": result["requests"] - result["ok"] - refused,
            "refused_429": refused, "requests": result["requests"], "errors": result["errors"],
            "replacement_setup_s": _status(url)["setup_s"]}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--concurrency", type=int, default=64)
    args = parser.parse_args()
    from ray.cluster_utils import Cluster

    from tailguard.serve.config import default_config

    spec = default_config().deployment("minilm")
    assert spec is not None
    deployment = spec.model_dump(mode="json", exclude_defaults=True)
    payloads = write_openai_payloads(varied_sentences(512))
    result: dict[str, Any] = {"replicas": spec.replicas}
    with _server(deployment, {}, "local") as server:
        result["local"] = measure(server.url, payloads, args)
    print(f"local replicas: {result['local']}", file=sys.stderr)
    cluster = Cluster(initialize_head=True,
                      head_node_args={"num_cpus": 0, "include_dashboard": False})
    try:
        for _ in range(spec.replicas + 1):  # one spare node for the replacement
            cluster.add_node(num_cpus=1)
        cluster.wait_for_nodes()
        ray_extra = {"backend": "ray", "ray_address": cluster.address}
        with _server(deployment, ray_extra, "ray") as server:
            result["ray"] = measure(server.url, payloads, args)
            print(f"Ray replicas: {result['ray']}", file=sys.stderr)
            result["node_kill"] = node_kill(server.url, cluster, payloads, spec.replicas)
            print(f"node kill: {result['node_kill']}", file=sys.stderr)
    finally:
        cluster.shutdown()
    result["sat_ratio"] = round(result["ray"]["sat_rps"] / result["local"]["sat_rps"], 3)
    result["p99_at_100_ratio"] = round(
        result["ray"]["p99_ms_at_100rps"] / result["local"]["p99_ms_at_100rps"], 3)
    print(f"Ray / local saturated throughput {result['sat_ratio']} (target >= 0.9); "
          f"node kill: full capacity after {result['node_kill']['heal_s']} s (target <= 3), "
          f"{result['node_kill']['failed_requests']} failed (target 0)", file=sys.stderr)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
