"""MiniLM as `make serve` starts it, against the same model called in-process, in one run.

Baseline: the model's ``predict`` called directly in this process on batches of the same
sentences, with the machine to itself: the best rows/s over batch sizes and torch thread counts
(1, or every core). Gateway: **the built-in default deployment** — `tailguard serve` with no
config, exactly what `make serve` runs (``minilm``: one single-threaded replica per core,
``p99_ms: 50``, admission on, no tenants) — sent one sentence per request on the OpenAI
embeddings route, sentences of 5-60 tokens (log-normal, median 16). Four figures:

1. saturated throughput: closed loop at ``--concurrency`` (64), 2xx answers per second, as a
   ratio of the in-process best (target >= 0.9);
2. P99 at 100 req/s open loop (Poisson), against ``p99_ms`` (target <=), with the share shed;
3. at 2x the saturated throughput, open loop: P99 of the admitted requests (target <= ``p99_ms``)
   and goodput, answers within ``p99_ms`` per second, as a ratio of the saturated throughput
   (target >= 0.9);
4. ``--tuned``: the same with a deployment without ``p99_ms`` (no objective, batches up to 32).

    python benchmarks/serve_minilm.py [--duration 15] [--concurrency 64] [--tuned]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from _harness import PY, Server, free_port, load, tailguard_server

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


_VOCABULARY = ("the a of to and in that for on with as by at from this an be is are was it not or "
         "service request latency model data report team market engineer student river bridge "
         "quickly slowly carefully reviewed measured explained described before after during "
         "every many some results experiment pattern unusual plan quarter budget customer "
         "deployment replica cluster traffic morning evening city train station weather")
WORDS = _VOCABULARY.split()


def varied_sentences(n: int, seed: int = 0, tokens: tuple[int, int] = (5, 60),
                     median_tokens: float = 16.0) -> list[str]:
    """``n`` sentences of 5-60 tokens, log-normally distributed around ``median_tokens`` (as
    sentence lengths in text are: most short, a long tail; mean ~19). Common English words,
    one token each, plus the full stop and the tokenizer's [CLS] and [SEP]."""
    rng = np.random.default_rng(seed)
    lo, hi = tokens
    out = []
    for _ in range(n):
        length = int(np.clip(round(rng.lognormal(np.log(median_tokens), 0.6)), lo, hi))
        words = rng.choice(WORDS, size=max(1, length - 3))
        out.append(" ".join(words).capitalize() + ".")
    return out


def write_openai_payloads(texts: list[str]) -> Path:
    """A ``tailguard load --payloads`` file of OpenAI embedding requests, one text each."""
    path = Path(tempfile.mkdtemp()) / "minilm-openai.jsonl"
    path.write_text("".join(json.dumps({"model": "minilm", "input": t}) + "\n" for t in texts))
    return path


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


def default_server() -> Server:
    """`tailguard serve` with no config: the built-in deployments, as `make serve` starts them."""
    port = free_port()
    return Server([PY, "-m", "tailguard", "serve", "--port", str(port)], port, "default")


def measure(url: str, payloads: Path, args: argparse.Namespace, slo_ms: float | None,
            ) -> dict[str, Any]:
    common = ["--payloads", str(payloads), "--warmup", "3"]
    slo = ["--slo-ms", str(slo_ms)] if slo_ms else []
    # Closed-loop clients wait a 429's Retry-After as real clients do (the openai client
    # reads retry-after-ms): re-sending at once makes the generator a CPU flood on a
    # machine it shares with the server.
    sat = load(url, "minilm", "--concurrency", str(args.concurrency), "--duration",
               str(args.duration), "--retry-after", *common, protocol="openai")
    at100 = load(url, "minilm", "--rate", "100", "--duration", str(args.duration), *common,
                 *slo, protocol="openai")
    over_rate = 2 * sat["ok_rps"]
    over = load(url, "minilm", "--rate", f"{over_rate:.1f}", "--duration", str(args.duration),
                *common, *slo, protocol="openai")
    return {"sat": sat, "at100": at100, "over": over, "over_rate": over_rate,
            "metrics": _batch_rows(url)}


def _batch_rows(url: str) -> float | None:
    """Mean rows per batch of minilm over the run, from the server's histogram."""
    import urllib.request

    with urllib.request.urlopen(url + "/metrics", timeout=5) as r:
        text = r.read().decode()
    total = count = None
    for line in text.splitlines():
        if line.startswith('tailguard_batch_size_rows_sum{deployment="minilm"}'):
            total = float(line.split()[-1])
        elif line.startswith('tailguard_batch_size_rows_count{deployment="minilm"}'):
            count = float(line.split()[-1])
    return total / count if total is not None and count else None


def _shed(result: dict[str, Any]) -> float:
    n = result["requests"]
    return (n - result["ok"]) / n if n else 0.0


def summary(name: str, m: dict[str, Any], base_rps: float, slo_ms: float | None
            ) -> dict[str, Any]:
    sat, at100, over = m["sat"], m["at100"], m["over"]
    good = over.get("goodput_rps")
    out = {
        "sat_rps": round(sat["ok_rps"], 1), "ratio": round(sat["ok_rps"] / base_rps, 3),
        "sat_p99_ms": sat["p99_ms"], "sat_non_2xx": round(_shed(sat), 3),
        "p99_ms_at_100rps": at100["p99_ms"], "p50_ms_at_100rps": at100["p50_ms"],
        "not_ok_at_100rps": round(_shed(at100), 4),
        "over_rate_rps": round(m["over_rate"], 1), "over_p99_ms": over["p99_ms"],
        "over_ok_rps": round(over["ok_rps"], 1), "over_not_ok": round(_shed(over), 3),
        "goodput_rps": None if good is None else round(good, 1),
        "goodput_ratio": None if good is None else round(good / sat["ok_rps"], 3),
        "mean_batch_rows": None if m["metrics"] is None else round(m["metrics"], 2),
        "fell_behind": bool(at100["fell_behind"] or over["fell_behind"]),
    }
    print(f"{name}: saturated {out['sat_rps']} req/s (p99 {sat['p99_ms']:.0f} ms, "
          f"{out['sat_non_2xx']:.0%} not 2xx) = {out['ratio']:.2f} x in-process best; "
          f"100 req/s: p50 {at100['p50_ms']:.1f} ms, p99 {at100['p99_ms']:.1f} ms, "
          f"{out['not_ok_at_100rps']:.2%} not 2xx; at {out['over_rate_rps']} req/s: p99 "
          f"{over['p99_ms']:.1f} ms, goodput {out['goodput_rps']} req/s "
          f"({out['goodput_ratio']} x saturated), {out['over_not_ok']:.0%} refused; "
          f"mean batch {out['mean_batch_rows']} rows (SLO {slo_ms} ms)", file=sys.stderr)
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--duration", type=float, default=15.0)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--tuned", action="store_true",
                        help="also run a deployment without p99_ms (batches up to 32)")
    args = parser.parse_args()
    from tailguard.serve.config import default_config

    spec = default_config().deployment("minilm")
    assert spec is not None
    texts = varied_sentences(512)
    payloads = write_openai_payloads(texts)
    base_rps, best_batch, best_threads = 0.0, 1, 1
    for threads in sorted({1, os.cpu_count() or 1}):
        rps, batch, table = in_process_best(texts, threads, seconds=3.0)
        print(f"in-process MiniLM ({threads} threads): " +
              ", ".join(f"batch {b}: {r:.0f} rows/s" for b, r in table.items()), file=sys.stderr)
        if rps > base_rps:
            base_rps, best_batch, best_threads = rps, batch, threads
    result: dict[str, Any] = {"baseline_rps": round(base_rps, 1), "baseline_batch": best_batch,
                              "baseline_threads": best_threads, "p99_ms": spec.p99_ms,
                              "replicas": spec.replicas}
    with default_server() as server:
        result["default"] = summary("default (make serve)", measure(
            server.url, payloads, args, spec.p99_ms), base_rps, spec.p99_ms)
    if args.tuned:
        tuned = [{"name": "minilm", "model": spec.model, "replicas": spec.replicas,
                  "max_batch_size": spec.max_batch_size, "max_wait_ms": spec.max_wait_ms,
                  "options": dict(spec.options)}]
        with tailguard_server(tuned, "minilm") as server:
            result["tuned"] = summary("tuned (no p99_ms)", measure(
                server.url, payloads, args, spec.p99_ms), base_rps, None)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
