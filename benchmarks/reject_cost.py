"""What a refused request costs: gateway and load-generator CPU per 429, against a served one.

A tenant rate-limited to 1 req/s floods the minilm deployment open-loop (every request is
refused at the door, 429 ``rate_limited``); the gateway's and the generator's CPU time over
the flood, divided by the requests sent, is the cost of one refusal. The baseline, measured in
the same run: the gateway's CPU per answered request under closed-loop saturation (admin key,
outside admission). Under overload the gateway refuses far more requests than it serves, and
every core it spends on them is taken from the replicas on the same machine — which is what
bounds ``noisy_neighbor.py``'s goodput.

    python benchmarks/reject_cost.py [--rate 2000] [--seconds 5]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml
from _harness import PY, Server, free_port, load_result, start_load
from noisy_neighbor import ADMIN, KEY_DOOR, _config
from serve_minilm import sentences, write_payloads


def _cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _load(url: str, payloads: Path, key: str, *mode: str) -> subprocess.Popen[str]:
    return start_load(url, "minilm", *mode, "--payloads", str(payloads), "--api-key", key)


def _measure(server_pid: int, proc: subprocess.Popen[str], settle_s: float,
             seconds: float) -> tuple[float, float, dict[str, Any]]:
    """(gateway CPU s, generator CPU s) over ``seconds`` after ``settle_s``, and the result."""
    time.sleep(settle_s)  # the generator's start-up and the first connections
    g0, l0 = _cpu_s(server_pid), _cpu_s(proc.pid)
    time.sleep(seconds)
    g1, l1 = _cpu_s(server_pid), _cpu_s(proc.pid)
    return g1 - g0, l1 - l0, load_result(proc)


def main() -> None:
    if not Path("/proc/self/stat").exists():
        sys.exit("reject_cost.py reads process CPU times from /proc (Linux only)")
    parser = argparse.ArgumentParser()
    parser.add_argument("--rate", type=float, default=2000.0, help="flood, requests/s")
    parser.add_argument("--seconds", type=float, default=5.0, help="measured window")
    args = parser.parse_args()
    payloads = write_payloads(sentences(256))
    port = free_port()
    cfg = Path(tempfile.mkdtemp()) / "serve.yaml"
    cfg.write_text(yaml.safe_dump({"port": port, **_config(1, 1, True)}))
    settle, total = 2.0, args.seconds + 3.0
    with Server([PY, "-m", "tailguard", "serve", "--config", str(cfg)], port, "rej") as srv:
        pid = srv.proc.pid
        served = _load(srv.url, payloads, ADMIN, "--concurrency", "64",
                       "--duration", f"{total:.0f}")
        gw_ok, _, ok = _measure(pid, served, settle, args.seconds)
        flood = _load(srv.url, payloads, KEY_DOOR, "--rate", f"{args.rate:.0f}",
                      "--duration", f"{total:.0f}")
        gw_rej, gen_rej, rej = _measure(pid, flood, settle, args.seconds)
    ok_n = float(ok["ok_rps"]) * args.seconds
    rej_n = args.rate * args.seconds
    refused = rej["errors"].get("http_429", 0)
    figures: dict[str, Any] = {
        "gateway_us_per_reject": round(gw_rej / rej_n * 1e6, 1),
        "generator_us_per_reject": round(gen_rej / rej_n * 1e6, 1),
        "gateway_us_per_served": round(gw_ok / ok_n * 1e6, 1) if ok_n else None,
        "refused_share": round(refused / max(1, int(rej["requests"])), 4),
        "reject_p99_ms": rej.get("status_latency_ms", {}).get("429", {}).get("p99"),
        "flood_rps": args.rate,
    }
    served_us = figures["gateway_us_per_served"]
    ratio = (figures["gateway_us_per_reject"] / served_us) if served_us else None
    figures["reject_vs_served_ratio"] = round(ratio, 2) if ratio else None
    print(f"gateway: {figures['gateway_us_per_reject']} us per refused request (open loop, "
          f"{args.rate:.0f} req/s) vs {served_us} us per served one (closed loop, 64 "
          f"connections): ratio {figures['reject_vs_served_ratio']}; generator "
          f"{figures['generator_us_per_reject']} us per request")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
