"""The ``tailguard`` command line. Thin: each command calls one module's entry point."""

from __future__ import annotations

import typer

from tailguard.commands import (
    chaos,
    cost,
    data,
    load,
    models,
    plan,
    profile,
    serve,
    sim,
    status,
    train,
)

app = typer.Typer(
    name="tailguard",
    help="Train and serve ML models under P99 latency and cost objectives.",
    no_args_is_help=True,
    add_completion=False,
)

for _module in (serve, models, load, data, train, sim, status, chaos, profile, plan, cost):
    _module.register(app)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
