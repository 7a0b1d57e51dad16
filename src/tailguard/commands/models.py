"""CLI commands: ``tailguard models register|list|show``."""

from __future__ import annotations

import json
from pathlib import Path

import typer

# tailguard.artifacts (pydantic) and rich are imported inside each command: every CLI call
# imports this module to build the command tree.

models_app = typer.Typer(help="Register and inspect model artifacts.", no_args_is_help=True)


@models_app.command("register")
def register_cmd(
    path: Path = typer.Argument(..., help="Artifact directory with manifest.json"),
) -> None:
    """Verify an artifact directory and add it to the registry."""
    from tailguard.artifacts import ArtifactError, Registry

    try:
        manifest = Registry().register(path)
    except ArtifactError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc
    typer.echo(f"registered {manifest.ref}")


@models_app.command("list")
def list_cmd(
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object per line"),
) -> None:
    """List registered artifacts."""
    from rich.console import Console
    from rich.table import Column, Table

    from tailguard.artifacts import Registry

    manifests = Registry().list()
    if as_json:
        for m in manifests:
            typer.echo(json.dumps({"ref": m.ref, "name": m.name, "version": m.version,
                                   "task": m.task, "entrypoint": m.entrypoint,
                                   "created_at": m.created_at}))
        return
    # The ref is what a user pastes (serve configs, models show): never cut it.
    table = Table(Column("ref", no_wrap=True), Column("task", overflow="fold"),
                  Column("entrypoint", overflow="fold"), Column("created_at", overflow="fold"))
    for m in manifests:
        table.add_row(m.ref, m.task, m.entrypoint, m.created_at)
    Console().print(table)


@models_app.command("show")
def show_cmd(ref: str = typer.Argument(..., help="NAME or NAME:VERSION")) -> None:
    """Print an artifact's manifest (after verifying its files)."""
    from tailguard.artifacts import ArtifactError, Registry

    try:
        manifest, path = Registry().get(ref)
    except ArtifactError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc
    typer.echo(json.dumps({"path": str(path), **manifest.model_dump()}, indent=2))


def register(app: typer.Typer) -> None:
    app.add_typer(models_app, name="models")
