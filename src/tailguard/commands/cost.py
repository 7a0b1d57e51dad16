"""CLI command: ``tailguard cost`` — replica-seconds and cost per tenant and deployment."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Annotated
from urllib.parse import urlsplit

import typer

Opt = typer.Option


def cost(
    *,
    since: Annotated[str, Opt(help="Window start: a duration ago (30m, 2h, 1d) or an ISO time")],
    url: Annotated[str, Opt(help="Server to read /v1/usage and /v1/deployments from")] = (
        "http://127.0.0.1:8000"
    ),
    api_key: Annotated[str | None, Opt(envvar="TAILGUARD_API_KEY",
                                       help="Admin key (to see every tenant)")] = None,
    prices: Annotated[Path | None, Opt(help="Price table YAML (default: example prices)")
                      ] = None,
    instance: Annotated[str | None, Opt(help="Instance type the replicas run on (default: the "
                                             "table's default_instance)")] = None,
    fmt: Annotated[str, Opt("--format", help="table | csv | json")] = "table",
) -> None:
    """Cost per tenant and deployment from usage metering (OpenCost method).

    Each deployment is billed max(reserved, used) replica-seconds; tenants pay what they
    used, and idle time is a row of its own.
    """
    from tailguard.artifacts import tailguard_home
    from tailguard.ops.cost import (
        UsageRow,
        allocate,
        fetch_json,
        format_report,
        parse_since,
        reserved_replica_seconds,
        usage_since,
    )
    from tailguard.ops.prices import load_prices

    if fmt not in ("table", "csv", "json"):
        typer.echo(f"error: --format must be table, csv or json, got {fmt!r}", err=True)
        raise typer.Exit(2)
    try:
        inst = load_prices(prices).get(instance)
        now = time.time()
        start = parse_since(since, now)
        usage = fetch_json(url, "/v1/usage", api_key)
        deployments = fetch_json(url, "/v1/deployments", api_key)["deployments"]
        parts = urlsplit(url)
        snapshots = tailguard_home() / "usage" / f"{parts.hostname}_{parts.port or 80}.jsonl"
        rows, window_start, warnings = usage_since(
            [UsageRow.from_dict(u) for u in usage["usage"]], float(usage["since"]), start, now,
            snapshots)
        reserved = reserved_replica_seconds(deployments, now - window_start)
        report = allocate(rows, reserved, (window_start, now), inst, warnings)
    except (ValueError, OSError, KeyError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    sys.stdout.write(format_report(report, fmt) + "\n")


def register(app: typer.Typer) -> None:
    """Add this module's commands to the root app."""
    app.command("cost")(cost)
