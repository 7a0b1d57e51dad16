"""CLI command: ``tailguard monitor`` — a local Prometheus watching a gateway with SLO alerts.

It starts Debian's Prometheus server on 127.0.0.1 (a free port unless ``--port``), scraping the
gateway's ``/metrics`` and evaluating the rules ``tailguard alerts render`` writes, prints its
URL, and runs until Ctrl-C or SIGTERM, then stops it. With ``--alertmanager-webhook URL`` an
Alertmanager receives the alerts and posts them to URL. See :mod:`tailguard.observe.prometheus`.
"""

from __future__ import annotations

import signal
from pathlib import Path
from types import FrameType
from typing import Annotated

import typer

Opt = typer.Option


def register(app: typer.Typer) -> None:
    """Add this module's commands to the root app."""
    app.command("monitor")(monitor)


def monitor(
    config: Annotated[Path, Opt("--config", "-c", help="serve config (YAML): the SLOs")],
    gateway: Annotated[str, Opt(help="gateway URL to scrape")] = "http://127.0.0.1:8000",
    api_key: Annotated[str | None, Opt(
        "--api-key", envvar="TAILGUARD_API_KEY",
        help="the gateway's admin key (a tenant key sees only its own series)")] = None,
    data_dir: Annotated[Path | None, Opt(
        help="Prometheus data and generated config (default $TAILGUARD_HOME/monitor)")] = None,
    port: Annotated[int, Opt(help="Prometheus port on 127.0.0.1 (0: a free one)")] = 0,
    scrape_interval_s: Annotated[float, Opt(help="seconds between scrapes")] = 5.0,
    eval_interval_s: Annotated[float, Opt(help="seconds between rule evaluations")] = 5.0,
    window_scale: Annotated[float, Opt(help="scale the alert windows (tests, demos)")] = 1.0,
    alertmanager_webhook: Annotated[str | None, Opt(
        help="also run Alertmanager, posting alerts (and resolutions) to this URL")] = None,
    group_wait_s: Annotated[float, Opt(help="Alertmanager: wait before a group's first "
                                            "notice")] = 30.0,
    group_interval_s: Annotated[float, Opt(help="Alertmanager: between notices of a "
                                                "group")] = 300.0,
) -> None:
    """Run Prometheus on 127.0.0.1 against a gateway, with the SLO burn-rate alerts loaded."""
    from tailguard.artifacts.registry import tailguard_home
    from tailguard.observe.prometheus import MonitorSpec, PrometheusServer
    from tailguard.observe.slo_rules import render_rules
    from tailguard.serve.config import load_config

    try:
        rules = render_rules(load_config(config), window_scale)
        spec = MonitorSpec(gateway_url=gateway, data_dir=data_dir or tailguard_home() / "monitor",
                           api_key=api_key, scrape_interval_s=scrape_interval_s,
                           evaluation_interval_s=eval_interval_s, port=port,
                           alertmanager_webhook=alertmanager_webhook,
                           group_wait_s=group_wait_s, group_interval_s=group_interval_s)
    except ValueError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None

    def _terminate(_signum: int, _frame: FrameType | None) -> None:
        raise KeyboardInterrupt  # one way out for Ctrl-C and SIGTERM: the finally below

    signal.signal(signal.SIGTERM, _terminate)
    server = PrometheusServer(spec, rules)
    try:
        server.start()
        typer.echo(f"prometheus {server.url} (pid {server.pid}) scraping {gateway}/metrics; "
                   f"alerts: {server.url}/alerts; data: {spec.data_dir}")
        if server.alertmanager is not None:
            typer.echo(f"alertmanager {server.alertmanager.url} posting to "
                       f"{alertmanager_webhook}")
        code = server.wait()
        typer.echo(f"a server exited with {code}:\n{server.log_tail()}", err=True)
        raise typer.Exit(1)
    except (FileNotFoundError, RuntimeError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
