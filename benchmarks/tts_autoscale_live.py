"""TTS autoscaled live: the `slo` policy against the utilisation-only HPA, same trace, same server.

A compressed diurnal trace with a burst (``--minutes`` long, default 6: the rate rises from
``--base-rps`` to ``--peak-rps`` and back, with ``--burst-x`` times the rate for 30 s at
two-thirds of the way) is replayed open loop against a live ``tailguard serve`` with the
``tts`` deployment (Piper, one row per batch, ``p99_ms`` ``--slo-ms``), once per policy: ``slo``
and the HPA on busy fraction at each ``--hpa-targets`` (the best that reaches 99 % is the
baseline). Requests are V2 (one sentence each) in 10 s segments at the trace's rate. Figures
per run: replica-seconds (ready + starting + draining, sampled every 0.5 s), SLO attainment,
failed requests, and P99 per minute (the highest segment P99 of the minute: an upper bound).
The same arrivals then go through the simulator with the measured service time and cold
start, and the simulator's replica-seconds and P99 are compared with the live ``slo`` run.
Plots (PNG): replicas over time and P99 per minute, one line per run.

Targets (issue 16): SLO attainment >= 99 % with >= 20 % fewer replica-seconds than the best
HPA setting that also reaches 99 %, zero failed requests; simulator within 15 % of live.
Long: (1 + targets) runs of ``--minutes`` each.

    python benchmarks/tts_autoscale_live.py [--minutes 6] [--peak-rps 8] [--hpa-targets 0.5,0.7]

Last line: one JSON object.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _harness import tailguard_server

from tailguard.autoscale.policies import BoundsConfig, make_autoscaler
from tailguard.autoscale.sim import SimConfig, simulate
from tailguard.autoscale.snapshot import ServiceProfile
from tailguard.load import LoadSpec, run_load

SENTENCE = "The quick brown fox jumps over the lazy dog near the river bank."
BODY = json.dumps({"inputs": [{"name": "text", "datatype": "BYTES", "shape": [1],
                               "data": [SENTENCE]}]}).encode()
SEGMENT_S = 10.0


def rate_at(t: float, args: argparse.Namespace) -> float:
    span = args.minutes * 60.0
    diurnal = args.base_rps + (args.peak_rps - args.base_rps) * math.sin(math.pi * t / span) ** 2
    burst_at = span * 2 / 3
    return diurnal * (args.burst_x if burst_at <= t < burst_at + 30 else 1.0)


def deployment(policy: str, options: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    return {"name": "tts", "model": "tailguard.models.tts:PiperTTS", "max_batch_size": 1,
            "max_wait_ms": 0, "p99_ms": args.slo_ms, "timeout_ms": 60_000,
            "options": {"threads": 1},
            "autoscaling": {"policy": policy, "min_replicas": 1, "max_replicas": args.max_replicas,
                            "tick_s": 1.0, "window_s": 10.0, "options": options}}


def _status(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(url + "/v1/deployments", timeout=10) as resp:
        doc = json.loads(resp.read())
    return next(d for d in doc["deployments"] if d["name"] == "tts")


def run(name: str, policy: str, options: dict[str, Any], args: argparse.Namespace,
        ) -> dict[str, Any]:
    samples: list[tuple[float, int]] = []
    stop = threading.Event()
    with tailguard_server([deployment(policy, options, args)], f"tts-{name}") as server:
        def watch() -> None:
            while not stop.is_set():
                counts = _status(server.url)["replica_counts"]
                samples.append((time.monotonic(), counts["ready"] + counts["starting"]
                                + counts["draining"]))
                stop.wait(0.5)

        watcher = threading.Thread(target=watch, daemon=True)
        t0 = time.monotonic()
        watcher.start()
        segments = []
        for k in range(int(args.minutes * 60 / SEGMENT_S)):
            spec = LoadSpec(server.url, model="tts", rate_rps=max(rate_at(k * SEGMENT_S, args),
                                                                  0.1),
                            duration_s=SEGMENT_S, bodies=(BODY,), timeout_s=60.0, seed=k,
                            slo_ms=args.slo_ms, max_connections=64)
            segments.append(run_load(spec))
        stop.set()
        watcher.join()
        final = _status(server.url)
    times = np.array([t - t0 for t, _ in samples])
    counts = np.array([c for _, c in samples], dtype=float)
    replica_s = float(np.sum(counts[:-1] * np.diff(times))) if len(samples) > 1 else 0.0
    requests = sum(s.requests for s in segments)
    ok = sum(s.ok for s in segments)
    within = sum((s.slo_attainment_pct or 0.0) / 100 * s.requests for s in segments)
    per_min = [max((s.p99_ms or 0.0) for s in segments[m:m + 6]) for m in range(0, len(segments), 6)]
    return {"name": name, "policy": policy, "options": options, "replica_seconds": replica_s,
            "requests": requests, "failed": requests - ok,
            "slo_attainment": within / requests if requests else 0.0,
            "p99_ms_per_minute": per_min, "p99_ms_max": max(per_min, default=None),
            "service_model": final["service_model"], "cold_start_s": final["cold_start_s"],
            "timeline": [times.tolist(), counts.tolist()]}


def simulated(live: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    rng = np.random.default_rng(7)
    arrivals: list[float] = []
    for k in range(int(args.minutes * 60 / SEGMENT_S)):
        rate = max(rate_at(k * SEGMENT_S, args), 0.1)
        n = rng.poisson(rate * SEGMENT_S)
        arrivals.extend(sorted(k * SEGMENT_S + rng.uniform(0, SEGMENT_S, n)))
    model = live["service_model"]
    profile = ServiceProfile(fixed_s=max(model["fixed_s"], 1e-3), per_row_s=model["per_row_s"],
                             max_batch_size=1)
    cfg = SimConfig(duration_s=args.minutes * 60, profile=profile, max_wait_ms=0,
                    cold_start_s=live["cold_start_s"] or 2.0, slo_p99_ms=args.slo_ms)
    bounds = BoundsConfig(min_replicas=1, max_replicas=args.max_replicas)
    result = simulate(np.array(arrivals), make_autoscaler("slo", bounds,
                                                          slo_p99_s=args.slo_ms / 1000), cfg)
    return {"replica_seconds": result.replica_seconds, "p99_ms": result.p99_s * 1000,
            "slo_attainment": result.slo_attainment}


def plot(runs: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (top, bottom) = plt.subplots(2, 1, figsize=(9, 6), sharex=False)
    for r in runs:
        top.step(r["timeline"][0], r["timeline"][1], where="post", label=r["name"])
        bottom.plot(range(1, len(r["p99_ms_per_minute"]) + 1), r["p99_ms_per_minute"],
                    marker="o", label=r["name"])
    top.set_ylabel("replicas")
    top.set_xlabel("s")
    bottom.set_ylabel("P99 ms (per minute)")
    bottom.set_xlabel("minute")
    top.legend()
    fig.tight_layout()
    fig.savefig(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, default=6.0)
    parser.add_argument("--base-rps", type=float, default=1.0)
    parser.add_argument("--peak-rps", type=float, default=8.0)
    parser.add_argument("--burst-x", type=float, default=1.5)
    parser.add_argument("--slo-ms", type=float, default=2000.0)
    parser.add_argument("--max-replicas", type=int, default=4)
    parser.add_argument("--hpa-targets", default="0.5,0.7")
    parser.add_argument("--plot", type=Path, default=Path("tts_autoscale_live.png"))
    args = parser.parse_args()
    runs = [run("slo", "slo", {"scale_down_stabilization_s": 60}, args)]
    for target in (float(t) for t in args.hpa_targets.split(",")):
        runs.append(run(f"hpa@{target}", "hpa", {"metric": "busy", "target_utilization": target,
                                                 "sync_period_s": 5.0}, args))
    for r in runs:
        print(f"{r['name']}: {r['replica_seconds']:.0f} replica-s, SLO "
              f"{100 * r['slo_attainment']:.2f} %, failed {r['failed']}, "
              f"P99/min {r['p99_ms_per_minute']}", flush=True)
    plot(runs, args.plot)
    slo = runs[0]
    passing = [r for r in runs[1:] if r["slo_attainment"] >= 0.99]
    best = min(passing, key=lambda r: r["replica_seconds"], default=None)
    sim = simulated(slo, args)
    out = {
        "runs": [{k: v for k, v in r.items() if k != "timeline"} for r in runs],
        "best_hpa": None if best is None else best["name"],
        "replica_seconds_ratio_slo_over_best_hpa": (
            None if best is None else slo["replica_seconds"] / best["replica_seconds"]),
        "simulator": sim,
        "sim_replica_seconds_error": sim["replica_seconds"] / max(slo["replica_seconds"], 1e-9) - 1,
        "sim_p99_error": (None if not slo["p99_ms_max"] else
                          sim["p99_ms"] / slo["p99_ms_max"] - 1),
        "plot": str(args.plot),
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
