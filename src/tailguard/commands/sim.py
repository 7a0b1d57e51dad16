"""CLI command: ``tailguard sim`` — a policy on an arrival trace, in a discrete-event simulation."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

Opt = typer.Option


def register(app: typer.Typer) -> None:
    """Add this module's commands to the root app."""
    app.command("sim")(sim)


def sim(
    policy: Annotated[str, Opt(help="slo | hpa | concurrency")] = "slo",
    trace: Annotated[str, Opt(help="e.g. poisson:rate=200, gamma:rate=200,cv=3, csv:f.csv")] = (
        "poisson:rate=200"
    ),
    duration: Annotated[float, Opt(help="simulated seconds")] = 600.0,
    seed: Annotated[int, Opt(help="trace seed")] = 0,
    slo_ms: Annotated[float | None, Opt(help="P99 objective in ms (default 200)")] = None,
    plot: Annotated[Path | None, Opt(help="write a PNG of rate, replicas and P99")] = None,
    as_json: Annotated[bool, Opt("--json", help="print one JSON object")] = False,
    config: Annotated[Path | None, Opt(help="YAML with service/sim/bounds/policies")] = None,
    opt: Annotated[list[str] | None, Opt(help="policy option KEY=VALUE (repeatable)")] = None,
    fixed_ms: Annotated[float | None, Opt(help="service time a in a + b*batch (ms)")] = None,
    per_row_ms: Annotated[float | None, Opt(help="service time b in a + b*batch (ms)")] = None,
    max_batch: Annotated[int | None, Opt(help="max batch size")] = None,
    max_wait_ms: Annotated[float | None, Opt(help="batch wait when the queue is short")] = None,
    cold_start_s: Annotated[float | None, Opt(help="replica start time")] = None,
    tick_s: Annotated[float | None, Opt(help="controller period")] = None,
    window_s: Annotated[float | None, Opt(help="metrics window")] = None,
    min_replicas: Annotated[int | None, Opt()] = None,
    max_replicas: Annotated[int | None, Opt()] = None,
    initial_replicas: Annotated[int | None, Opt()] = None,
    warmup_s: Annotated[float | None, Opt(help="left out of the figures")] = None,
) -> None:
    """Simulate an autoscaling policy on an arrival trace and report SLO attainment and cost."""
    from tailguard.autoscale.scenario import (
        build_scenario,
        format_result,
        parse_options,
        run_scenario,
    )

    try:
        scenario = build_scenario(
            policy,
            trace,
            duration,
            seed,
            slo_ms,
            config,
            parse_options(opt or []),
            fixed_ms=fixed_ms,
            per_row_ms=per_row_ms,
            max_batch_size=max_batch,
            max_wait_ms=max_wait_ms,
            cold_start_s=cold_start_s,
            tick_s=tick_s,
            metrics_window_s=window_s,
            min_replicas=min_replicas,
            max_replicas=max_replicas,
            initial_replicas=initial_replicas,
            warmup_s=warmup_s,
        )
        result = run_scenario(scenario)
    except (ValueError, OSError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    if plot is not None:
        from tailguard.autoscale.plot import plot_results

        plot_results([result], plot, title=f"{policy} on {trace}")
    if as_json:
        typer.echo(json.dumps({**result.to_dict(), "trace": trace, "seed": seed}))
    else:
        typer.echo(format_result(result))
        if plot is not None:
            typer.echo(f"plot: {plot}")
