"""CLI command: ``tailguard chaos`` — load with faults injected into a deployment's replicas."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

Opt = typer.Option


def chaos(
    url: Annotated[str, typer.Argument(help="Local server, e.g. http://127.0.0.1:8000")],
    *,
    deployment: Annotated[str, Opt("--deployment", "-D", help="Deployment to hit and fault")],
    duration: Annotated[float, Opt("--duration", "-d", help="Seconds of load")] = 60.0,
    rate: Annotated[float | None, Opt("--rate", "-r", help="Open loop: requests/s")] = None,
    concurrency: Annotated[int | None, Opt("--concurrency", "-c", help="Closed loop")] = None,
    fault: Annotated[list[str] | None, Opt(
        "--fault", help="kill | stop | delay | restart (repeat to mix; default kill)")] = None,
    every: Annotated[float, Opt(help="Seconds between faults (mean gap with --random)")] = 10.0,
    random: Annotated[bool, Opt("--random", help="Seeded random times, kinds and replicas")] = (
        False
    ),
    seed: Annotated[int, Opt(help="Seed of --random and of the arrivals")] = 0,
    first: Annotated[float | None, Opt(help="Seconds before the first fault (default --every)")
                     ] = None,
    stop_hold: Annotated[float, Opt(help="stop: seconds a replica stays stopped")] = 2.0,
    delay_ms: Annotated[float, Opt(help="delay: length of each SIGSTOP burst (ms)")] = 50.0,
    delay_for: Annotated[float, Opt(help="delay: seconds of bursts per fault")] = 2.0,
    slo_ms: Annotated[float | None, Opt(help="P99 objective (default: the deployment's)")] = None,
    protocol: Annotated[str, Opt(help="v2 or openai")] = "v2",
    inputs: Annotated[list[str] | None, Opt(
        "--input", help="V2: NAME[:DATATYPE[:SHAPE]]=JSON (repeat per tensor); openai: TEXT")
    ] = None,
    payloads: Annotated[Path | None, Opt(help="JSONL file, one request body per line")] = None,
    timeout: Annotated[float, Opt(help="Seconds before a request times out")] = 30.0,
    api_key: Annotated[str | None, Opt(envvar="TAILGUARD_API_KEY",
                                       help="Admin key (restart needs one when tenants exist)")
                       ] = None,
    json_output: Annotated[bool, Opt("--json", help="Print one JSON object")] = False,
) -> None:
    """Load a local server while killing, stopping, delaying or restarting replicas.

    Reports the faults, requests lost (must be 0), errors by kind and the time to recover
    the SLO after each fault. Exit status 1 when a request was lost.
    """
    from tailguard.load import LoadSpec
    from tailguard.load.client import LoadTargetError
    from tailguard.load.payloads import PayloadError, read_payloads_file
    from tailguard.ops.chaos import ChaosConfig, FaultKind, format_report, run_chaos

    try:
        kinds = tuple(FaultKind(k) for k in (fault or ["kill"]))
        cfg = ChaosConfig(faults=kinds, every_s=every, random=random, seed=seed, first_s=first,
                          stop_hold_s=stop_hold, delay_ms=delay_ms, delay_burst_s=delay_for,
                          slo_ms=slo_ms)
        spec = LoadSpec(url=url, model=deployment, protocol=protocol, rate_rps=rate,
                        concurrency=concurrency, duration_s=duration, timeout_s=timeout,
                        api_key=api_key, seed=seed, inputs=tuple(inputs or ()),
                        bodies=read_payloads_file(payloads) if payloads else ())
        report = run_chaos(spec, cfg, deployment)
    except (ValueError, OSError, PayloadError, LoadTargetError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    if json_output:
        sys.stdout.write(report.to_json() + "\n")
    else:
        typer.echo(format_report(report))
    if report.lost:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    """Add this module's commands to the root app."""
    app.command("chaos")(chaos)
