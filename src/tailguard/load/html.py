"""``tailguard load --report out.html``: one self-contained HTML file of a run.

The file carries everything inline: plots are PNGs drawn with matplotlib (Agg, no pyplot
state) and embedded as ``data:`` URIs, the style is a ``<style>`` block, and there is no
script, font or image fetched from anywhere, so the report opens offline, attaches to an
issue, and looks the same in a year. Plots over time (1 s buckets, see
:mod:`tailguard.load.timeline`): offered, answered, 2xx and (with an SLO) good rate;
latency percentiles; errors by kind; per-tenant 2xx rate; the server's replicas and queue
depth from ``/metrics``. Tables: the summary, answers by HTTP status, tenants, warnings.
"""

from __future__ import annotations

import base64
import html
import io
import math
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from tailguard.load.report import LoadResult
from tailguard.load.timeline import Timeline

if TYPE_CHECKING:
    from matplotlib.axes import Axes

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }
h1 { font-size: 1.5em; } h2 { font-size: 1.15em; margin-top: 1.6em; }
table { border-collapse: collapse; margin: 0.5em 0; font-size: 0.92em; }
td, th { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: right; }
th { background: #f2f2f2; } td:first-child, th:first-child { text-align: left; }
.warn { background: #fff3cd; border: 1px solid #e0c46c; padding: 0.5em 1em; margin: 0.3em 0; }
img { max-width: 100%; } .note { color: #666; font-size: 0.9em; }
"""


def _fmt(x: Any) -> str:
    if x is None:
        return "-"
    if isinstance(x, float):
        return "-" if not math.isfinite(x) else f"{x:,.2f}"
    return html.escape(str(x))


def _table(head: list[str], rows: list[list[Any]]) -> str:
    th = "".join(f"<th>{html.escape(h)}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td>{_fmt(c)}</td>" for c in row) + "</tr>"
                   for row in rows)
    return f"<table><tr>{th}</tr>{body}</table>"


def _png(draw: Callable[[Axes], None], tl: Timeline, title: str, ylabel: str) -> str:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11, 2.8), dpi=90)
    ax = fig.add_subplot()
    if tl.window_start_s > 0:
        ax.axvspan(0, tl.window_start_s, color="#eee", label="_warm-up")
    draw(ax)
    ax.set_xlim(0, max(float(tl.t_s[-1]) + tl.bucket_s if tl.t_s.size else 1.0, 1e-3))
    ax.set_title(title, fontsize=10, loc="left")
    ax.set_xlabel("seconds since start")
    ax.set_ylabel(ylabel)
    ax.grid(True, alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    data = base64.b64encode(buf.getvalue()).decode("ascii")
    return f'<img alt="{html.escape(title)}" src="data:image/png;base64,{data}">'


def _plots(tl: Timeline) -> list[str]:
    mid = tl.t_s + tl.bucket_s / 2
    edges = np.append(tl.t_s, tl.t_s[-1] + tl.bucket_s) if tl.t_s.size else np.zeros(1)

    def rates(ax: Axes) -> None:
        ax.stairs(tl.offered_rps, edges, label="offered", linewidth=2)
        ax.stairs(tl.answered_rps, edges, label="answered")
        ax.stairs(tl.ok_rps, edges, label="2xx", linestyle="--")
        if tl.good_rps is not None:
            ax.stairs(tl.good_rps, edges, label=f"2xx within SLO {tl.slo_ms:g} ms")
        ax.set_ylim(bottom=0)

    def latency(ax: Axes) -> None:
        for name, series in (("p50", tl.p50_ms), ("p90", tl.p90_ms), ("p99", tl.p99_ms)):
            ax.plot(mid, series, marker=".", label=name)
        if tl.slo_ms is not None:
            ax.axhline(tl.slo_ms, color="red", linestyle="--", label="SLO")
        if np.isfinite(tl.p99_ms).any() and np.nanmax(tl.p99_ms) > 0:
            ax.set_yscale("log")

    def errors(ax: Axes) -> None:
        for name, series in sorted(tl.errors_rps.items()):
            ax.stairs(series, edges, label=name)
        ax.set_ylim(bottom=0)

    def tenants(ax: Axes) -> None:
        for name, series in tl.tenant_ok_rps.items():
            ax.stairs(series, edges, label=name)
        ax.set_ylim(bottom=0)

    def server(values: dict[str, np.ndarray]) -> Callable[[Axes], None]:
        def draw(ax: Axes) -> None:
            assert tl.server_t_s is not None
            for name, series in sorted(values.items()):
                ax.step(tl.server_t_s, series, where="post", label=name or "-")
            ax.set_ylim(bottom=0)
        return draw

    out = [_png(rates, tl, "Rate per second: offered by the schedule, answered by the target",
                "req/s"),
           _png(latency, tl, "Latency of 2xx answers, by intended send time", "ms")]
    if tl.errors_rps:
        out.append(_png(errors, tl, "Errors per second, by kind", "per s"))
    if tl.tenant_ok_rps:
        out.append(_png(tenants, tl, "2xx answers per second, by tenant", "req/s"))
    if tl.server_t_s is not None:
        out.append(_png(server(tl.replicas), tl, "Replicas ready (server /metrics)",
                        "replicas"))
        out.append(_png(server(tl.queue_depth), tl, "Queue depth (server /metrics)", "rows"))
    return out


def _summary(r: LoadResult) -> str:
    rows: list[list[Any]] = [
        ["mode", f"open loop, offered {r.offered_rps:g} req/s" if r.mode == "open"
         else f"closed loop, concurrency {r.concurrency}"],
        ["measured", f"{r.duration_s:g} s, {r.requests} requests, {r.ok} ok"],
        ["throughput", f"{r.rps:,.1f} req/s (2xx {r.ok_rps:,.1f} req/s)"],
        ["latency ms", f"p50 {_fmt(r.p50_ms)}  p90 {_fmt(r.p90_ms)}  p99 {_fmt(r.p99_ms)}  "
                       f"p99.9 {_fmt(r.p999_ms)}  max {_fmt(r.max_ms)}"],
    ]
    if r.slo_ms is not None:
        rows.append(["SLO", f"{r.slo_ms:g} ms: goodput {_fmt(r.goodput_rps)} req/s, "
                            f"attainment {_fmt(r.slo_attainment_pct)} %"])
    if r.mode == "open":
        rows.append(["send-time error ms", f"p50 {_fmt(r.send_error_p50_ms)}  p99 "
                     f"{_fmt(r.send_error_p99_ms)}  (schedule lag p99 "
                     f"{_fmt(r.schedule_lag_p99_ms)})"])
    errors = ", ".join(f"{k} {n}" for k, n in sorted(r.errors.items())) or "none"
    rows.append(["errors", errors])
    if r.server_metrics is not None:
        rows.append(["server /metrics", r.server_metrics])
    return _table(["", ""], rows)


def render_html(result: LoadResult, tl: Timeline, title: str = "tailguard load") -> str:
    """The whole report as one HTML string (no external reference of any kind)."""
    parts = [f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}"
             f"</title><style>{_STYLE}</style></head><body><h1>{html.escape(title)}</h1>"]
    parts += [f"<div class='warn'>WARNING: {html.escape(w)}</div>" for w in result.warnings]
    parts.append("<h2>Summary</h2>" + _summary(result))
    if result.status_latency_ms:
        parts.append("<h2>Answers by HTTP status (non-2xx)</h2>" + _table(
            ["status", "count", "p50 ms", "p99 ms"],
            [[s, v["count"], v["p50"], v["p99"]]
             for s, v in sorted(result.status_latency_ms.items())]))
    if result.tenants:
        slo = result.slo_ms is not None
        head = ["tenant", "requests", "ok", "ok req/s", "p50 ms", "p99 ms", "p99.9 ms"]
        head += ["goodput req/s", "attainment %"] if slo else []
        rows = []
        for name, t in result.tenants.items():
            row: list[Any] = [name, t.requests, t.ok, t.ok_rps, t.p50_ms, t.p99_ms, t.p999_ms]
            row += [t.goodput_rps, t.slo_attainment_pct] if slo else []
            rows.append(row)
        errs = [[n, ", ".join(f"{k} {c}" for k, c in sorted(t.errors.items())) or "none"]
                for n, t in result.tenants.items()]
        parts.append("<h2>Tenants</h2>" + _table(head, rows) + _table(["tenant", "errors"],
                                                                       errs))
    parts.append(f"<h2>Over time ({tl.bucket_s:g} s buckets)</h2>")
    parts.append("<p class='note'>Grey: warm-up, not measured. Latency from the intended "
                 "send time (no coordinated omission).</p>")
    parts += _plots(tl)
    parts.append("</body></html>")
    return "\n".join(parts)


def write_report(path: Path, result: LoadResult, tl: Timeline,
                 title: str = "tailguard load") -> None:
    """Write :func:`render_html` to ``path``."""
    path.write_text(render_html(result, tl, title), encoding="utf-8")
