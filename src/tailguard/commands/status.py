"""CLI command: ``tailguard status [URL]`` — deployments, replicas and autoscaling decisions.

It prints what ``GET /v1/deployments`` returns: one table row per deployment (replica counts,
queue, the autoscaler's last metrics and decision), then each autoscaled deployment's recent
scaling decisions with their reasons. ``--json`` prints the raw answer.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from typing import Annotated, Any

import typer

DEFAULT_URL = "http://127.0.0.1:8000"


def register(app: typer.Typer) -> None:
    """Add this module's commands to the root app."""
    app.command("status")(status)


def fetch_deployments(url: str, api_key: str | None = None, timeout_s: float = 10.0) -> Any:
    """``GET {url}/v1/deployments`` as parsed JSON; raises ``OSError`` with a clear message."""
    request = urllib.request.Request(url.rstrip("/") + "/v1/deployments")
    if api_key:
        request.add_header("Authorization", f"Bearer {api_key}")
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as exc:
        detail = exc.read().decode(errors="replace")[:200]
        raise OSError(f"{url}: HTTP {exc.code} {detail}") from None
    except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
        raise OSError(f"cannot reach {url}: {getattr(exc, 'reason', exc)}") from None


def _fmt(value: Any, scale: float = 1.0, unit: str = "", digits: int = 1) -> str:
    if value is None:
        return "-"
    return f"{value * scale:.{digits}f}{unit}"


def render(data: Any) -> None:
    """Print the deployments table and the decision logs with rich."""
    from rich.console import Console
    from rich.table import Table

    console = Console()
    table = Table(title="deployments")
    for col in ("name", "ready", "desired", "ready/starting/draining", "queued rows",
                "policy", "arrival rps", "p99 ms", "busy", "last decision"):
        table.add_column(col, overflow="fold")
    deployments = data.get("deployments", [])
    for d in deployments:
        counts = d.get("replica_counts", {})
        auto = d.get("autoscaling") or {}
        metrics = auto.get("metrics") or {}
        last = auto.get("last_decision") or {}
        table.add_row(
            d["name"],
            "yes" if d.get("ready") else "no",
            str(counts.get("desired", "-")),
            f"{counts.get('ready', 0)}/{counts.get('starting', 0)}/{counts.get('draining', 0)}",
            str(d.get("queued_rows", 0)),
            auto.get("policy", "fixed"),
            _fmt(metrics.get("arrival_rps")),
            _fmt(metrics.get("p99_s"), 1e3),
            _fmt(metrics.get("busy_ratio"), digits=2),
            last.get("reason", "-"),
        )
    console.print(table)
    for d in deployments:
        auto = d.get("autoscaling")
        if not auto or not auto.get("decisions"):
            continue
        log = Table(title=f"{d['name']}: recent scaling decisions (newest first)")
        for col in ("when", "from", "to", "reason"):
            log.add_column(col, overflow="fold")
        for dec in auto["decisions"]:
            when = time.strftime("%H:%M:%S", time.localtime(dec.get("wall_time", 0)))
            log.add_row(when, str(dec["current"]), str(dec["target"]), dec["reason"])
        console.print(log)
        if auto.get("errors"):
            console.print(f"[red]{d['name']}: {auto['errors']} controller errors; "
                          f"last: {auto.get('last_error')}[/red]")


def status(
    url: Annotated[str, typer.Argument(help="gateway URL")] = DEFAULT_URL,
    api_key: Annotated[str | None, typer.Option(
        "--api-key", envvar="TAILGUARD_API_KEY", help="tenant or admin API key")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the raw JSON")] = False,
) -> None:
    """Show deployments, replica counts and the autoscaler's last decisions with reasons."""
    try:
        data = fetch_deployments(url, api_key)
    except OSError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    if as_json:
        typer.echo(json.dumps(data, indent=2))
        return
    render(data)
