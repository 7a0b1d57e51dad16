"""CLI command: ``tailguard apply CONFIG --server URL --admin-key KEY [--dry-run]``.

The file is the desired state. It is validated here first (an invalid file never reaches the
server; the error names the field), sent with its API keys already hashed (plaintext keys never
leave this machine), and the server computes the plan and reconciles it live. ``--dry-run``
prints the plan only, like ``kubectl diff``. Applying the same file twice prints ``no changes``.
Exit status: 0 applied (or nothing to do), 2 invalid file or a change needing a restart,
1 the server could not be reached or refused.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import typer

DEFAULT_URL = "http://127.0.0.1:8000"
# An apply answers once rolls and drains are done: a rolling restart may take minutes.
APPLY_TIMEOUT_S = 900.0


def register(app: typer.Typer) -> None:
    """Add this module's commands to the root app."""
    app.command("apply")(apply_cmd)


def apply_cmd(
    config: Path = typer.Argument(..., help="serve YAML: the desired state"),
    server: str = typer.Option(DEFAULT_URL, "--server", help="the running server's URL"),
    admin_key: str | None = typer.Option(
        None, "--admin-key", help="an admin API key (default $TAILGUARD_ADMIN_KEY)"),
    dry_run: bool = typer.Option(False, "--dry-run", help="print the plan, change nothing"),
    as_json: bool = typer.Option(False, "--json", help="print the server's answer as JSON"),
) -> None:
    """Make a running server match CONFIG: deployments, replicas, batching, SLOs, tenants."""
    from tailguard.serve.live_apply import ConfigInvalid, read_config_file

    try:
        _, wanted = read_config_file(config)
    except ConfigInvalid as exc:
        typer.echo(f"error: {config}: invalid, nothing changed:\n{exc}", err=True)
        raise typer.Exit(2) from None
    # Only what the file sets: the server keeps its own host and port when the file is silent.
    body = {"config": wanted.model_dump(mode="json", exclude_unset=True), "dry_run": dry_run}
    key = admin_key or os.environ.get("TAILGUARD_ADMIN_KEY")
    status, answer = post_config(server, body, key)
    if as_json:
        typer.echo(json.dumps(answer, indent=2, sort_keys=True))
    if status == 200:
        if not as_json:
            typer.echo(answer["plan"]["text"])
            if answer.get("applied"):
                typer.echo("applied")
        return
    if not as_json:
        typer.echo(f"error: {answer.get('error', answer)}", err=True)
    raise typer.Exit(2 if status in (400, 409) else 1)


def post_config(url: str, body: dict[str, Any], api_key: str | None,
                timeout_s: float = APPLY_TIMEOUT_S) -> tuple[int, Any]:
    """``POST {url}/v1/config``: (HTTP status, parsed answer); status 0 when unreachable."""
    request = urllib.request.Request(
        url.rstrip("/") + "/v1/config", data=json.dumps(body).encode(), method="POST",
        headers={"Content-Type": "application/json"})
    if api_key:
        request.add_header("Authorization", f"Bearer {api_key}")
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        raw = exc.read()
        try:
            return exc.code, json.loads(raw)
        except ValueError:
            return exc.code, {"error": f"HTTP {exc.code}: {raw[:200].decode(errors='replace')}"}
    except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
        return 0, {"error": f"cannot reach {url}: {getattr(exc, 'reason', exc)}"}
