"""CLI command: ``tailguard plan`` — replicas, instances and cost for a load and an SLO."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

Opt = typer.Option


def plan(
    *,
    slo_ms: Annotated[float, Opt(help="P99 latency objective (ms)")],
    rate: Annotated[float | None, Opt("--rate", "-r", help="Target requests/s (Poisson)")] = None,
    trace: Annotated[str | None, Opt(help="Or a TRACE: gamma:rate=200,cv=3, csv:file.csv, ...")
                     ] = None,
    profile: Annotated[Path | None, Opt(help="Profile JSON from `tailguard profile`")] = None,
    deployment: Annotated[str | None, Opt("--deployment", "-D", help="Use its stored profile "
                                                                      "and batch settings")] = None,
    config: Annotated[Path | None, Opt(help="serve.yaml holding --deployment")] = None,
    prices: Annotated[Path | None, Opt(help="Price table YAML (default: example prices)")
                      ] = None,
    instance: Annotated[str | None, Opt(help="Instance type in use or intended (warned about "
                                             "when another kind is cheaper)")] = None,
    duration: Annotated[float, Opt(help="Simulated seconds of the target load")] = 60.0,
    seed: Annotated[int, Opt(help="Seed of the simulated arrivals")] = 0,
    max_wait_ms: Annotated[float | None, Opt(help="Batch wait (default: the deployment's, "
                                                  "else 2)")] = None,
    max_batch: Annotated[int | None, Opt(help="Max batch (default: the deployment's, else the "
                                              "profile's largest)")] = None,
    overhead_ms: Annotated[float, Opt(help="Gateway overhead per request added to the "
                                           "simulated latency")] = 0.0,
    json_output: Annotated[bool, Opt("--json", help="Print one JSON object")] = False,
) -> None:
    """Plan replicas, instances and cost for a target load and a P99 SLO.

    For each instance type of the price table: replicas and instances, checked by the
    simulator, cost per hour and per million requests; the cheapest that meets the SLO is
    marked. Exit status 1 when none does.
    """
    from tailguard.ops.plan import PlanConfig, format_plan, plan_arrivals, plan_capacity
    from tailguard.ops.prices import load_prices
    from tailguard.ops.profile import find_profile, load_profile, service_profile_from_dict
    from tailguard.serve.config import load_config

    try:
        if (profile is None) == (deployment is None):
            raise ValueError("give exactly one of --profile FILE or --deployment NAME")
        spec = None
        if deployment is not None:
            spec = load_config(config).deployment(deployment)
            data = find_profile(deployment, spec)
        else:
            assert profile is not None
            data = load_profile(profile)
        kmax = max_batch or (spec.max_batch_size if spec is not None else None)
        wait = max_wait_ms if max_wait_ms is not None else (
            spec.max_wait_ms if spec is not None else 2.0)
        measured = service_profile_from_dict(data, kmax)
        arrivals = plan_arrivals(rate, trace, duration, seed)
        result = plan_capacity(arrivals, duration, slo_ms, measured, load_prices(prices),
                               PlanConfig(max_wait_ms=wait, overhead_ms=overhead_ms,
                                          chosen=instance))
    except (ValueError, OSError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    if json_output:
        sys.stdout.write(json.dumps(result.to_dict()) + "\n")
    else:
        typer.echo(format_plan(result))
    if result.cheapest is None:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    """Add this module's commands to the root app."""
    app.command("plan")(plan)
