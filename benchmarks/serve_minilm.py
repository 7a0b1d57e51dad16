"""MiniLM through the gateway against the same model called in-process, in one run.

Baseline: the model's ``predict`` called directly in this process on batches of the same
sentences, with the machine to itself: the best rows/s over batch sizes and torch thread counts
(1, or every core). Gateway: one-sentence V2 requests from `tailguard load` (closed loop,
saturated) through `tailguard serve`, which batches them on replica processes (by default one
replica per core, one torch thread each). Also the P99 latency at 100 req/s open loop (Poisson).

    python benchmarks/serve_minilm.py [--duration 15] [--replicas N] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from _harness import load, tailguard_server

SUBJECTS = ["The engineer", "A small dog", "Our new service", "The market", "A student",
            "The old train", "My neighbour", "The research team"]
VERBS = ["quickly reviewed", "slowly crossed", "carefully measured", "happily described",
         "suddenly rejected", "patiently explained"]
OBJECTS = ["the latency report before lunch", "a long bridge over the river",
           "every request that arrived late", "the results of the experiment",
           "an unusual pattern in the data", "the plan for next quarter"]


def sentences(n: int, seed: int = 0) -> list[str]:
    rng = np.random.default_rng(seed)
    return [f"{rng.choice(SUBJECTS)} {rng.choice(VERBS)} {rng.choice(OBJECTS)}."
            for _ in range(n)]


def write_payloads(texts: list[str]) -> Path:
    """A ``tailguard load --payloads`` file: one V2 request per text (one row each)."""
    path = Path(tempfile.mkdtemp()) / "minilm.jsonl"
    path.write_text("".join(json.dumps({"inputs": [{"name": "text", "datatype": "BYTES",
                                                    "shape": [1], "data": [t]}]}) + "\n"
                            for t in texts))
    return path


def in_process_best(texts: list[str], threads: int, seconds: float) -> tuple[float, int, dict]:
    from tailguard.models.minilm import MiniLM

    model = MiniLM(threads=threads)
    model.setup()
    table: dict[int, float] = {}
    for batch in (1, 4, 8, 16, 32, 64):
        x = np.array([t.encode() for t in texts[:batch]], dtype=object)
        model.predict({"text": x})
        start, rows = time.perf_counter(), 0
        while time.perf_counter() - start < seconds:
            model.predict({"text": x})
            rows += batch
        table[batch] = rows / (time.perf_counter() - start)
    best = max(table, key=lambda b: table[b])
    return table[best], best, table


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--duration", type=float, default=15.0)
    parser.add_argument("--replicas", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--threads", type=int, default=1, help="torch threads per replica")
    parser.add_argument("--concurrency", type=int, default=64)
    args = parser.parse_args()
    texts = sentences(256)
    payloads = write_payloads(texts)
    base_rps, best_batch, best_threads = 0.0, 1, 1
    for threads in sorted({1, os.cpu_count() or 1}):
        rps, batch, table = in_process_best(texts, threads, seconds=3.0)
        print(f"in-process MiniLM ({threads} threads): " +
              ", ".join(f"batch {b}: {r:.0f} rows/s" for b, r in table.items()), file=sys.stderr)
        if rps > base_rps:
            base_rps, best_batch, best_threads = rps, batch, threads
    deployment = [{"name": "minilm", "model": "tailguard.models.minilm:MiniLM",
                   "replicas": args.replicas, "max_batch_size": max(best_batch, 32),
                   "max_wait_ms": 2, "options": {"threads": args.threads}}]
    with tailguard_server(deployment, "minilm") as server:
        common = ["--payloads", str(payloads), "--warmup", "2"]
        sat = load(server.url, "minilm", "--concurrency", str(args.concurrency),
                   "--duration", str(args.duration), *common)
        at100 = load(server.url, "minilm", "--rate", "100", "--duration", str(args.duration),
                     *common)
    ratio = sat["ok_rps"] / base_rps
    print(f"gateway saturated ({args.replicas} replicas x {args.threads} threads): "
          f"{sat['ok_rps']:.0f} req/s (1 text each, p99 {sat['p99_ms']:.0f} ms) vs in-process "
          f"best {base_rps:.0f} rows/s (batch {best_batch}, {best_threads} threads): "
          f"ratio {ratio:.2f}")
    print(f"open loop 100 req/s: p50 {at100['p50_ms']:.1f} ms, p99 {at100['p99_ms']:.1f} ms, "
          f"errors {at100['requests'] - at100['ok']}, generator fell behind: "
          f"{at100['fell_behind']}")
    print(json.dumps({"rps": round(sat["ok_rps"], 1), "baseline_rps": round(base_rps, 1),
                      "ratio": round(ratio, 3), "baseline_batch": best_batch,
                      "baseline_threads": best_threads,
                      "p99_ms_at_100rps": at100["p99_ms"], "p50_ms_at_100rps": at100["p50_ms"],
                      "errors": sat["requests"] - sat["ok"] + at100["requests"] - at100["ok"],
                      "replicas": args.replicas, "threads": args.threads}))


if __name__ == "__main__":
    main()
