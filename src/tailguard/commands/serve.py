"""CLI command: ``tailguard serve``."""

from __future__ import annotations

from pathlib import Path

import typer


def serve_cmd(
    config: Path | None = typer.Option(
        None, "--config", "-c", help="serve YAML (default: built-in echo + minilm)"),
    host: str | None = typer.Option(None, help="bind address (default 127.0.0.1)"),
    port: int | None = typer.Option(None, help="port (default 8000)"),
) -> None:
    """Serve the configured deployments over the V2 and OpenAI protocols."""
    from tailguard.serve.config import load_config
    from tailguard.serve.loader import DeploymentLoadError, extend_import_path, import_roots
    from tailguard.serve.server import PortInUse, serve

    try:
        cfg = load_config(config)
    except ValueError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    from tailguard.raylink import RayUnavailable

    extend_import_path(import_roots(config))
    updates = {k: v for k, v in (("host", host), ("port", port)) if v is not None}
    try:
        serve(cfg.model_copy(update=updates) if updates else cfg, config, updates)
    except (RayUnavailable, DeploymentLoadError, PortInUse) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc


def register(app: typer.Typer) -> None:
    app.command("serve")(serve_cmd)
