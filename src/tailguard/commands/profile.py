"""CLI command: ``tailguard profile`` — latency per batch size, throughput, memory, in-process."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

Opt = typer.Option


def _sizes(text: str | None) -> tuple[int, ...] | None:
    if not text:
        return None
    try:
        return tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise typer.BadParameter(f"--batch-sizes {text!r}: give integers like 1,2,4,8") from None


def profile(
    deployment: Annotated[str, typer.Argument(help="Deployment name in the serve config")],
    *,
    config: Annotated[Path | None, Opt(help="serve.yaml (default: the built-in deployments)")
                      ] = None,
    batch_sizes: Annotated[str | None, Opt(help="e.g. 1,2,4,8 (default: powers of two up to "
                                                "the deployment's max_batch_size)")] = None,
    seconds: Annotated[float, Opt(help="Seconds of timing per batch size")] = 1.0,
    seed: Annotated[int, Opt(help="Seed of the generated inputs")] = 0,
    store: Annotated[bool, Opt(help="Save under $TAILGUARD_HOME/profiles (and in the "
                                    "artifact manifest)")] = True,
    json_output: Annotated[bool, Opt("--json", help="Print one JSON object")] = False,
) -> None:
    """Profile a deployment's model in-process: latency per batch size, throughput, memory.

    Builds the model here (no server), times predict() per batch size (P50/P99), and reports
    the max rows/s of one replica and its memory; stores the profile for plan and autoscaler.
    """
    from tailguard.ops.profile import profile_deployment, store_profile
    from tailguard.serve.config import load_config

    sizes = _sizes(batch_sizes)
    try:
        spec = load_config(config).deployment(deployment)
        if spec is None:
            raise ValueError(f"no deployment {deployment!r} in "
                             f"{config or 'the built-in config'}")
        result = profile_deployment(spec, sizes, seconds, seed)
        stored = store_profile(result, spec) if store else []
    except (ValueError, OSError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    if json_output:
        sys.stdout.write(json.dumps({**result.to_dict(), "stored": stored}) + "\n")
        return
    typer.echo(f"{result.deployment} ({result.model}): setup {result.setup_s:.2f} s, "
               f"memory +{result.memory_mb:.1f} MiB (process RSS {result.process_rss_mb:.1f} MiB)")
    typer.echo(f"{'batch':>6}{'reps':>7}{'p50 ms':>10}{'p99 ms':>10}{'mean ms':>10}{'rows/s':>10}")
    for t in result.timings:
        mark = "  <- best" if t.batch_size == result.best_batch_size else ""
        typer.echo(f"{t.batch_size:>6}{t.repetitions:>7}{t.p50_ms:>10.2f}{t.p99_ms:>10.2f}"
                   f"{t.mean_ms:>10.2f}{t.rows_per_s:>10.1f}{mark}")
    typer.echo(f"max throughput per replica: {result.max_rows_per_s:.1f} rows/s "
               f"at batch {result.best_batch_size}")
    if result.cpu_share is not None:
        # A CPU-bound single-threaded model with a core to itself shows about 1.0; less
        # means other load on the machine slowed the measurement down.
        typer.echo(f"CPU seconds per wall second while timing: {result.cpu_share:.2f}")
    for where in stored:
        typer.echo(f"stored: {where}")


def register(app: typer.Typer) -> None:
    """Add this module's commands to the root app."""
    app.command("profile")(profile)
