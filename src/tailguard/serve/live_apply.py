"""Applying a config to a running gateway: the mechanism behind ``tailguard apply`` and SIGHUP.

The plan comes from the pure :func:`~tailguard.serve.reconcile.compute_plan`; this module only
carries it out, in an order that keeps every request answered:

1. everything that can fail is checked first (the file, fields a restart must change, every
   new or changed model's class and signature, the tenants' keys) — a failure changes nothing;
2. added deployments start and join the routes (their requests queue until a replica is up);
3. tenants, admin keys and admission settings swap at once: a removed tenant's next request
   is a 401;
4. changed deployments take their new settings; one whose replicas must change rolls them,
   one at a time, each back before the next goes;
5. removed deployments leave the routes (new requests 404), then drain: queued and in-flight
   requests finish before their replicas stop.

Applies run one at a time; the answer comes once the server has reached the new state.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml
from pydantic import ValidationError

from tailguard.serve.config import ServeConfig
from tailguard.serve.gate.tenants import TenantDirectory
from tailguard.serve.loader import ModelSignature, instantiate, signature
from tailguard.serve.reconcile import (
    Change,
    Plan,
    RestartRequired,
    compute_plan,
    describe_validation_error,
    inherit_unset,
)

if TYPE_CHECKING:
    from tailguard.serve.app import Gateway

__all__ = ["ConfigApplier", "ConfigInvalid", "parse_config", "read_config_file"]

log = logging.getLogger("tailguard.serve")


class ConfigInvalid(ValueError):
    """A config that cannot be served; the message names the field(s)."""


def parse_config(data: Any) -> ServeConfig:
    """Validate a parsed YAML/JSON mapping; :class:`ConfigInvalid` names every bad field."""
    if not isinstance(data, dict):
        raise ConfigInvalid("a serve config is a mapping at the top level")
    try:
        return ServeConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigInvalid(describe_validation_error(exc, data)) from None


def read_config_file(path: Path) -> tuple[dict[str, Any], ServeConfig]:
    """The raw mapping of a YAML serve config and its validated form."""
    try:
        data = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigInvalid(f"cannot read serve config {path}: {exc}") from exc
    return data, parse_config(data)


class ConfigApplier:
    """Reconciles a :class:`~tailguard.serve.app.Gateway` to a wanted config.

    ``overrides`` are the command line's (``--host``, ``--port``): a reload from
    ``config_path`` keeps them, as the server was started with them.
    """

    def __init__(self, gateway: Gateway, config_path: Path | None = None,
                 overrides: Mapping[str, Any] | None = None) -> None:
        self._gateway = gateway
        self.config_path = config_path
        self._overrides = dict(overrides or {})
        self._lock = asyncio.Lock()

    async def apply(self, wanted: ServeConfig, *, dry_run: bool = False) -> Plan:
        """Reconcile to ``wanted`` (or, ``dry_run``, only say how); returns the plan.
        Raises :class:`RestartRequired` or :class:`ConfigInvalid` having changed nothing."""
        async with self._lock:
            gateway = self._gateway
            wanted = inherit_unset(gateway.config, wanted)
            plan = compute_plan(gateway.config, wanted)
            if plan.restart_needed:
                raise RestartRequired(plan)
            if dry_run or plan.empty:
                return plan
            signatures = await asyncio.to_thread(self._check, plan, wanted)
            await self._carry_out(plan, wanted, signatures)
            log.info("config applied:\n%s", plan.render())
            return plan

    async def reload(self) -> Plan | None:
        """Re-read ``config_path`` and apply it (SIGHUP); a bad file is logged, not served."""
        if self.config_path is None:
            log.warning("SIGHUP: the server was started without --config; nothing to reload")
            return None
        try:
            _, wanted = await asyncio.to_thread(read_config_file, self.config_path)
            if self._overrides:
                wanted = wanted.model_copy(update=self._overrides)
            return await self.apply(wanted)
        except ValueError as exc:  # ConfigInvalid, RestartRequired: the server is unchanged
            log.error("SIGHUP: %s not applied, nothing changed: %s", self.config_path, exc)
            return None

    # ------------------------------------------------------------------ internals
    @staticmethod
    def _check(plan: Plan, wanted: ServeConfig) -> dict[str, ModelSignature]:
        """Everything that could fail half-way, done before anything changes (off the event
        loop: importing a model's module may take a while)."""
        try:
            TenantDirectory(wanted.tenants)
        except ValueError as exc:
            raise ConfigInvalid(f"tenants: {exc}") from None
        signatures = {}
        for d in plan.deployments:
            if d.spec is not None and (d.change is Change.ADD or d.roll):
                try:
                    signatures[d.name] = signature(instantiate(d.spec))
                except Exception as exc:  # a bad class path, artifact or option
                    raise ConfigInvalid(f"deployments[{d.name}]: cannot load its model: "
                                        f"{type(exc).__name__}: {exc}") from None
        return signatures

    async def _carry_out(self, plan: Plan, wanted: ServeConfig,
                         signatures: dict[str, ModelSignature]) -> None:
        gateway = self._gateway
        gateway.config = wanted
        scaler = gateway.autoscaler
        for d in plan.deployments:
            if d.change is Change.ADD and d.spec is not None:
                deployment = gateway.new_deployment(d.spec, signatures[d.name])
                await deployment.start()
                gateway.deployments[d.name] = deployment
                if d.spec.autoscaling is not None:
                    scaler.add(deployment)
        gateway.gate.reconfigure(wanted)
        waits: list[Awaitable[object]] = []
        for d in plan.deployments:
            if d.change is not Change.UPDATE or d.spec is None:
                continue
            deployment = gateway.deployments[d.name]
            rescaled = any(c.path == "autoscaling" for c in d.fields)
            if rescaled:
                scaler.remove(d.name)
            deployment.retune(d.spec)
            if d.scale_to is not None:
                deployment.scale_to(d.scale_to)
            if rescaled and d.spec.autoscaling is not None:
                scaler.add(deployment)
            if d.roll:
                waits.append(deployment.roll(d.spec, signatures[d.name]))
        for d in plan.deployments:
            if d.change is Change.REMOVE:
                gone = gateway.deployments.pop(d.name)
                scaler.remove(d.name)
                waits.append(gone.stop(wanted.graceful_shutdown_s))
        scaler.start()  # a no-op when it runs, or has nothing to scale
        await asyncio.gather(*waits)


def sighup_handler(applier: ConfigApplier) -> Callable[[], None]:
    """A signal handler that reloads in a task (kept referenced until it ends)."""
    tasks: set[asyncio.Task[Plan | None]] = set()

    def on_sighup() -> None:
        log.info("SIGHUP: reloading %s", applier.config_path)
        task = asyncio.get_running_loop().create_task(applier.reload())
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    return on_sighup
