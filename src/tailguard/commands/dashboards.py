"""CLI command: ``tailguard dashboards render`` — Grafana dashboard JSON from a serve config."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

dashboards_app = typer.Typer(help="Grafana dashboards for tailguard's metrics.",
                             no_args_is_help=True)


@dashboards_app.command("render")
def render_cmd(
    config: Annotated[Path, typer.Option("--config", "-c", help="serve config (YAML)")],
    out: Annotated[Path, typer.Option("--out", "-o", help="directory to write them to")],
) -> None:
    """Write DIR/tailguard-serving.json and DIR/tailguard-training.json (Grafana, with a
    ${datasource} variable: pick the Prometheus at import)."""
    from tailguard.observe.grafana import render_dashboards
    from tailguard.serve.config import load_config

    try:
        files = render_dashboards(load_config(config))
    except ValueError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    out.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (out / name).write_text(text)
        typer.echo(str(out / name))


def register(app: typer.Typer) -> None:
    app.add_typer(dashboards_app, name="dashboards")
