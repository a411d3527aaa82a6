"""Static SVG charts for the HTML report: latency percentile curves and layer bars.

Drawn here, not by a JS plotting library: a handful of lines and rectangles
needs no dependency, renders with scripts off, and every label goes through
one escaping function.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from html import escape

PALETTE = ("#3b6fc4", "#d9534f", "#2e9e5b", "#e08e0b", "#8e44ad", "#16a2b8", "#7f7f7f", "#b5651d")
PERCENTILES = (("p50", 0.5), ("p90", 0.9), ("p99", 0.99), ("p999", 0.999))
_MAX_X = 4.0  # where "max" sits on the log percentile axis (one decade past 99.9%)


def _e(value: object) -> str:
    return escape(str(value), quote=True)


def colour(i: int) -> str:
    """A variant's colour, the same in every chart of the page."""
    return PALETTE[i % len(PALETTE)]


def _nines(p: float) -> float:
    """HdrHistogram's percentile axis: 90% -> 1, 99% -> 2, 99.9% -> 3."""
    return math.log10(1.0 / (1.0 - p))


def _log_ticks(lo: float, hi: float) -> list[float]:
    ticks = []
    for k in range(math.floor(math.log10(lo)), math.ceil(math.log10(hi)) + 1):
        for m in (1, 2, 5):
            t = m * 10.0**k
            if lo <= t <= hi:
                ticks.append(t)
    return ticks


def _us(v: float) -> str:
    if v >= 1000:
        return f"{v / 1000:g} ms"
    return f"{v:g} µs"


def latency_chart(
    title: str,
    series: Sequence[tuple[str, int, Mapping[str, float]]],
    curves: Mapping[str, Sequence[Sequence[float]]] | None = None,
) -> str:
    """Percentile curves (log percentile axis, log latency axis), one per (name, colour, summary).

    ``curves`` (name -> [[percentile, µs], ...], the result's full HDR curve) draws the
    line through every step; the summary points stay as the hover targets.
    """
    w, h, left, right, top, bottom = 560, 300, 64, 16, 28, 44
    points = [s for s in series if s[2]]
    if not points:
        return f'<p class="note">{_e(title)}: no latency figures.</p>'
    values = [v for _, _, lat in points for v in lat.values() if v > 0]
    if not values:  # e.g. idle connections: no round trips, every percentile 0
        return f'<p class="note">{_e(title)}: no latency figures.</p>'
    lo, hi = min(values) / 1.4, max(values) * 1.4
    pw, ph = w - left - right, h - top - bottom

    def x(n: float) -> float:
        return left + pw * (n - _nines(0.5)) / (_MAX_X - _nines(0.5))

    def y(v: float) -> float:
        return top + ph * (1 - (math.log10(max(v, lo)) - math.log10(lo)) / math.log10(hi / lo))

    out = [
        f'<svg class="chart" width="{w}" height="{h}" viewBox="0 0 {w} {h}" role="img">',
        f'<text x="{w / 2}" y="16" text-anchor="middle" font-weight="600">{_e(title)}</text>',
        f'<rect x="{left}" y="{top}" width="{pw}" height="{ph}" fill="#fcfcfc" stroke="#ccc"/>',
    ]
    for t in _log_ticks(lo, hi):
        out.append(
            f'<line x1="{left}" x2="{left + pw}" y1="{y(t):.1f}" y2="{y(t):.1f}" stroke="#eee"/>'
            f'<text x="{left - 4}" y="{y(t) + 4:.1f}" text-anchor="end">{_e(_us(t))}</text>'
        )
    for label, pos in (("50%", 0.5), ("90%", 0.9), ("99%", 0.99), ("99.9%", 0.999)):
        out.append(
            f'<line x1="{x(_nines(pos)):.1f}" x2="{x(_nines(pos)):.1f}" y1="{top}" '
            f'y2="{top + ph}" stroke="#eee"/><text x="{x(_nines(pos)):.1f}" y="{top + ph + 14}" '
            f'text-anchor="middle">{label}</text>'
        )
    out.append(f'<text x="{x(_MAX_X):.1f}" y="{top + ph + 14}" text-anchor="middle">max</text>')
    out.append(
        f'<text x="{left + pw / 2}" y="{h - 6}" text-anchor="middle">percentile '
        "(log scale: each step is one more nine)</text>"
    )
    for name, idx, lat in points:
        keys = [k for k, _ in PERCENTILES if k in lat]
        pts = [(x(_nines(p)), y(lat[k])) for k, p in PERCENTILES if k in lat]
        path = " ".join(f"{px:.1f},{py:.1f}" for px, py in pts)
        c = colour(idx)
        full = [(q, v) for q, v in (curves or {}).get(name, []) if q < 100.0]
        if full:
            path = " ".join(f"{x(_nines(q / 100.0)):.1f},{y(v):.1f}" for q, v in full)
        out.append(
            f'<polyline class="curve" points="{path}" fill="none" stroke="{c}" stroke-width="2"/>'
        )
        if pts and "max" in lat:
            mx, my = x(_MAX_X), y(lat["max"])
            out.append(
                f'<line x1="{pts[-1][0]:.1f}" y1="{pts[-1][1]:.1f}" x2="{mx:.1f}" y2="{my:.1f}" '
                f'stroke="{c}" stroke-width="1.5" stroke-dasharray="4 3"/>'
            )
            pts.append((mx, my))
            keys.append("max")
        for (px, py), k in zip(pts, keys, strict=True):
            out.append(
                f'<circle cx="{px:.1f}" cy="{py:.1f}" r="3" fill="{c}"><title>{_e(name)} {k}: '
                f"{lat[k]:,.0f} µs</title></circle>"
            )
    for i, (name, idx, _) in enumerate(points):
        ly = top + 14 + 15 * i
        out.append(
            f'<rect x="{left + 8}" y="{ly - 9}" width="14" height="3" fill="{colour(idx)}"/>'
            f'<text x="{left + 28}" y="{ly - 4}">{_e(name)}</text>'
        )
    out.append("</svg>")
    return "".join(out)


def wilson(share: float, n: int, z: float = 1.96) -> tuple[float, float]:
    """The 95% interval of a sampled share: how far py-spy's sample count lets it move."""
    if n <= 0:
        return (0.0, 0.0)
    denom = 1 + z * z / n
    centre = (share + z * z / (2 * n)) / denom
    half = z * math.sqrt(share * (1 - share) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


def layer_bars(
    rows: Sequence[tuple[str, float, int, Mapping[str, float]]],
    layer_colours: Mapping[str, str],
    unit: str,
) -> str:
    """Stacked horizontal bars: per (variant, total, samples, {layer: share}), in ``unit``."""
    bar_h, gap, left, right, top = 22, 10, 170, 120, 10
    w = 900
    total_max = max((t for _, t, _, _ in rows), default=0.0) or 1.0
    pw = w - left - right
    h = top + len(rows) * (bar_h + gap) + 30
    out = [f'<svg class="chart bars" width="{w}" height="{h}" viewBox="0 0 {w} {h}" role="img">']
    axis_y = top + len(rows) * (bar_h + gap) + 4
    for k in range(6):
        v = total_max * k / 5
        tx = left + pw * k / 5
        out.append(
            f'<line x1="{tx:.1f}" x2="{tx:.1f}" y1="{top}" y2="{axis_y}" stroke="#eee"/>'
            f'<text x="{tx:.1f}" y="{axis_y + 14}" text-anchor="middle">{v:,.0f}</text>'
        )
    for i, (name, total, n, shares) in enumerate(rows):
        y = top + i * (bar_h + gap)
        out.append(
            f'<text x="{left - 6}" y="{y + bar_h / 2 + 4}" text-anchor="end">{_e(name)}</text>'
        )
        cx = float(left)
        for layer, share in shares.items():
            if share <= 0:
                continue
            value = share * total
            bw = pw * value / total_max
            lo, hi = wilson(share, n)
            tip = (
                f"{name} · {layer}: {value:.1f} {unit} ({share:.0%}); 95% sampling interval "
                f"{lo * total:.1f}–{hi * total:.1f} from {n} samples"
            )
            out.append(
                f'<rect class="seg" data-layer="{_e(layer)}" x="{cx:.1f}" y="{y}" '
                f'width="{max(bw, 0.5):.1f}" height="{bar_h}" fill="{layer_colours.get(layer, "#ccc")}" '
                f'stroke="#fff" stroke-width="0.5"><title>{_e(tip)}</title></rect>'
            )
            cx += bw
        out.append(f'<text x="{cx + 6:.1f}" y="{y + bar_h / 2 + 4}">{total:,.1f} {_e(unit)}</text>')
    out.append("</svg>")
    return "".join(out)
