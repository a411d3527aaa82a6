"""report.html's workload figures and sweep section: the cost curve, one line per variant.

Static SVG like html_charts: x is the swept parameter, y the metric the growth
is fitted to (server CPU µs per message / delivery / connection, or server RSS
KB for idle connections); the fitted line's slope is stated under the chart.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from html import escape
from typing import Any

from wsprof.report.html_charts import colour
from wsprof.report.scenario import WORKLOAD_COLUMNS, sweep_columns
from wsprof.scenario.sweep import growth_text


def _e(value: object) -> str:
    return escape(str(value), quote=True)


def _axis(lo: float, hi: float, log: bool) -> tuple[float, float]:
    if log:
        return math.log10(lo), math.log10(hi)
    return (lo, hi) if hi > lo else (lo - 1, hi + 1)


def sweep_chart(sweep: Mapping[str, Any], names: list[str]) -> str:
    """One polyline per variant through its finished points; a log x axis past a 10x range."""
    w, h, left, right, top, bottom = 560, 300, 64, 16, 28, 44
    series = []
    for name, entry in sweep["variants"].items():
        key = entry["growth"]["key"]
        pts = [
            (float(r["point"]), float(r[key]))
            for r in entry["rows"]
            if r["status"] == "ok" and r.get(key) is not None
        ]
        if pts:
            series.append((name, names.index(name) if name in names else 0, pts, entry))
    if not series:
        return '<p class="note">No finished sweep point to draw.</p>'
    xs = [p[0] for _, _, pts, _ in series for p in pts]
    ys = [p[1] for _, _, pts, _ in series for p in pts]
    log = min(xs) > 0 and max(xs) / min(xs) >= 10
    x0, x1 = _axis(min(xs), max(xs), log)
    y1 = max(ys) * 1.1 or 1.0
    pw, ph = w - left - right, h - top - bottom

    def x(v: float) -> float:
        t = math.log10(v) if log else v
        return left + pw * (t - x0) / (x1 - x0) if x1 > x0 else left + pw / 2

    def y(v: float) -> float:
        return top + ph * (1 - v / y1)

    metric = series[0][3]["growth"]["metric"]
    out = [
        f'<svg class="chart" width="{w}" height="{h}" viewBox="0 0 {w} {h}" role="img">',
        f'<text x="{w / 2}" y="16" text-anchor="middle" font-weight="600">'
        f"{_e(metric)} vs {_e(sweep['parameter'])}</text>",
        f'<rect x="{left}" y="{top}" width="{pw}" height="{ph}" fill="#fcfcfc" stroke="#ccc"/>',
    ]
    for i in range(5):
        v = y1 * i / 4
        out.append(
            f'<line x1="{left}" x2="{left + pw}" y1="{y(v):.1f}" y2="{y(v):.1f}" stroke="#eee"/>'
            f'<text x="{left - 4}" y="{y(v) + 4:.1f}" text-anchor="end">{v:.3g}</text>'
        )
    for point in sweep["points"]:
        out.append(
            f'<text x="{x(float(point)):.1f}" y="{top + ph + 14}" text-anchor="middle">'
            f"{_e(format(point, ','))}</text>"
        )
    axis = f"{sweep['parameter']}{' (log scale)' if log else ''}"
    out.append(f'<text x="{left + pw / 2}" y="{h - 6}" text-anchor="middle">{_e(axis)}</text>')
    for i, (name, idx, pts, _) in enumerate(series):
        c = colour(idx)
        path = " ".join(f"{x(px):.1f},{y(py):.1f}" for px, py in pts)
        out.append(
            f'<polyline class="curve" points="{path}" fill="none" stroke="{c}" stroke-width="2"/>'
        )
        for px, py in pts:
            out.append(
                f'<circle cx="{x(px):.1f}" cy="{y(py):.1f}" r="3" fill="{c}"><title>{_e(name)} '
                f"at {px:,.0f}: {py:.3g}</title></circle>"
            )
        ly = top + 14 + 15 * i
        out.append(
            f'<rect x="{left + 8}" y="{ly - 9}" width="14" height="3" fill="{c}"/>'
            f'<text x="{left + 28}" y="{ly - 4}">{_e(name)}</text>'
        )
    out.append("</svg>")
    return "".join(out)


def sweep_section(doc: Mapping[str, Any]) -> str:
    """The curve and, per variant, its fitted growth (and why it is incomplete)."""
    sweep = doc.get("sweep")
    if not sweep:
        return ""
    names = [v["name"] for v in doc["variants"]]
    lines = []
    for name, entry in sweep["variants"].items():
        text = f"{_e(name)}: {_e(growth_text(entry['growth']))}"
        if entry["incomplete"]:
            text += f" — <b>incomplete</b>: {_e(entry['error'] or 'not every point ran')}"
        lines.append(f"<li>{text}</li>")
    return (
        f'<h2 id="sweep">Sweep over {_e(sweep["parameter"])}</h2><div class="charts">'
        + sweep_chart(sweep, names)
        + f"</div><ul>{''.join(lines)}</ul>"
        + f'<p class="note">{_e(sweep["note"])}; the profiled window ran at the last point '
        f"({_e(sweep.get('profiled_point'))}).</p>"
    )


def _rows_table(head: list[str], rows: list[list[str]]) -> str:
    h = "".join(f"<th>{c}</th>" for c in head)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in rows)
    return f'<table class="results"><thead><tr>{h}</tr></thead><tbody>{body}</tbody></table>'


def workload_section(doc: Mapping[str, Any]) -> str:
    """The workload's own figures per variant and, for a sweep, per point (none for echo)."""
    workload = doc.get("workload", "echo")
    columns = WORKLOAD_COLUMNS.get(workload, [])
    if workload == "echo" and not doc.get("sweep"):
        return ""
    rows = []
    if doc.get("sweep"):
        columns = sweep_columns(dict(doc))
        head = ["variant", _e(doc["sweep"]["parameter"]), *(_e(c) for c, _ in columns)]
        for name, entry in doc["sweep"]["variants"].items():
            for r in entry["rows"]:
                cells = [_e(show(r)) for _, show in columns] if r["status"] == "ok" else ["failed"]
                rows.append([_e(name), _e(format(r["point"], ",")), *cells])
    else:
        head = ["variant", *(_e(c) for c, _ in columns)]
        for v in doc["variants"]:
            cells = [_e(show(v)) for _, show in columns] if v["status"] == "ok" else ["failed"]
            rows.append([_e(v["name"]), *cells])
    return f'<h2 id="workload">{_e(workload)} workload</h2>' + _rows_table(head, rows)
