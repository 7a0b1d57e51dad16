"""CLI commands: ``tailguard train JOB.yaml [--resume]`` and ``tailguard runs list|show``."""

from __future__ import annotations

import json
from pathlib import Path

import typer

runs_app = typer.Typer(help="Inspect training runs.", no_args_is_help=True)


def train_cmd(
    job_file: Path = typer.Argument(..., help="Training job (YAML)"),
    resume: bool = typer.Option(False, "--resume",
                                help="Continue the job's latest run from its last checkpoint"),
    run_id: str | None = typer.Option(None, "--run-id", help="Run to resume (default: latest)"),
    engine: str = typer.Option("local", "--engine",
                               help="local (worker processes here) or ray (one Ray actor per "
                                    "rank across the cluster's nodes)"),
    ray_address: str | None = typer.Option(
        None, "--ray-address", help="with --engine ray: 'auto', HOST:PORT or ray://HOST:PORT "
                                    "(default $RAY_ADDRESS, else a Ray started here)"),
    metrics_port: int | None = typer.Option(
        None, "--metrics-port", envvar="TAILGUARD_TRAIN_METRICS_PORT",
        help="serve tailguard_train_* for Prometheus on 127.0.0.1:PORT while the job runs "
             "(0: a free port, printed); off by default"),
) -> None:
    """Train a model on supervised workers (local processes or Ray actors); register it."""
    from tailguard.train import JobError, LocalEngine, load_job

    if engine not in ("local", "ray"):
        typer.echo(f"error: --engine must be local or ray, got {engine!r}", err=True)
        raise typer.Exit(2)
    try:
        job = load_job(job_file)
        if engine == "ray":
            from tailguard.train.ray_engine import RayEngine

            runner: LocalEngine = RayEngine(address=ray_address, metrics_port=metrics_port)
        else:
            runner = LocalEngine(metrics_port=metrics_port)
        result = runner.run(job, resume=resume, run_id=run_id)
    except JobError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    if not result.succeeded:
        typer.echo(f"error: {result.message} (run {result.run_id}; "
                   f"see tailguard runs show {result.run_id})", err=True)
        raise typer.Exit(1)
    typer.echo(json.dumps({"run_id": result.run_id, "artifact": result.artifact_ref,
                           "metrics": result.metrics, "restarts": result.restarts}))


@runs_app.command("list")
def list_cmd(
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object per line"),
) -> None:
    """List training runs, newest first."""
    from rich.console import Console
    from rich.table import Column, Table

    from tailguard.train import read_events, summarize
    from tailguard.train.runs import runs_root

    root = runs_root()
    entries = sorted((p for p in root.iterdir() if p.is_dir()), key=lambda p: p.stat().st_mtime,
                     reverse=True) if root.is_dir() else []
    summaries = [summarize(e.name, read_events(e / "metrics.jsonl")) for e in entries]
    if as_json:
        for s in summaries:
            typer.echo(json.dumps({"run_id": s.run_id, "status": s.status,
                                   "last_step": s.last_step, "restarts": s.restarts,
                                   "eval_metrics": s.eval_metrics,
                                   "artifact": s.artifact_ref}))
        return
    # The run id is what a user pastes (runs show, --run-id): never cut it.
    table = Table(Column("run", no_wrap=True), "status", "step",
                  Column("metric", overflow="fold"), "restarts",
                  Column("artifact", overflow="fold"))
    for s in summaries:
        metric = ", ".join(f"{k} {v:.4g}" for k, v in s.eval_metrics.items() if k != "rows")
        table.add_row(s.run_id, s.status, str(s.last_step), metric, str(s.restarts),
                      s.artifact_ref or "")
    Console().print(table)


@runs_app.command("show")
def show_cmd(
    run_id: str = typer.Argument(..., help="Run id (see tailguard runs list)"),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON"),
) -> None:
    """Summarise a run: status, restarts, loss, throughput, eval metrics, time-to-target."""
    from dataclasses import asdict

    from rich.console import Console
    from rich.table import Table

    from tailguard.train import read_events, run_paths, summarize

    try:
        paths = run_paths(run_id)
    except ValueError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    if not paths.metrics.is_file():
        typer.echo(f"error: no run {run_id!r} under {paths.root.parent}", err=True)
        raise typer.Exit(1)
    summary = summarize(run_id, read_events(paths.metrics))
    if as_json:
        typer.echo(json.dumps(asdict(summary), indent=2))
        return
    table = Table("field", "value", show_header=False)
    rows: list[tuple[str, str]] = [
        ("run", summary.run_id), ("status", summary.status),
        ("attempts", str(summary.attempts)), ("restarts", str(summary.restarts)),
        ("world sizes", " -> ".join(map(str, summary.world_sizes))),
        ("last step", str(summary.last_step)),
        ("last loss", f"{summary.last_loss:.4f}" if summary.last_loss is not None else "-"),
        ("samples/s", f"{summary.mean_samples_per_s:.0f}"
         if summary.mean_samples_per_s is not None else "-"),
    ]
    rows += [(f"eval {k}", f"{v:.4f}") for k, v in summary.eval_metrics.items() if k != "rows"]
    rows.append(("time-to-target", f"{summary.tta_s:.2f}s" if summary.tta_s is not None
                 else "not reached"))
    rows.append(("artifact", summary.artifact_ref or "-"))
    if summary.failure:
        rows.append(("failure", summary.failure))
    for field, value in rows:
        table.add_row(field, value)
    Console().print(table)


def register(app: typer.Typer) -> None:
    """Add this module's commands to the root app."""
    app.command("train")(train_cmd)
    app.add_typer(runs_app, name="runs")
