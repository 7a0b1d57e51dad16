"""Cost reports from usage metering, allocated the OpenCost way.

Per deployment, over a window of ``window_s`` seconds:

- **reserved** = replicas x ``window_s`` (what was paid for, from ``GET /v1/deployments``);
- **used** = the sum of the tenants' ``replica_seconds`` (``GET /v1/usage``: busy replica
  time, split between tenants by their rows in each batch);
- **billed** = max(reserved, used); each tenant pays for what it used, and
  **idle** = billed - used is a row of its own (tenant ``(idle)``), never spread silently;
- cost = replica-seconds x the replica's price (an instance type of the price table, its
  hourly price split over the replicas it holds).

The usage counters are totals since the server started. For a window that starts later,
each ``tailguard cost`` run saves what it fetched under ``$TAILGUARD_HOME/usage/`` and a later
run subtracts the last snapshot taken at or before the window start (:func:`usage_since`)::

    report = allocate(usage_rows, reserved_s={"minilm": 7200.0}, window=(t0, t1),
                      instance=load_prices().get())
    print(format_report(report, "table"))
"""

from __future__ import annotations

import csv
import io
import json
import re
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from tailguard.ops.prices import InstanceType

__all__ = ["CostLine", "CostReport", "DeploymentCost", "UsageRow", "allocate", "fetch_json",
           "format_report", "parse_since", "reserved_replica_seconds", "usage_since"]

IDLE = "(idle)"
_COUNTS = ("requests", "ok", "errors", "rows", "throttled", "shed")
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d|w)\s*$")
_UNIT_S = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}


@dataclass(frozen=True)
class UsageRow:
    """One (tenant, deployment) row of ``GET /v1/usage``."""

    tenant: str
    deployment: str
    requests: int = 0
    ok: int = 0
    errors: int = 0
    rows: int = 0
    replica_seconds: float = 0.0
    throttled: int = 0
    shed: int = 0
    audio_seconds: float = 0.0  # speech deployments: audio returned

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> UsageRow:
        counts = {k: int(d.get(k, 0)) for k in _COUNTS}
        return cls(str(d["tenant"]), str(d["deployment"]),
                   replica_seconds=float(d.get("replica_seconds", 0.0)),
                   audio_seconds=float(d.get("audio_seconds", 0.0)), **counts)

    def minus(self, earlier: UsageRow) -> UsageRow:
        counts = {k: max(getattr(self, k) - getattr(earlier, k), 0) for k in _COUNTS}
        rs = max(self.replica_seconds - earlier.replica_seconds, 0.0)
        audio = max(self.audio_seconds - earlier.audio_seconds, 0.0)
        return UsageRow(self.tenant, self.deployment, replica_seconds=rs, audio_seconds=audio,
                        **counts)


@dataclass(frozen=True)
class CostLine:
    """What one tenant used of one deployment, or (tenant ``(idle)``) what nobody used."""

    tenant: str
    deployment: str
    requests: int
    rows: int
    replica_seconds: float
    cost_usd: float


@dataclass(frozen=True)
class DeploymentCost:
    deployment: str
    reserved_replica_seconds: float
    used_replica_seconds: float
    billed_replica_seconds: float
    idle_replica_seconds: float
    cost_usd: float
    audio_seconds: float = 0.0
    usd_per_audio_minute: float | None = None  # speech: billed cost over the audio returned


@dataclass(frozen=True)
class CostReport:
    window_start: float  # epoch seconds
    window_end: float
    instance: str
    usd_per_replica_hour: float
    lines: tuple[CostLine, ...]
    deployments: tuple[DeploymentCost, ...]
    total_usd: float
    warnings: tuple[str, ...] = field(default_factory=tuple)

    @property
    def window_s(self) -> float:
        return self.window_end - self.window_start

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["window_s"] = self.window_s
        data["warnings"] = list(self.warnings)
        return data


def parse_since(text: str, now: float) -> float:
    """``30m``, ``2h``, ``1d`` (ago) or an ISO-8601 time -> epoch seconds."""
    m = _DURATION.match(text)
    if m:
        return now - float(m.group(1)) * _UNIT_S[m.group(2)]
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(f"--since {text!r}: give a duration (90s, 30m, 2h, 1d, 1w) or an "
                         "ISO time (2025-01-31T09:00:00+00:00)") from None
    return when.timestamp()


def reserved_replica_seconds(deployments: Sequence[Mapping[str, Any]],
                             window_s: float) -> dict[str, float]:
    """Replicas paid for (ready + starting + draining) x ``window_s``, per deployment.

    The count is the one at the end of the window: a deployment that autoscaled during it is
    approximated by its present size.
    """
    out: dict[str, float] = {}
    for d in deployments:
        counts = d.get("replica_counts") or {}
        paid = sum(int(counts.get(k, 0)) for k in ("ready", "starting", "draining"))
        out[str(d["name"])] = paid * window_s
    return out


def allocate(usage: Sequence[UsageRow], reserved_s: Mapping[str, float],
             window: tuple[float, float], instance: InstanceType,
             warnings: Sequence[str] = ()) -> CostReport:
    """Charge each tenant its replica-seconds; bill each deployment max(reserved, used)."""
    price_s = instance.replica_hourly_usd / 3600.0
    names = sorted(set(reserved_s) | {u.deployment for u in usage})
    lines: list[CostLine] = []
    deployments: list[DeploymentCost] = []
    for name in names:
        rows = sorted((u for u in usage if u.deployment == name), key=lambda u: u.tenant)
        used = sum(u.replica_seconds for u in rows)
        reserved = float(reserved_s.get(name, 0.0))
        billed = max(reserved, used)
        idle = billed - used
        lines.extend(CostLine(u.tenant, name, u.requests, u.rows, u.replica_seconds,
                              u.replica_seconds * price_s) for u in rows)
        lines.append(CostLine(IDLE, name, 0, 0, idle, idle * price_s))
        audio_s = sum(u.audio_seconds for u in rows)
        per_minute = billed * price_s / (audio_s / 60) if audio_s > 0 else None
        deployments.append(DeploymentCost(name, reserved, used, billed, idle, billed * price_s,
                                          audio_s, per_minute))
    return CostReport(
        window_start=window[0], window_end=window[1], instance=instance.name,
        usd_per_replica_hour=instance.replica_hourly_usd, lines=tuple(lines),
        deployments=tuple(deployments), total_usd=sum(d.cost_usd for d in deployments),
        warnings=tuple(warnings),
    )


def fetch_json(url: str, path: str, api_key: str | None, timeout_s: float = 10.0) -> Any:
    """GET ``url + path`` (with the API key, if any) and decode its JSON body."""
    req = urllib.request.Request(url.rstrip("/") + path)
    if api_key:
        req.add_header("Authorization", f"Bearer {api_key}")
    try:
        with urllib.request.urlopen(req, timeout=timeout_s) as resp:
            return json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        if exc.code not in (401, 403):
            raise
        try:
            said = json.loads(exc.read()).get("error", "")
        except (ValueError, AttributeError):
            said = ""
        what = "needs an admin API key" if exc.code == 401 else "refused this key (not admin)"
        raise ValueError(f"{url}{path} {what}{f' ({said})' if said else ''}: pass one with "
                         "--api-key KEY or the TAILGUARD_API_KEY environment variable") from None


def usage_since(rows: Sequence[UsageRow], server_since: float, start: float, now: float,
                snapshots: Path | None) -> tuple[list[UsageRow], float, list[str]]:
    """Usage over ``[start, now]`` from cumulative counters: subtract the latest snapshot of
    the same server saved at or before ``start`` in ``snapshots`` (JSONL), then append this one.

    Returns the rows, the window's real start, and warnings when it differs from ``start``.
    """
    warnings: list[str] = []
    totals = list(rows)
    window_start = max(start, server_since)
    out = totals
    if start < server_since:
        warnings.append(f"the server started at {_iso(server_since)}, after --since: the "
                        "window starts there")
    elif start > server_since:
        base = _latest_snapshot(snapshots, server_since, start)
        if base is None:
            window_start = server_since
            warnings.append(f"no usage snapshot at or before {_iso(start)} (each `tailguard "
                            "cost` run saves one): the window starts at server start "
                            f"{_iso(server_since)}")
        else:
            window_start, earlier = base
            prev = {(u.tenant, u.deployment): u for u in earlier}
            out = [u.minus(prev[u.tenant, u.deployment]) if (u.tenant, u.deployment) in prev
                   else u for u in totals]
    if snapshots is not None:
        snapshots.parent.mkdir(parents=True, exist_ok=True)
        record = {"at": now, "server_since": server_since, "usage": [asdict(u) for u in totals]}
        with snapshots.open("a") as f:
            f.write(json.dumps(record) + "\n")
    return out, window_start, warnings


def _latest_snapshot(path: Path | None, server_since: float,
                     start: float) -> tuple[float, list[UsageRow]] | None:
    if path is None or not path.exists():
        return None
    best: tuple[float, list[UsageRow]] | None = None
    for line in path.read_text().splitlines():
        try:
            rec = json.loads(line)
            at, since = float(rec["at"]), float(rec["server_since"])
            if since != server_since or at > start or (best is not None and at <= best[0]):
                continue
            best = (at, [UsageRow.from_dict(u) for u in rec["usage"]])
        except (ValueError, KeyError, TypeError):
            continue  # a torn or foreign line: skip it
    return best


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch).astimezone().isoformat(timespec="seconds")


def format_report(report: CostReport, fmt: str = "table") -> str:
    """``table`` (for people), ``csv`` (one line per tenant/idle row) or ``json``."""
    if fmt == "json":
        return json.dumps(report.to_dict(), indent=2)
    if fmt == "csv":
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(["deployment", "tenant", "requests", "rows", "replica_seconds", "cost_usd"])
        for ln in report.lines:
            w.writerow([ln.deployment, ln.tenant, ln.requests, ln.rows,
                        f"{ln.replica_seconds:.6f}", f"{ln.cost_usd:.6f}"])
        return buf.getvalue().rstrip("\n")
    if fmt != "table":
        raise ValueError(f"format must be table, csv or json, got {fmt!r}")
    lines = [f"window {_iso(report.window_start)} .. {_iso(report.window_end)} "
             f"({report.window_s / 3600:.2f} h), {report.instance} at "
             f"${report.usd_per_replica_hour:.4f} per replica-hour",
             f"{'deployment':<16}{'tenant':<16}{'requests':>10}{'rows':>10}"
             f"{'replica-s':>12}{'cost $':>11}"]
    for d in report.deployments:
        for ln in (x for x in report.lines if x.deployment == d.deployment):
            lines.append(f"{ln.deployment:<16}{ln.tenant:<16}{ln.requests:>10}{ln.rows:>10}"
                         f"{ln.replica_seconds:>12.1f}{ln.cost_usd:>11.4f}")
        lines.append(f"{'':<16}{'= billed':<16}{'':>10}{'':>10}{d.billed_replica_seconds:>12.1f}"
                     f"{d.cost_usd:>11.4f}  (max(reserved {d.reserved_replica_seconds:.1f}, "
                     f"used {d.used_replica_seconds:.1f}))")
        if d.usd_per_audio_minute is not None:
            lines.append(f"{'':<16}{'= per audio-min':<16}{d.audio_seconds / 60:>20.2f} min"
                         f"{d.usd_per_audio_minute:>13.5f}")
    lines.append(f"total ${report.total_usd:.4f}")
    lines.extend(f"WARNING: {w}" for w in report.warnings)
    return "\n".join(lines)
