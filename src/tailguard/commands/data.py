"""CLI commands: ``tailguard data ingest|show|check``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import typer

if TYPE_CHECKING:
    from tailguard.data import DatasetIndex
    from tailguard.data.checks import CheckReport

# tailguard.data (pyarrow, fsspec; torch through its dataset) and rich are imported inside
# each command: every CLI call imports this module to build the command tree.

data_app = typer.Typer(help="Ingest and inspect datasets.", no_args_is_help=True)


@data_app.command("ingest")
def ingest_cmd(
    sources: list[str] = typer.Argument(..., help="CSV/TSV/JSONL/Parquet files, dirs, globs, URLs"),
    out: Path = typer.Option(..., "--out", "-o", help="Dataset directory to write"),
    shard_rows: int = typer.Option(65536, "--shard-rows", min=1, help="Rows per Parquet shard"),
    schema: str | None = typer.Option(
        None, "--schema", help='Inline JSON or a JSON file: {"col": "int64", "opt": "float64?"}'
    ),
    max_bad_rows: int = typer.Option(
        0, "--max-bad-rows", min=0, help="Malformed rows to skip before failing"
    ),
    check: bool = typer.Option(False, "--check", help="Run the data checks before writing"),
    rules: Path | None = typer.Option(None, "--rules", help="Rules YAML for --check"),
) -> None:
    """Convert sources into Parquet shards plus index.json (atomic; a no-op when unchanged).

    Schema columns declared {"type": "string", "pii": "hash"} are replaced by an HMAC keyed
    by $TAILGUARD_PII_KEY; "pii": "drop" removes them. With --check (or --rules) a failing
    data check leaves no dataset behind.
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from tailguard.data import DataError, ingest, load_schema_option
    from tailguard.data.checks import DataCheckFailed, load_rules

    try:
        checks = load_rules(rules) if check or rules is not None else None
        parsed = load_schema_option(schema).to_mapping() if schema is not None else None
        with Progress(
            TextColumn("ingest"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("files"),
            transient=True,
        ) as bar:
            task = bar.add_task("ingest", total=None)
            result = ingest(
                sources,
                out,
                shard_rows=shard_rows,
                schema=parsed,
                max_bad_rows=max_bad_rows,
                progress=lambda done, total: bar.update(task, completed=done, total=total),
                checks=checks,
            )
    except DataCheckFailed as exc:
        _print_check(exc.report)
        typer.echo(f"error: {exc}\nno dataset was written", err=True)
        raise typer.Exit(1) from exc
    except DataError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc
    if result.skipped:
        typer.echo(
            f"up to date: {result.out} already holds this ingest "
            f"(fingerprint {result.fingerprint[:12]}…, {result.rows} rows); nothing to do"
        )
        return
    for bad in result.bad_row_samples:
        typer.echo(f"skipped bad row: {bad}", err=True)
    if result.bad_rows > len(result.bad_row_samples):
        typer.echo(f"… {result.bad_rows - len(result.bad_row_samples)} more bad rows", err=True)
    if result.check is not None:
        _print_check(result.check)
    typer.echo(
        f"wrote {result.out}: {result.rows} rows in {result.shards} shard(s), "
        f"{result.bad_rows} bad row(s) skipped, fingerprint {result.fingerprint[:12]}…"
    )


def _print_check(report: CheckReport) -> None:
    from rich.console import Console

    from tailguard.data.checks.render import print_report

    print_report(report, Console(stderr=True))


@data_app.command("check")
def check_cmd(
    path: str = typer.Argument(..., help="Dataset directory to check"),
    against: str | None = typer.Option(
        None, "--against", help="Another dataset (eval split, reference): leakage and drift"
    ),
    rules: Path | None = typer.Option(None, "--rules", help="Rules YAML (default rules if unset)"),
    label: str | None = typer.Option(None, "--label", help="Label column for label balance"),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON"),
    html: Path | None = typer.Option(None, "--html", help="Also write the HTML report here"),
    keep: bool = typer.Option(
        True, "--keep/--no-keep", help="Keep report.json/html in DATASET/checks/"
    ),
) -> None:
    """Check a dataset: nulls, ranges, categories, duplicates, label balance, PII, drift
    between shards; with --against also leakage and drift between the two. Exit 1 when a
    rule with severity 'fail' does not hold."""
    from rich.console import Console

    from tailguard.data import DataError
    from tailguard.data.checks import load_rules, run_check
    from tailguard.data.checks.render import print_report, to_html

    try:
        report = run_check(path, load_rules(rules), against=against, label=label, keep=keep)
    except DataError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc
    if html is not None:
        html.write_text(to_html(report), encoding="utf-8")
    if as_json:
        typer.echo(report.to_json(), nl=False)
    else:
        print_report(report, Console())
    if not report.passed:
        raise typer.Exit(1)


def _summary(path: str, index: DatasetIndex) -> dict[str, object]:
    return {
        "path": path,
        "rows": index.total_rows,
        "shards": len(index.shards),
        "rows_per_shard": index.shard_rows,
        "schema": index.schema.to_mapping(),
        "fingerprint": index.fingerprint,
        "bad_rows": index.bad_rows,
        "sources": [s.get("url") for s in index.sources],
        "pii": index.pii,
        "created_at": index.created_at,
    }


@data_app.command("show")
def show_cmd(
    path: str = typer.Argument(..., help="Dataset directory (or fsspec URL)"),
    verify: bool = typer.Option(False, "--verify", help="Also check every shard's sha256"),
    as_json: bool = typer.Option(False, "--json", help="Print JSON"),
) -> None:
    """Print a dataset's index summary: rows, shards, schema, fingerprint."""
    from tailguard.data import DataError, read_index, verify_dataset

    try:
        index = verify_dataset(path) if verify else read_index(path)
    except DataError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc
    summary = _summary(path, index)
    if as_json:
        typer.echo(json.dumps(summary, indent=2))
        return
    sizes = sorted(set(index.shard_rows))
    shard_sizes = ", ".join(str(s) for s in sizes[:4]) + (" …" if len(sizes) > 4 else "")
    typer.echo(f"dataset     {path}")
    typer.echo(f"rows        {index.total_rows}")
    typer.echo(f"shards      {len(index.shards)} (rows per shard: {shard_sizes or '-'})")
    typer.echo(f"fingerprint {index.fingerprint}")
    typer.echo(f"bad rows    {index.bad_rows} skipped at ingest")
    typer.echo("schema")
    for name, spec in index.schema.to_mapping().items():
        typer.echo(f"  {name}: {spec}")
    if verify:
        typer.echo("verified    every shard matches its sha256")


def register(app: typer.Typer) -> None:
    """Add this module's commands to the root app."""
    app.add_typer(data_app, name="data")
