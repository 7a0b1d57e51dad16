"""The plan of a config change: what ``tailguard apply`` would do to a running server.

A pure function of two configs — the one the server runs and the one asked for — so the same
code answers ``--dry-run``, drives the live apply and runs in a unit test::

    plan = compute_plan(running, wanted)
    if plan.restart_needed:          # host, port, backend ... cannot change live
        raise RestartRequired(plan)
    print(plan.render())             # "no changes", or a diff like `kubectl diff`

Every deployment field falls in one class, and the class says how the server reconciles it:

- ``ROLL``: the replicas must be created afresh (model, artifact, options, env ...): a rolling
  restart, one replica at a time, each back before the next goes, so no request fails;
- ``SCALE``: ``replicas`` of a deployment without autoscaling: scale up, or drain the surplus;
- ``LIVE``: batching, deadlines, SLO, queue bound and autoscaling: the next request sees them;
- ``RESTART``: where replicas run (backend, Ray cluster): only a restarted server can change it.

Secrets never appear: API keys are held as ``sha256:`` digests, and the plan shows how many
keys a tenant gains or loses, not which.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ValidationError

from tailguard.serve.config import DeploymentSpec, ServeConfig
from tailguard.serve.gate.tenants import TenantSpec

__all__ = [
    "Change",
    "DeploymentPlan",
    "FieldChange",
    "Plan",
    "RestartRequired",
    "TenantPlan",
    "compute_plan",
    "describe_validation_error",
    "inherit_unset",
]


class Change(StrEnum):
    ADD = "add"
    REMOVE = "remove"
    UPDATE = "update"


class FieldClass(StrEnum):
    ROLL = "roll"
    SCALE = "scale"
    LIVE = "live"
    RESTART = "restart"


# Deployment fields by how they change on a running server (every field is in one).
_DEPLOYMENT_CLASSES: dict[str, FieldClass] = {
    **dict.fromkeys(("model", "artifact", "options", "version", "env", "replica_nice",
                     "replica_cpu_policy", "startup_timeout_s", "num_cpus", "num_gpus",
                     "resources", "placement"), FieldClass.ROLL),
    "replicas": FieldClass.SCALE,
    **dict.fromkeys(("max_batch_size", "max_wait_ms", "timeout_ms", "p99_ms",
                     "batch_slo_share", "max_queue_rows", "autoscaling"), FieldClass.LIVE),
    **dict.fromkeys(("backend", "ray_address"), FieldClass.RESTART),
}
# Server fields that only a restart can change: the socket and where replicas run.
SERVER_RESTART_FIELDS = ("host", "port", "backend", "ray_address")
_SERVER_LIVE_FIELDS = ("max_request_bytes", "graceful_shutdown_s", "admission",
                       "admin_api_keys")


@dataclass(frozen=True)
class FieldChange:
    """One field's old and new value (``path`` as in the config file, e.g. ``max_wait_ms``)."""

    path: str
    old: Any
    new: Any

    def render(self) -> str:
        return f"{self.path}: {_show(self.path, self.old)} -> {_show(self.path, self.new)}"


@dataclass(frozen=True)
class DeploymentPlan:
    """What happens to one deployment. ``roll``: its replicas restart one at a time with the
    new spec; ``scale_to``: its new replica count (None: unchanged or autoscaled)."""

    name: str
    change: Change
    fields: tuple[FieldChange, ...] = ()
    roll: bool = False
    scale_to: int | None = None
    spec: DeploymentSpec | None = None  # the new spec (None when removed)

    def render(self) -> list[str]:
        if self.change is Change.ADD:
            assert self.spec is not None
            return [f"+ deployment {self.name}  (start {self.spec.replicas} replica(s))"]
        if self.change is Change.REMOVE:
            return [f"- deployment {self.name}  (drain: queued and in-flight requests finish)"]
        how = ["rolling restart"] if self.roll else []
        if self.scale_to is not None:
            how.append(f"scale to {self.scale_to}")
        head = f"~ deployment {self.name}" + (f"  ({', '.join(how)})" if how else "")
        return [head, *(f"    {c.render()}" for c in self.fields)]


@dataclass(frozen=True)
class TenantPlan:
    """What happens to one tenant: added, removed (its keys stop working at once) or
    updated (quotas, priority, keys ...)."""

    id: str
    change: Change
    fields: tuple[FieldChange, ...] = ()

    def render(self) -> list[str]:
        if self.change is Change.ADD:
            return [f"+ tenant {self.id}"]
        if self.change is Change.REMOVE:
            return [f"- tenant {self.id}  (its keys stop working at once)"]
        return [f"~ tenant {self.id}", *(f"    {c.render()}" for c in self.fields)]


@dataclass(frozen=True)
class Plan:
    """The difference between two serve configs, in the order the server applies it."""

    deployments: tuple[DeploymentPlan, ...] = ()
    tenants: tuple[TenantPlan, ...] = ()
    server: tuple[FieldChange, ...] = ()
    restart_needed: tuple[FieldChange, ...] = field(default=())

    @property
    def empty(self) -> bool:
        return not (self.deployments or self.tenants or self.server or self.restart_needed)

    def render(self) -> str:
        """A ``kubectl diff``-like text; ``no changes`` for an empty plan."""
        if self.empty:
            return "no changes"
        lines: list[str] = []
        for change in self.restart_needed:
            lines.append(f"! {change.render()}  (needs a server restart)")
        if self.server:
            lines.append("~ server")
            lines.extend(f"    {c.render()}" for c in self.server)
        for d in self.deployments:
            lines.extend(d.render())
        for t in self.tenants:
            lines.extend(t.render())
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        def fields(changes: tuple[FieldChange, ...]) -> list[dict[str, Any]]:
            return [{"path": c.path, "old": _jsonable(c.path, c.old),
                     "new": _jsonable(c.path, c.new)} for c in changes]

        return {
            "empty": self.empty,
            "restart_needed": fields(self.restart_needed),
            "server": fields(self.server),
            "deployments": [{"name": d.name, "change": d.change.value, "roll": d.roll,
                             "scale_to": d.scale_to, "fields": fields(d.fields)}
                            for d in self.deployments],
            "tenants": [{"id": t.id, "change": t.change.value, "fields": fields(t.fields)}
                        for t in self.tenants],
            "text": self.render(),
        }


class RestartRequired(ValueError):
    """The wanted config changes a field a running server cannot change."""

    def __init__(self, plan: Plan) -> None:
        self.plan = plan
        names = ", ".join(c.path for c in plan.restart_needed)
        super().__init__(f"{names} cannot change on a running server: restart it with the new "
                         "config (nothing was changed)")


def compute_plan(old: ServeConfig, new: ServeConfig) -> Plan:
    """What it takes to turn a server running ``old`` into one running ``new``."""
    restart = _diff(old, new, SERVER_RESTART_FIELDS)
    server = _diff(old, new, _SERVER_LIVE_FIELDS)
    deployments: list[DeploymentPlan] = []
    new_names = {d.name for d in new.deployments}
    for spec in new.deployments:
        before = old.deployment(spec.name)
        if before is None:
            deployments.append(DeploymentPlan(spec.name, Change.ADD, spec=spec))
            continue
        changes = _diff(before, spec, tuple(_DEPLOYMENT_CLASSES))
        if not changes:
            continue
        classes = {c.path: _DEPLOYMENT_CLASSES[c.path] for c in changes}
        restart.extend(FieldChange(f"deployments[{spec.name}].{c.path}", c.old, c.new)
                       for c in changes if classes[c.path] is FieldClass.RESTART)
        scale = (spec.replicas if "replicas" in classes and spec.autoscaling is None
                 else None)
        deployments.append(DeploymentPlan(
            spec.name, Change.UPDATE, tuple(changes),
            roll=FieldClass.ROLL in classes.values(), scale_to=scale, spec=spec))
    deployments.extend(DeploymentPlan(d.name, Change.REMOVE)
                       for d in old.deployments if d.name not in new_names)
    return Plan(tuple(deployments), _tenant_plans(old.tenants, new.tenants), tuple(server),
                tuple(restart))


def inherit_unset(old: ServeConfig, new: ServeConfig) -> ServeConfig:
    """``new`` with the restart-only server fields its file leaves out taken from ``old``: a
    file that does not say ``port`` keeps the server's, rather than asking for port 8000."""
    keep = {f: getattr(old, f) for f in SERVER_RESTART_FIELDS if f not in new.model_fields_set}
    return new.model_copy(update=keep) if keep else new


def describe_validation_error(exc: ValidationError, data: Any = None) -> str:
    """One line per error, each naming its field as the file spells it (a deployment or
    tenant by its name where the file gives one): ``deployments[echo].max_wait_ms: ...``."""
    lines = []
    for error in exc.errors():
        lines.append(f"{_field_path(error['loc'], data)}: {error['msg']}")
    return "\n".join(lines)


# ---------------------------------------------------------------- internals
def _tenant_plans(old: list[TenantSpec], new: list[TenantSpec]) -> tuple[TenantPlan, ...]:
    before = {t.id: t for t in old}
    after = {t.id: t for t in new}
    plans = [TenantPlan(tid, Change.ADD) for tid in after if tid not in before]
    plans.extend(TenantPlan(tid, Change.REMOVE) for tid in before if tid not in after)
    for tid, spec in after.items():
        if tid in before:
            changes = _diff(before[tid], spec, tuple(TenantSpec.model_fields))
            if changes:
                plans.append(TenantPlan(tid, Change.UPDATE, tuple(changes)))
    return tuple(plans)


def _diff(old: BaseModel, new: BaseModel, names: tuple[str, ...]) -> list[FieldChange]:
    changes = []
    for name in names:
        a, b = getattr(old, name), getattr(new, name)
        if _plain(a) != _plain(b):
            changes.append(FieldChange(name, a, b))
    return changes


def _plain(value: Any) -> Any:
    """A comparable form: models as their dump, so equal settings compare equal."""
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    return value


def _jsonable(path: str, value: Any) -> Any:
    if path.endswith(("api_keys",)):
        return f"{len(value)} key(s)"
    return _plain(value)


def _show(path: str, value: Any) -> str:
    if path.endswith("api_keys"):  # digests only, and not even those: a count
        return f"{len(value)} key(s)"
    plain = _plain(value)
    return "null" if plain is None else str(plain)


def _field_path(loc: tuple[int | str, ...], data: Any) -> str:
    out = ""
    node = data
    for key in loc:
        if isinstance(key, int):
            item = node[key] if isinstance(node, list) and 0 <= key < len(node) else None
            label = (item.get("name") or item.get("id")) if isinstance(item, dict) else None
            out += f"[{label or key}]"
            node = item
        else:
            out += ("." if out else "") + str(key)
            node = node.get(key) if isinstance(node, dict) else None
    return out or "(top level)"
