"""`tailguard plan`'s predicted P99 for minilm against what `tailguard load` measures.

In one run, on this machine:

1. `tailguard profile minilm` measures service time per batch size in-process (threads 1);
2. `tailguard plan --rate R --slo-ms S` (a one-type price table: this machine, one replica per
   instance) picks the fewest replicas whose simulated P99 meets S, and predicts that P99;
   plus the serving overhead (``--overhead-ms``: the P50 of the echo model at the same
   rate, measured just before on a server of its own; ``--no-overhead`` leaves it out);
3. `tailguard serve` runs minilm with that many replicas, and `tailguard load --rate R`
   (open loop, Poisson, latency from the intended send time) measures the real P99, with
   request bodies drawn like the profile's inputs (short sentences).

The ratio measured / predicted should be within 25 % (0.75 .. 1.25). The last line is one JSON
object.

The profile and the load run share the machine with whatever else runs on it, and a replica
starved of CPU serves slower than the profile said. So the run also records how much CPU
each got: the profile's CPU seconds per wall second while timing, and the replicas' CPU time
over their busy time during the load (``/proc`` and ``/metrics``). When they differ, a second,
*diagnostic* prediction rescales the profile by their ratio (clearly marked: it uses a figure
of the measured run, so it explains a miss, it does not predict).

    python benchmarks/plan_validation.py [--rate 60] [--slo-ms 120] [--duration 40]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from _harness import PY, Server, free_port, load

from tailguard.ops.plan import PlanConfig, plan_arrivals, sim_p99_ms
from tailguard.ops.profile import service_profile_from_dict

PRICES = {"instances": [{"name": "this-machine", "kind": "cpu", "hourly_usd": 1.0,
                         "replicas_per_instance": 1, "speedup": 1.0}]}


def _cli(*args: str, env: dict[str, str]) -> dict[str, Any]:
    out = subprocess.run([PY, "-m", "tailguard", *args, "--json"], capture_output=True,
                         text=True, env=env, check=False)
    if out.returncode != 0:
        raise SystemExit(f"tailguard {args[0]} failed ({out.returncode}):\n{out.stderr}")
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def _payloads(path: Path, n: int = 512) -> Path:
    from tailguard.models.minilm import MiniLM
    from tailguard.ops.profile import generate_inputs

    rng = np.random.default_rng(1)
    with path.open("w") as f:
        for _ in range(n):
            text = generate_inputs(MiniLM.inputs, 1, rng)["text"][0].decode()
            f.write(json.dumps({"inputs": [{"name": "text", "datatype": "BYTES", "shape": [1],
                                            "data": [text]}]}) + "\n")
    return path


def _replica_cpu_s(url: str) -> float:
    """CPU seconds (user + system) of the deployment's replica processes so far."""
    with urllib.request.urlopen(url + "/v1/deployments", timeout=10) as r:
        pids = [rep["pid"] for d in json.loads(r.read())["deployments"]
                for rep in d["replicas"] if rep["pid"]]
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += (int(fields[11]) + int(fields[12])) / ticks
    return total


def _busy_s(url: str) -> float:
    """Seconds replicas spent serving batches (``tailguard_replica_service_seconds_sum``)."""
    with urllib.request.urlopen(url + "/metrics", timeout=10) as r:
        for line in r.read().decode().splitlines():
            if line.startswith("tailguard_replica_service_seconds_sum"):
                return float(line.rsplit(" ", 1)[1])
    return 0.0


def _plan(config: Path, prices: Path, args: argparse.Namespace, env: dict[str, str],
          overhead_ms: float) -> dict[str, Any]:
    plan = _cli("plan", "--deployment", "minilm", "--config", str(config), "--rate", str(args.rate),
                "--slo-ms", str(args.slo_ms), "--prices", str(prices), "--duration", "120",
                "--overhead-ms", f"{overhead_ms:.3f}",
                "--max-batch", str(args.max_batch), "--max-wait-ms", str(args.max_wait_ms),
                env=env)
    return dict(plan["choices"][0])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rate", type=float, default=60.0, help="offered req/s")
    ap.add_argument("--slo-ms", type=float, default=120.0)
    ap.add_argument("--duration", type=float, default=40.0, help="measured seconds of load")
    ap.add_argument("--profile-seconds", type=float, default=1.5, help="per batch size")
    ap.add_argument("--max-batch", type=int, default=16)
    ap.add_argument("--max-wait-ms", type=float, default=2.0)
    ap.add_argument("--no-overhead", dest="overhead", action="store_false",
                    help="do not add the echo-measured serving overhead to the prediction")
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="tailguard-plan-validation-"))
    env = {**os.environ, "TAILGUARD_HOME": str(work / "home")}
    deployment = {"name": "minilm", "model": "tailguard.models.minilm:MiniLM",
                  "options": {"threads": 1}, "max_batch_size": args.max_batch,
                  "max_wait_ms": args.max_wait_ms, "p99_ms": args.slo_ms}
    config = work / "serve.yaml"
    config.write_text(yaml.safe_dump({"deployments": [deployment]}))
    prices = work / "prices.yaml"
    prices.write_text(yaml.safe_dump(PRICES))

    sizes = ",".join(str(2**i) for i in range(args.max_batch.bit_length())
                     if 2**i <= args.max_batch)
    prof = _cli("profile", "minilm", "--config", str(config), "--batch-sizes", sizes,
                "--seconds", str(args.profile_seconds), env=env)
    print("profile: " + ", ".join(f"b{b['batch_size']} {b['mean_ms']:.1f} ms"
                                   for b in prof["batches"]), file=sys.stderr)
    # The path around the model (HTTP, JSON, queue, IPC to the replica, the load generator):
    # the P50 of the echo model at the same rate, on a server of its own, as measured now.
    echo_port = free_port()
    echo_cfg = work / "serve-echo.yaml"
    echo_cfg.write_text(yaml.safe_dump({"port": echo_port, "deployments": [
        {"name": "echo", "model": "tailguard.models.echo:Echo", "max_wait_ms": 0}]}))
    with Server([PY, "-m", "tailguard", "serve", "--config", str(echo_cfg)], echo_port,
                "plan-val-echo") as srv:
        echo = load(srv.url, "echo", "--rate", str(args.rate), "--duration", "8",
                    "--warmup", "2")
    overhead_ms = float(echo["p50_ms"]) if args.overhead else 0.0
    print(f"echo P50 {echo['p50_ms']:.2f} ms (overhead used: {overhead_ms:.2f} ms)",
          file=sys.stderr)
    choice = _plan(config, prices, args, env, overhead_ms)
    if not choice["meets_slo"]:
        raise SystemExit(f"the plan cannot meet {args.slo_ms} ms at {args.rate} req/s: "
                         f"{choice['note']}")
    replicas = int(choice["replicas"])
    predicted = float(choice["predicted_p99_ms"])
    print(f"plan: {replicas} replicas, predicted P99 {predicted:.1f} ms", file=sys.stderr)

    port = free_port()
    cfg = work / "serve-run.yaml"
    cfg.write_text(yaml.safe_dump({"port": port,
                                   "deployments": [{**deployment, "replicas": replicas}]}))
    bodies = _payloads(work / "payloads.jsonl")
    with Server([PY, "-m", "tailguard", "serve", "--config", str(cfg)], port, "plan-val") as srv:
        cpu0, busy0 = _replica_cpu_s(srv.url), _busy_s(srv.url)
        result = load(srv.url, "minilm", "--rate", str(args.rate), "--duration",
                      str(args.duration), "--warmup", "5", "--payloads", str(bodies))
        cpu1, busy1 = _replica_cpu_s(srv.url), _busy_s(srv.url)
    measured = result["p99_ms"]
    ratio = measured / predicted if measured else float("nan")
    serve_share = (cpu1 - cpu0) / max(busy1 - busy0, 1e-9)
    profile_share = float(prof.get("cpu_share") or 1.0)
    # Diagnostic only: the profile's times rescaled to the CPU share the replicas really got.
    scale = profile_share / serve_share if serve_share > 0 else 1.0
    scaled = dict(prof, service_s={b: t * scale for b, t in prof["service_s"].items()})
    # At the replica count that ran, simulated as the plan does.
    arrivals = plan_arrivals(rate_rps=args.rate, duration_s=120.0)
    diag_p99 = sim_p99_ms(arrivals, 120.0, service_profile_from_dict(scaled, args.max_batch),
                          replicas, PlanConfig(max_wait_ms=args.max_wait_ms,
                                               overhead_ms=overhead_ms))
    diag_ratio = measured / diag_p99 if measured and diag_p99 else float("nan")
    print(f"rate {args.rate:g} req/s, {replicas} replicas, SLO {args.slo_ms:g} ms")
    print(f"predicted P99 {predicted:.1f} ms (plan: profile + simulator)")
    print(f"measured  P99 {measured:.1f} ms (tailguard load, open loop; P50 "
          f"{result['p50_ms']:.1f} ms, {result['ok']}/{result['requests']} ok)")
    print(f"ratio measured/predicted {ratio:.3f} -> "
          f"{'within' if 0.75 <= ratio <= 1.25 else 'NOT within'} 25 %")
    print(f"CPU per wall second: profile {profile_share:.2f}, replicas while serving "
          f"{serve_share:.2f}; diagnostic P99 with the profile rescaled by {scale:.2f}: "
          f"{diag_p99:.1f} ms (ratio {diag_ratio:.3f}; uses the run's own figure)")
    for warning in result.get("warnings", []):
        print(f"load warning: {warning}")
    print(json.dumps({
        "rate_rps": args.rate, "slo_ms": args.slo_ms, "replicas": replicas,
        "predicted_p99_ms": round(predicted, 3), "measured_p99_ms": measured,
        "overhead_ms": round(overhead_ms, 3),
        "measured_p50_ms": result["p50_ms"], "ratio": round(ratio, 4),
        "within_25pct": bool(0.75 <= ratio <= 1.25), "load_fell_behind": result["fell_behind"],
        "profile_cpu_share": round(profile_share, 3), "serve_cpu_share": round(serve_share, 3),
        "diagnostic_p99_ms": round(diag_p99, 3), "diagnostic_ratio": round(diag_ratio, 4),
    }))


if __name__ == "__main__":
    main()
