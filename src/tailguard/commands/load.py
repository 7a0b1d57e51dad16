"""CLI command: ``tailguard load`` — closed- or open-loop load against a V2 or OpenAI route."""

from __future__ import annotations

import sys
from contextlib import nullcontext
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.live import Live
from rich.text import Text

from tailguard.load import LoadProgress, LoadSpec, format_text, run_load_recording
from tailguard.load.client import LoadTargetError, check_reachable
from tailguard.load.payloads import PayloadError, read_payloads_file
from tailguard.load.tenants import TenantFileError, read_tenants
from tailguard.sched import request_short_slice


def _progress_line(p: LoadProgress) -> Text:
    elapsed = max(0.0, p.elapsed_s)
    done = min(1.0, elapsed / p.total_s) if p.total_s > 0 else 1.0
    return Text(
        f"{elapsed:6.1f}/{p.total_s:.1f} s  {done:4.0%}  sent {p.sent}  "
        f"done {p.completed}  ok {p.ok}  errors {p.completed - p.ok}  in flight {p.in_flight}"
    )


def load(
    url: Annotated[str, typer.Argument(help="Target, e.g. http://127.0.0.1:8000")] = (
        "http://127.0.0.1:8000"
    ),
    *,
    model: Annotated[str, typer.Option("--model", "-m", help="Model name, e.g. echo")],
    protocol: Annotated[str, typer.Option(help="v2 (/v2/models/M/infer) or openai "
                                               "(/v1/embeddings)")] = "v2",
    concurrency: Annotated[int | None, typer.Option(
        "--concurrency", "-c", help="Closed loop: C workers sending back-to-back")] = None,
    rate: Annotated[float | None, typer.Option(
        "--rate", "-r", help="Open loop: offered requests per second")] = None,
    arrival: Annotated[str, typer.Option(
        help="Open loop arrivals: poisson or constant (with --rate), or a TRACE: "
             "gamma:rate=200,cv=3  mmpp:low=50,high=500,switch=0.5  "
             "diurnal:mean=200,amp=0.8,period=60  step:rates=100/400,every=10  "
             "spike:base=100,peak=800,at=5,width=2 (a missing rate comes from --rate)")] = (
        "poisson"
    ),
    trace: Annotated[str | None, typer.Option(
        help="Replay arrivals from a CSV: csv:FILE[,format=timestamps|counts|azure]"
             "[,scale=X] (timestamps in s, or per-minute counts as in the Azure Functions "
             "trace)")] = None,
    tenants: Annotated[Path | None, typer.Option(
        help="YAML/JSON tenant mix: a list of {name, api_key, weight}, or "
             "{zipf: S, tenants: [...]}; each request is sent with its tenant's key")] = None,
    slo_ms: Annotated[float | None, typer.Option(
        "--slo-ms", help="Latency objective: report goodput and SLO attainment")] = None,
    report: Annotated[Path | None, typer.Option(
        help="Write a self-contained HTML report (plots over time, server replicas and "
             "queue depth from /metrics)")] = None,
    duration: Annotated[float, typer.Option("--duration", "-d", help="Measured seconds")] = 10.0,
    warmup: Annotated[float, typer.Option(help="Seconds of load before measuring")] = 0.0,
    timeout: Annotated[float, typer.Option(help="Seconds before a request times out")] = 30.0,
    inputs: Annotated[list[str] | None, typer.Option(
        "--input", help="V2: NAME[:DATATYPE[:SHAPE]]=JSON (repeat per tensor); "
                        "openai: TEXT")] = None,
    payloads: Annotated[Path | None, typer.Option(
        help="JSONL file, one request body per line (sent round-robin)")] = None,
    api_key: Annotated[str | None, typer.Option(
        envvar="TAILGUARD_API_KEY", help="Sent as 'Authorization: Bearer KEY'")] = None,
    json_output: Annotated[bool, typer.Option("--json", help="Print one JSON object")] = False,
    connections: Annotated[int, typer.Option(help="Most keep-alive connections (open loop)")] = (
        256
    ),
    seed: Annotated[int, typer.Option(help="Seed of arrivals and generated payloads")] = 0,
    retry_after: Annotated[bool, typer.Option(
        "--retry-after", help="Closed loop: after a 429/503, wait its Retry-After "
                              "(retry-after-ms first) before the next request, as real "
                              "clients do")] = False,
) -> None:
    """Send load; report P50/P90/P99/P99.9 latency, throughput and errors by kind.

    Closed loop (--concurrency C) keeps C requests in flight.

    Open loop (--rate R, --arrival TRACE or --trace csv:FILE) measures latency from each
    intended send time, and warns when the generator itself fell behind.

    --tenants shares requests among tenants (weights or Zipf), each with its key, and
    reports per tenant; --slo-ms adds goodput and SLO attainment; --report writes one
    self-contained HTML file with plots over time.
    """
    if concurrency is None and rate is None and trace is None and arrival in (
            "poisson", "constant"):
        typer.echo("error: give --rate R (open loop, R requests/s) or --concurrency C "
                   "(closed loop, C in flight), or a trace with --arrival/--trace", err=True)
        raise typer.Exit(2)
    if concurrency is not None and (rate is not None or trace is not None
                                    or arrival not in ("poisson", "constant")):
        typer.echo("error: --concurrency is the closed loop; --rate, --arrival and --trace "
                   "the open loop: give one kind", err=True)
        raise typer.Exit(2)
    try:
        bodies = read_payloads_file(payloads) if payloads is not None else ()
        spec = LoadSpec(
            url=url, model=model, protocol=protocol, concurrency=concurrency, rate_rps=rate,
            arrival=_arrival(arrival, trace), duration_s=duration, warmup_s=warmup,
            timeout_s=timeout, bodies=bodies, inputs=tuple(inputs or ()), api_key=api_key,
            max_connections=connections, seed=seed, honour_retry_after=retry_after,
            tenants=read_tenants(tenants) if tenants is not None else None, slo_ms=slo_ms,
            scrape_metrics=report is not None,
        )
    except (ValueError, PayloadError, TenantFileError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None

    try:  # a server that is not up fails now, not after --duration of connect errors
        check_reachable(url)
    except LoadTargetError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None

    console = Console(stderr=True)
    live = Live(console=console, auto_refresh=False, transient=True) if console.is_terminal \
        else None

    def progress(p: LoadProgress) -> None:
        if live is not None:
            live.update(_progress_line(p), refresh=True)

    # Latency is measured from each request's intended send time: a generator that waits for
    # the CPU behind a busy server on the same machine shows up in its numbers.
    request_short_slice()
    try:
        with live if live is not None else nullcontext():
            result, recording = run_load_recording(spec, progress if live is not None else None)
    except (PayloadError, LoadTargetError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    except ValueError as exc:  # e.g. a trace file that cannot be read
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None

    if report is not None:
        from tailguard.load.html import write_report
        from tailguard.load.timeline import timeline

        write_report(report, result, timeline(recording, 1.0, spec.slo_ms),
                     title=f"tailguard load: {model} at {url}")
        typer.echo(f"report: {report}", err=True)

    if json_output:
        for warning in result.warnings:
            typer.echo(f"WARNING: {warning}", err=True)
        sys.stdout.write(result.to_json() + "\n")
    else:
        typer.echo(format_text(result))
    if result.ok == 0:
        raise typer.Exit(1)


def _arrival(arrival: str, trace: str | None) -> str:
    """``--trace`` is a replay: ``csv:FILE`` (a bare FILE is taken as CSV)."""
    if trace is None:
        return arrival
    if arrival != "poisson":
        raise ValueError("give --arrival or --trace, not both")
    return trace if ":" in trace.split(",")[0] else f"csv:{trace}"


def register(app: typer.Typer) -> None:
    """Add this module's commands to the root app."""
    app.command("load")(load)
