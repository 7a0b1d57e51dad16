"""A check report as a rich terminal table and as one self-contained HTML page.

The HTML embeds each column's histogram (numbers) or top categories (text, ints, bools) as a
PNG drawn with matplotlib's non-interactive Agg backend, base64 in an ``<img>``, so the page
can be kept and mailed as one file.
"""

from __future__ import annotations

import base64
import html
import io
from typing import TYPE_CHECKING

from tailguard.data.checks.report import CheckReport, ColumnSummary
from tailguard.data.checks.rules import Severity

if TYPE_CHECKING:
    from rich.console import Console


def print_report(report: CheckReport, console: Console) -> None:
    from rich.table import Table

    title = f"data check {report.dataset}" + (f" against {report.against}"
                                               if report.against else "")
    cols = Table(title=title, title_justify="left")
    for head in ("column", "type", "nulls", "min", "max", "distinct"):
        cols.add_column(head, justify="right" if head != "column" else "left")
    for c in report.columns:
        cols.add_row(c.name, c.kind, f"{c.nulls} ({100 * c.null_rate:.1f}%)",
                     _num(c.min), _num(c.max), "-" if c.distinct is None else str(c.distinct))
    console.print(cols)
    if report.findings:
        table = Table(title="findings", title_justify="left", show_lines=False)
        for head in ("", "rule", "column", "finding", "example rows"):
            table.add_column(head, overflow="fold")
        for f in report.findings:
            mark = "[red]FAIL[/red]" if f.severity is Severity.FAIL else "[yellow]warn[/yellow]"
            table.add_row(mark, f.rule, f.column or "-", f.message,
                          ", ".join(str(r) for r in f.examples[:4]) or "-")
        console.print(table)
    verdict = "[green]passed[/green]" if report.passed else "[red]FAILED[/red]"
    console.print(f"{verdict}: {len(report.failures)} failure(s), {len(report.warnings)} "
                  f"warning(s); {report.rows} rows in {report.shards} shard(s), "
                  f"{report.elapsed_s:.1f} s ({report.rows_per_s:,.0f} rows/s)")


def _num(x: float | None) -> str:
    return "-" if x is None else f"{x:.4g}"


def _plot(column: ColumnSummary) -> str | None:
    """A small PNG of the column's distribution, base64; None when there is nothing to draw."""
    if column.hist is None and not column.top:
        return None
    import matplotlib

    matplotlib.use("Agg")  # no display: a server or CI has none
    from matplotlib.figure import Figure

    fig = Figure(figsize=(4.0, 2.2), dpi=80)
    ax = fig.add_subplot()
    few = column.top is not None and column.distinct is not None and column.distinct <= 20
    if column.hist is not None and column.edges is not None and not few:
        # one artist for all bins: a bar per bin costs ~10 ms each to lay out
        ax.stairs(column.hist, column.edges, fill=True, color="#4c72b0")
    elif column.top:
        labels = [k[:12] for k, _ in column.top]
        ax.bar(range(len(labels)), [n for _, n in column.top], color="#55a868")
        ax.set_xticks(range(len(labels)), labels)
        for tick in ax.get_xticklabels():
            tick.set_rotation(45)
            tick.set_fontsize(7)
    ax.set_title(column.name, fontsize=9)
    ax.tick_params(labelsize=7)
    fig.subplots_adjust(left=0.14, right=0.97, top=0.88, bottom=0.25)
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def to_html(report: CheckReport) -> str:
    e = html.escape
    rows = []
    for f in report.findings:
        cls = "fail" if f.severity is Severity.FAIL else "warn"
        rows.append(f"<tr class='{cls}'><td>{f.severity.value}</td><td>{e(f.rule)}</td>"
                    f"<td>{e(f.column or '-')}</td><td>{e(f.message)}</td>"
                    f"<td>{e(', '.join(str(r) for r in f.examples))}</td></tr>")
    cards = []
    for c in report.columns:
        png = _plot(c)
        img = f"<img alt='{e(c.name)}' src='data:image/png;base64,{png}'>" if png else ""
        cards.append(f"<div class='col'><h3>{e(c.name)} <small>{e(c.kind)}</small></h3>{img}"
                     f"<p>nulls {c.nulls} ({100 * c.null_rate:.2f}%) · min {_num(c.min)} · "
                     f"max {_num(c.max)}"
                     + (f" · distinct {c.distinct}" if c.distinct is not None else "")
                     + "</p></div>")
    verdict = "passed" if report.passed else "FAILED"
    against = f" against {e(report.against)}" if report.against else ""
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>data check {e(report.dataset)}</title>
<style>body{{font-family:sans-serif;margin:1.5em}} table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:4px 8px;vertical-align:top}} .fail{{background:#fdd}}
.warn{{background:#ffd}} .col{{display:inline-block;margin:8px;vertical-align:top}}
small{{color:#666}}</style></head><body>
<h1>data check: {verdict}</h1>
<p>{e(report.dataset)}{against} · {report.rows} rows in {report.shards} shard(s) ·
fingerprint <code>{e(report.fingerprint)}</code> · {report.created_at}</p>
<h2>findings ({len(report.failures)} failure(s), {len(report.warnings)} warning(s))</h2>
<table><tr><th>severity</th><th>rule</th><th>column</th><th>finding</th><th>example rows</th>
</tr>{''.join(rows) or "<tr><td colspan=5>none</td></tr>"}</table>
<h2>columns</h2>{''.join(cards)}
</body></html>
"""
