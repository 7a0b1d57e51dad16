"""CLI command: ``tailguard alerts render`` — Prometheus SLO rules from a serve config."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

alerts_app = typer.Typer(help="Prometheus SLO recording and burn-rate alerting rules.",
                         no_args_is_help=True)


@alerts_app.command("render")
def render_cmd(
    config: Annotated[Path, typer.Option("--config", "-c", help="serve config (YAML)")],
    out: Annotated[Path, typer.Option("--out", "-o", help="directory to write the rules to")],
    window_scale: Annotated[float, typer.Option(
        help="multiply every alert window (tests: 0.01 makes 1h 36s)")] = 1.0,
    shed_ratio: Annotated[float, typer.Option(
        help="a tenant shed more than this share over 6h and 30m gets a ticket")] = 0.05,
) -> None:
    """Write DIR/tailguard-slo.rules.yml: SLIs, error budgets and multiwindow burn-rate alerts
    for every deployment's and tenant's availability and p99_ms objectives."""
    from tailguard.observe.slo_rules import RULES_FILE, render_rules
    from tailguard.serve.config import load_config

    try:
        text = render_rules(load_config(config), window_scale, shed_ratio)
    except ValueError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    out.mkdir(parents=True, exist_ok=True)
    (out / RULES_FILE).write_text(text)
    typer.echo(str(out / RULES_FILE))


def register(app: typer.Typer) -> None:
    app.add_typer(alerts_app, name="alerts")
