"""CLI commands: ``tailguard keys new`` and ``tailguard keys hash`` — API keys for configs.

A serve config may hold plaintext keys (hashed at load) or their ``sha256:<hex>`` digests;
these print the digest so that the config, and whoever reads it, never sees the key.
"""

from __future__ import annotations

import secrets
import sys

import typer

keys_app = typer.Typer(help="Make API keys and the digests a serve config holds.",
                       no_args_is_help=True)


@keys_app.command("hash")
def hash_cmd(
    key: str | None = typer.Argument(
        None, help="The key (default: read one key per line from stdin, so it stays out of "
                   "the shell history)"),
) -> None:
    """Print the sha256:<hex> digest of each key, for api_keys / admin_api_keys."""
    from tailguard.serve.gate.tenants import hash_api_key

    keys = [key] if key is not None else [line.strip() for line in sys.stdin if line.strip()]
    if not keys:
        typer.echo("error: give a key, or pipe keys in: echo \"$KEY\" | tailguard keys hash",
                   err=True)
        raise typer.Exit(2)
    for k in keys:
        typer.echo(hash_api_key(k))


@keys_app.command("new")
def new_cmd(
    prefix: str = typer.Option("tg-", help="Put before the random part (tells keys apart)"),
) -> None:
    """Make a random key: prints the key (give it to the client) and its digest (put it in
    the config)."""
    from tailguard.serve.gate.tenants import hash_api_key

    key = prefix + secrets.token_urlsafe(32)
    typer.echo(f"key:    {key}")
    typer.echo(f"digest: {hash_api_key(key)}")


def register(app: typer.Typer) -> None:
    """Add this module's commands to the root app."""
    app.add_typer(keys_app, name="keys")
