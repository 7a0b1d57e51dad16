"""Benchmark of the load generator itself: can one process offer 1k, 5k and 10k req/s?

Starts a target in a subprocess on 127.0.0.1 — a bare echo server (uvicorn + httptools +
uvloop, raw ASGI: ``tests/support/echo_server.py``), or ``tailguard serve`` with
``--target serve`` — then runs:

1. a closed loop at concurrency 64: the most req/s this generator and target reach together;
2. open loops at each offered rate (default 1000, 5000, 10000 req/s), ``--duration`` s each
   after a warm-up: the sustained (achieved) rate, its ratio to the offered rate (the
   baseline), and the send-time error P99 (how late requests left against their schedule;
   its "schedule lag" part counts only requests that found a free connection, i.e. the
   generator's own timing).

With ``--tenants N`` every open-loop run shares its requests among N tenants (Zipf 1.1, each
with its own key), to show that the tenant mix costs nothing per request (the choice is a
precomputed array). ``--arrival`` takes any TRACE kind that accepts a rate (``poisson``,
``constant``, ``gamma:cv=3``).

The target shares the machine's cores with the generator; the CPU seconds each used are
printed, so a run limited by the server is told from one limited by the generator. Each
rate ends with a verdict: "kept up" (send-time error P99 under 1 ms, no connection waits) or
"could NOT keep up" with the reason. The last line is one JSON object::

    {"1000": {"achieved_rps": ..., "send_error_p99_ms": ..., ...}, "5000": {...}, ...}

Run: ``.venv/bin/python benchmarks/loadgen.py [--target echo|serve] [--duration 10]``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from tailguard.load import LoadResult, LoadSpec, Tenant, TenantMix, run_load

# The echo target is a test helper, not part of the package: run from the checkout's tests/.
_ECHO_SERVER = Path(__file__).resolve().parents[1] / "tests" / "support" / "echo_server.py"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _start_echo() -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen([sys.executable, str(_ECHO_SERVER)],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    port = int(proc.stdout.readline())
    return proc, f"http://127.0.0.1:{port}"


def _start_serve() -> tuple[subprocess.Popen[str], str]:
    try:
        import tailguard.commands.serve  # noqa: F401
    except ImportError:
        sys.exit("--target serve: `tailguard serve` is not available in this checkout")
    port = _free_port()
    script = Path(sys.executable).with_name("tailguard")
    found = str(script) if script.exists() else shutil.which("tailguard")
    command = [found] if found else [sys.executable, "-c", "from tailguard.cli import main; main()"]
    proc = subprocess.Popen([*command, "serve", "--host", "127.0.0.1", "--port", str(port)],
                            stdout=subprocess.DEVNULL, text=True)
    return proc, f"http://127.0.0.1:{port}"


def _wait_ready(url: str, proc: subprocess.Popen[str], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit(f"target exited with {proc.returncode} before it was ready")
        try:
            with urllib.request.urlopen(f"{url}/v2/health/ready", timeout=1) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.1)
    sys.exit(f"target at {url} not ready after {timeout_s:g} s")


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process (Linux /proc), NaN elsewhere."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return float("nan")


def _measure(spec: LoadSpec, server_pid: int) -> tuple[LoadResult, float, float]:
    client0, server0 = time.process_time(), _cpu_s(server_pid)
    result = run_load(spec)
    return result, time.process_time() - client0, _cpu_s(server_pid) - server0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--target", choices=("echo", "serve"), default="echo")
    parser.add_argument("--model", default="echo")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per rate")
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--rates", default="1000,5000,10000")
    parser.add_argument("--concurrency", type=int, default=64, help="closed-loop run")
    parser.add_argument("--arrival", default="poisson", help="poisson, constant, gamma:cv=3")
    parser.add_argument("--tenants", type=int, default=0, help="share load among N tenants")
    args = parser.parse_args()
    rates = [int(r) for r in args.rates.split(",") if r]
    mix = None
    if args.tenants:
        mix = TenantMix(tuple(Tenant(f"t{i}", f"key-{i}") for i in range(args.tenants)),
                        zipf_s=1.1)

    proc, url = _start_echo() if args.target == "echo" else _start_serve()
    try:
        _wait_ready(url, proc, 120.0)
        print(f"target: {args.target} at {url} (pid {proc.pid}); {os.cpu_count()} CPUs shared "
              "by generator and target", flush=True)
        closed, c_cpu, s_cpu = _measure(
            LoadSpec(url, model=args.model, concurrency=args.concurrency,
                     duration_s=args.duration, warmup_s=args.warmup), proc.pid)
        print(f"closed loop c={args.concurrency}: {closed.rps:.0f} req/s, p50 {closed.p50_ms} "
              f"ms, p99 {closed.p99_ms} ms, errors {closed.errors or 'none'}; CPU s: "
              f"generator {c_cpu:.1f}, target {s_cpu:.1f}", flush=True)
        summary: dict[str, dict[str, object]] = {}
        for rate in rates:
            result, c_cpu, s_cpu = _measure(
                LoadSpec(url, model=args.model, rate_rps=float(rate), duration_s=args.duration,
                         warmup_s=args.warmup, max_connections=512, arrival=args.arrival,
                         tenants=mix), proc.pid)
            ratio = result.rps / rate
            print(f"open loop {rate} req/s: achieved {result.rps:.0f} req/s (x{ratio:.3f} of "
                  f"offered), send-time error p50 {result.send_error_p50_ms} ms p99 "
                  f"{result.send_error_p99_ms} ms (schedule lag p99 "
                  f"{result.schedule_lag_p99_ms} ms), latency p50 {result.p50_ms} ms p99 "
                  f"{result.p99_ms} ms, errors {result.errors or 'none'}, fell behind "
                  f"{result.fell_behind}; CPU s: generator {c_cpu:.1f}, target {s_cpu:.1f}",
                  flush=True)
            for warning in result.warnings:
                print(f"  WARNING: {warning}", flush=True)
            verdict = "kept up" if not result.fell_behind else "could NOT keep up (see warnings)"
            print(f"  verdict at {rate} req/s: {verdict}", flush=True)
            summary[str(rate)] = {
                "achieved_rps": result.rps,
                "send_error_p99_ms": result.send_error_p99_ms,
                "schedule_lag_p99_ms": result.schedule_lag_p99_ms,
                "ratio": round(ratio, 4),
                "p99_ms": result.p99_ms,
                "fell_behind": result.fell_behind,
                "tenants": args.tenants,
                "generator_cpu_s": round(c_cpu, 2),
                "target_cpu_s": round(s_cpu, 2),
            }
        print(json.dumps(summary))
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


if __name__ == "__main__":
    main()
