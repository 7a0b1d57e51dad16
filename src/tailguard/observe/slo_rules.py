"""SLOs as Prometheus rules: recording rules for the SLIs, multiwindow multi-burn-rate alerts.

``tailguard alerts render --config serve.yaml -o DIR`` writes ``DIR/tailguard-slo.rules.yml``
from the objectives in a serve config::

    deployments:
      - name: minilm
        p99_ms: 100           # latency SLO: 99% of successful requests within 100 ms
        availability: 0.999   # availability SLO: 99.9% of requests without a 5xx (default)
    tenants:
      - id: search
        p99_ms: 50            # the tenant's own objectives, else each deployment's
        availability: 0.9995

**SLIs.** Both read the request histograms' ``_count`` and ``_bucket`` series: the gateway's
``tailguard_request_duration_seconds{deployment,outcome}`` per deployment and
``tailguard_tenant_request_duration_seconds{tenant,deployment,outcome}`` per tenant and
deployment (``outcome`` is ok | shed | client_error | error, see
:func:`tailguard.observe.metrics.outcome`).

- availability: bad = ``outcome="error"`` (5xx: failures, no replica, deadlines missed),
  valid = every outcome but ``shed``;
- latency: bad = successful requests slower than the objective, i.e. ``outcome="ok"`` count
  minus its ``le="<p99_ms/1000>"`` bucket (the histogram has an edge exactly there, so it is a
  count, not an interpolation); objective 0.99, the P99.

**429s do not count against availability.** Shedding a request that would miss its deadline,
and throttling a tenant over its quota, is admission control doing its job: counting them as
errors would page the operator for the very overload protection the design asks for, and would
push the autoscaler's and the alert's incentives apart. They are left out of the availability
SLI (neither good nor bad). A tenant shed *persistently* is an incident all the same — it is
not getting the capacity it was sold — so each tenant and deployment gets a separate ticket,
``TailguardTenantShed``: shed share (``tailguard_tenant_rejections_total{reason="shed"}`` over
its requests) above ``shed_ratio`` (default 5%) over 6 h and over 30 m. Quota throttles
(``rate_limited``, ``concurrency``) are the tenant's own contract and never alert.

**Alerts** follow the Google SRE Workbook, chapter 5 ("Alerting on SLOs"), table 5-8: an alert
fires when the error ratio exceeds ``factor × (1 − objective)`` over a long window *and* a
short one (the short window makes it reset soon after the burn stops):

=========  ======  ===========  ============
severity   factor  long window  short window
=========  ======  ===========  ============
page       14.4    1 h          5 m
page       6       6 h          30 m
ticket     1       3 d          6 h
=========  ======  ===========  ============

14.4× over 1 h spends 2% of a 30-day budget; 6× over 6 h, 5%; 1× over 3 d, 10%. The alerts
have no ``for:``: the windows already demand a sustained burn. Every SLO also records
``…_budget_remaining:ratio``, the share of its 30-day error budget left (for dashboards).

``window_scale`` multiplies every window (0.01: 1 h becomes 36 s) so that a test can watch
alerts fire against a live Prometheus in seconds; real deployments keep 1. Output is
deterministic: the same config gives the same bytes.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import yaml
from prometheus_client.utils import floatToGoString

from tailguard.serve.config import ServeConfig

__all__ = [
    "BURN_ALERTS",
    "LATENCY_OBJECTIVE",
    "BurnAlert",
    "Slo",
    "prom_duration",
    "render_rules",
    "rules_document",
    "slos_of",
]

LATENCY_OBJECTIVE = 0.99  # a P99 objective: 99% of successful requests within p99_ms
BUDGET_PERIOD_S = 30 * 86400  # the error budget's period, for "budget remaining"
SHED_WINDOWS_S = (6 * 3600, 30 * 60)  # "persistently": over 6 h and still over the last 30 m
RULES_FILE = "tailguard-slo.rules.yml"

_DEPLOYMENT_HIST = "tailguard_request_duration_seconds"
_TENANT_HIST = "tailguard_tenant_request_duration_seconds"
_TENANT_REJECTIONS = "tailguard_tenant_rejections_total"


@dataclass(frozen=True)
class BurnAlert:
    """One row of the Workbook's table: fire when both windows burn faster than ``factor``."""

    severity: str
    factor: float
    long_s: float
    short_s: float


BURN_ALERTS = (
    BurnAlert("page", 14.4, 3600, 300),
    BurnAlert("page", 6.0, 6 * 3600, 1800),
    BurnAlert("ticket", 1.0, 3 * 86400, 6 * 3600),
)


@dataclass(frozen=True)
class Slo:
    """One objective of one subject: a deployment, or a tenant on one deployment."""

    sli: str  # "availability" | "latency"
    labels: tuple[tuple[str, str], ...]  # (("deployment", "x"),) or tenant and deployment
    objective: float  # share of good events, e.g. 0.999
    threshold_s: float | None = None  # latency: the bucket edge that counts as good

    @property
    def scope(self) -> str:
        return "tenant" if self.labels[0][0] == "tenant" else "deployment"

    @property
    def budget(self) -> float:
        return 1.0 - self.objective

    def subject(self) -> str:
        return " ".join(f"{k} {v}" for k, v in self.labels)


def slos_of(config: ServeConfig) -> list[Slo]:
    """Every objective in ``config``, in config order: per deployment, then per tenant and
    deployment it may call (a tenant's ``p99_ms``/``availability``, else the deployment's)."""
    slos: list[Slo] = []
    labels: tuple[tuple[str, str], ...]
    for d in config.deployments:
        labels = (("deployment", d.name),)
        slos.append(Slo("availability", labels, d.availability))
        if d.p99_ms is not None:
            slos.append(Slo("latency", labels, LATENCY_OBJECTIVE, _edge(d.p99_ms)))
    for t in config.tenants:
        for d in config.deployments:
            if not t.allows(d.name):
                continue
            labels = (("tenant", t.id), ("deployment", d.name))
            slos.append(Slo("availability", labels, t.availability or d.availability))
            p99_ms = t.p99_ms or d.p99_ms
            if p99_ms is not None:
                slos.append(Slo("latency", labels, LATENCY_OBJECTIVE, _edge(p99_ms)))
    return slos


def _edge(p99_ms: float) -> float:
    # The same rounding as metrics.latency_buckets, so `le` names an edge that exists.
    return round(p99_ms / 1000, 6)


def prom_duration(seconds: float) -> str:
    """A Prometheus duration: 3600 -> '1h', 216 -> '3m36s', 0.3 -> '300ms'."""
    ms = round(seconds * 1000)
    if ms <= 0:
        raise ValueError(f"window of {seconds} s is shorter than a millisecond")
    parts = []
    for unit, size in (("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1000),
                       ("ms", 1)):
        count, ms = divmod(ms, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts)


def _num(value: float) -> str:
    """A float as PromQL text, stable across runs (0.0144, not 0.014400000000000013)."""
    return f"{value:.10g}"


def _selector(labels: tuple[tuple[str, str], ...], *matchers: str) -> str:
    """``{k="v",...}`` of ``labels``, then extra ``matchers`` such as ``'outcome!="shed"'``."""
    return "{" + ",".join([*(f'{k}="{v}"' for k, v in labels), *matchers]) + "}"


class _Names:
    """Recording rule names of one SLO (its windows are part of the name)."""

    def __init__(self, slo: Slo) -> None:
        self._prefix = f"tailguard_{slo.scope}_slo:{slo.sli}"

    def ratio(self, window: str) -> str:
        return f"{self._prefix}_errors:ratio_rate{window}"

    def budget_remaining(self) -> str:
        return f"{self._prefix}_budget_remaining:ratio"


def _error_ratio(slo: Slo, window: str) -> str:
    """PromQL: the share of bad events among valid ones over ``window``."""
    hist = _TENANT_HIST if slo.scope == "tenant" else _DEPLOYMENT_HIST
    by = ", ".join(k for k, _ in slo.labels)
    if slo.sli == "availability":
        valid = hist + "_count" + _selector(slo.labels, 'outcome!="shed"')
        bad = hist + "_count" + _selector(slo.labels, 'outcome="error"')
        # A subject that never failed has no error series: `or 0 * valid` makes its ratio 0
        # rather than absent, so "budget remaining" reads 100%, not "no data".
        return (f"(sum by ({by}) (rate({bad}[{window}]))"
                f" or 0 * sum by ({by}) (rate({valid}[{window}])))"
                f" / sum by ({by}) (rate({valid}[{window}]))")
    assert slo.threshold_s is not None
    ok = _selector(slo.labels, 'outcome="ok"')
    le = floatToGoString(slo.threshold_s)
    within = _selector(slo.labels, 'outcome="ok"', f'le="{le}"')
    return (f"1 - sum by ({by}) (rate({hist}_bucket{within}[{window}]))"
            f" / sum by ({by}) (rate({hist}_count{ok}[{window}]))")


def _shed_ratio(labels: tuple[tuple[str, str], ...], window: str) -> str:
    by = ", ".join(k for k, _ in labels)
    shed = _TENANT_REJECTIONS + _selector(labels, 'reason="shed"')
    total = f"{_TENANT_HIST}_count{_selector(labels)}"
    return (f"(sum by ({by}) (rate({shed}[{window}]))"
            f" or 0 * sum by ({by}) (rate({total}[{window}])))"
            f" / sum by ({by}) (rate({total}[{window}]))")


def _slo_rules(slo: Slo, window_scale: float) -> Iterator[dict[str, object]]:
    names = _Names(slo)
    # The subject's labels are static labels too (the series carry them already): rules of
    # two subjects then differ in name-and-labels, which promtool's duplicate check asks.
    static = {**dict(slo.labels), "slo": slo.sli}
    windows = sorted({w for a in BURN_ALERTS for w in (a.long_s, a.short_s)} | {BUDGET_PERIOD_S})
    for seconds in windows:
        w = prom_duration(seconds * window_scale)
        yield {"record": names.ratio(w), "expr": _error_ratio(slo, w),
               "labels": static}
    period = prom_duration(BUDGET_PERIOD_S * window_scale)
    yield {"record": names.budget_remaining(),
           "expr": f"1 - {names.ratio(period)}{_selector(slo.labels)} / {_num(slo.budget)}",
           "labels": static}
    what = ("errors (5xx)" if slo.sli == "availability"
            else f"successful requests slower than {_num(slo.threshold_s or 0)} s")
    alert = "TailguardAvailabilityBurnRate" if slo.sli == "availability" \
        else "TailguardLatencyBurnRate"
    for a in BURN_ALERTS:
        long_w, short_w = (prom_duration(s * window_scale) for s in (a.long_s, a.short_s))
        threshold = _num(a.factor * slo.budget)
        sel = _selector(slo.labels)
        yield {
            "alert": alert,
            "expr": (f"{names.ratio(long_w)}{sel} > {threshold}"
                     f" and {names.ratio(short_w)}{sel} > {threshold}"),
            "labels": {**static, "severity": a.severity, "burn_rate": _num(a.factor),
                       "long_window": long_w, "short_window": short_w},
            "annotations": {
                "summary": (f"{slo.subject()}: {slo.sli} error budget burning "
                            f"{_num(a.factor)}x over {long_w} and {short_w}"),
                "description": (f"{what}: {{{{ $value | humanizePercentage }}}} over {long_w}"
                                f" against a budget of {_num(slo.budget * 100)}% "
                                f"(objective {_num(slo.objective * 100)}%)"),
            },
        }


def _shed_rules(labels: tuple[tuple[str, str], ...], shed_ratio: float,
                window_scale: float) -> Iterator[dict[str, object]]:
    long_w, short_w = (prom_duration(s * window_scale) for s in SHED_WINDOWS_S)
    name = "tailguard_tenant_slo:shed:ratio_rate"
    for w in (long_w, short_w):
        yield {"record": name + w, "expr": _shed_ratio(labels, w), "labels": dict(labels)}
    sel = _selector(labels)
    subject = " ".join(f"{k} {v}" for k, v in labels)
    yield {
        "alert": "TailguardTenantShed",
        "expr": (f"{name}{long_w}{sel} > {_num(shed_ratio)}"
                 f" and {name}{short_w}{sel} > {_num(shed_ratio)}"),
        "labels": {**dict(labels), "severity": "ticket", "long_window": long_w,
                   "short_window": short_w},
        "annotations": {
            "summary": f"{subject}: shed persistently (over {long_w} and {short_w})",
            "description": (f"{{{{ $value | humanizePercentage }}}} of its requests shed over "
                            f"{long_w} (limit {_num(shed_ratio * 100)}%): it needs capacity, "
                            "a looser p99_ms or less traffic"),
        },
    }


def rules_document(config: ServeConfig, window_scale: float = 1.0,
                   shed_ratio: float = 0.05) -> dict[str, object]:
    """The rules file as data: one group per SLO subject, recording rules before the alerts
    that read them (a group evaluates in order, so alerts see this cycle's ratios)."""
    if window_scale <= 0:
        raise ValueError(f"window_scale must be > 0, got {window_scale}")
    if not 0 < shed_ratio < 1:
        raise ValueError(f"shed_ratio must be in (0, 1), got {shed_ratio}")
    groups: dict[tuple[tuple[str, str], ...], list[dict[str, object]]] = {}
    for slo in slos_of(config):
        groups.setdefault(slo.labels, []).extend(_slo_rules(slo, window_scale))
    for labels, rules in groups.items():
        if labels[0][0] == "tenant":
            rules.extend(_shed_rules(labels, shed_ratio, window_scale))
    return {"groups": [
        {"name": "tailguard-slo:" + ":".join(v for _, v in labels), "rules": rules}
        for labels, rules in groups.items()]}


def render_rules(config: ServeConfig, window_scale: float = 1.0,
                 shed_ratio: float = 0.05) -> str:
    """The Prometheus rules file (YAML text) for every SLO in ``config``."""
    header = ("# Generated by `tailguard alerts render`: SLO recording rules and multiwindow\n"
              "# multi-burn-rate alerts. Edit the serve config, not this file.\n")
    if window_scale != 1:
        header += f"# window_scale {_num(window_scale)}: every window scaled (tests only).\n"
    return header + yaml.dump(rules_document(config, window_scale, shed_ratio),
                              Dumper=_Dumper, sort_keys=False, width=100_000,
                              allow_unicode=True)


class _Dumper(yaml.SafeDumper):
    """Writes a shared label dict out in full each time: no ``&id001`` anchors."""

    def ignore_aliases(self, data: object) -> bool:
        return True
