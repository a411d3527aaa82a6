"""Interactive flamegraph SVGs from folded stacks, and differential flamegraphs.

Hand-written on purpose: no maintained Python library renders an SVG from
folded input (py-spy draws SVGs only while recording; inferno and
flamegraph.pl are Rust and Perl tools we cannot install here). The output
follows flamegraph.pl's conventions: root at the bottom, children sorted by
name, hover for details, click to zoom, "Reset zoom" to go back.

Ordinary graphs colour each frame by the layer its own samples are charged
to (the same leaf walk as :mod:`attribute`). Differential graphs draw the
union of both profiles, each frame as wide as the mean of its normalised A
and B values (so frames that vanished in B stay visible), red where B grew,
blue where it shrank.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from xml.sax.saxutils import escape

from wsprof.profiling.folded import Stack, parse_frame
from wsprof.profiling.layers import IDLE, INHERIT, OTHER, RuleSet, default_rules, layer_colour

WIDTH = 1200
FRAME_H = 16
PAD = 10
TOP = 66
BOTTOM = 30
CHAR_W = 7.0
MIN_PX = 0.1

_INVALID_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def _xml(text: str) -> str:
    """Escape for element text and double-quoted attributes, dropping chars XML forbids."""
    return escape(_INVALID_XML.sub("\ufffd", text), {'"': "&quot;", "\n": "&#10;"})


@dataclass
class _Node:
    name: str
    a: float = 0.0
    b: float = 0.0
    children: dict[str, _Node] = field(default_factory=dict)


_THREAD_NAME_RE = re.compile(r"thread \([^)]*\)")


def comparable_frame(frame: str) -> str:
    """A root frame without the pid/tid that differ between two recordings.

    Two variants run as two processes: ``process 123:"... --stack a"`` and
    ``process 456:"... --stack b"`` must line up in a differential flamegraph,
    or every frame above them would look new in B and gone from A.
    """
    kind = parse_frame(frame).kind
    if kind == "process":
        return "process"
    if kind == "thread":
        return _THREAD_NAME_RE.sub("thread", frame, count=1)
    return frame


def _add(
    root: _Node, stacks: Iterable[Stack], scale: float, into_b: bool, comparable: bool = False
) -> None:
    for stack in stacks:
        value = stack.count * scale
        node = root
        if into_b:
            node.b += value
        else:
            node.a += value
        for depth, raw in enumerate(stack.frames):
            frame = comparable_frame(raw) if comparable and depth < 2 else raw
            child = node.children.get(frame)
            if child is None:
                child = node.children[frame] = _Node(frame)
            if into_b:
                child.b += value
            else:
                child.a += value
            node = child


@dataclass(frozen=True)
class _Box:
    x: float
    w: float
    depth: int
    name: str
    fill: str
    tip: str


def _layout(
    root: _Node, width_of: Callable[[_Node], float], min_units: float
) -> tuple[list[tuple[_Node, _Node | None, float, int]], int]:
    """Place nodes left to right (children sorted by name); drop those narrower than ``min_units``."""
    placed: list[tuple[_Node, _Node | None, float, int]] = []
    max_depth = 0
    todo: list[tuple[_Node, _Node | None, float, int]] = [(root, None, 0.0, 0)]
    while todo:
        node, parent, x, depth = todo.pop()
        placed.append((node, parent, x, depth))
        max_depth = max(max_depth, depth)
        cx = x
        for name in sorted(node.children):
            child = node.children[name]
            w = width_of(child)
            if w >= min_units:
                todo.append((child, node, cx, depth + 1))
            cx += w
    return placed, max_depth


_SCRIPT = """
var W = %(width)d, PAD = %(pad)d, CW = %(charw)s, total = %(total)r;
var frames = Array.prototype.slice.call(document.querySelectorAll("g.f"));
var details = document.getElementById("details");
function num(g, k) { return parseFloat(g.getAttribute(k)); }
function label(g, px) {
  var n = g.getAttribute("data-n"), fit = Math.floor((px - 6) / CW);
  if (fit >= n.length) return n;
  return fit < 3 ? "" : n.substring(0, fit - 2) + "..";
}
function render(x0, w0, d0) {
  var scale = (W - 2 * PAD) / w0;
  frames.forEach(function (g) {
    var x = num(g, "data-x"), w = num(g, "data-w"), d = num(g, "data-d");
    var inside = x + w > x0 + 1e-9 * w0 && x < x0 + w0 - 1e-9 * w0;
    var ancestor = d < d0 && x <= x0 + 1e-9 * w0 && x + w >= x0 + w0 - 1e-9 * w0;
    if (!(ancestor || (d >= d0 && inside))) { g.style.display = "none"; return; }
    g.style.display = "";
    var px = ancestor ? W - 2 * PAD : w * scale, left = ancestor ? PAD : PAD + (x - x0) * scale;
    var r = g.querySelector("rect"), t = g.querySelector("text");
    r.setAttribute("x", left); r.setAttribute("width", Math.max(px - 0.5, 0.1));
    t.setAttribute("x", left + 3); t.textContent = label(g, px);
    g.style.opacity = ancestor ? "0.6" : "1";
  });
}
frames.forEach(function (g) {
  g.addEventListener("click", function () {
    render(num(g, "data-x"), num(g, "data-w"), num(g, "data-d"));
    document.getElementById("reset").style.display = "";
  });
  g.addEventListener("mouseover", function () {
    details.textContent = g.querySelector("title").textContent.replace(/\\n/g, "  |  ");
  });
  g.addEventListener("mouseout", function () { details.textContent = " "; });
});
document.getElementById("reset").addEventListener("click", function () {
  render(0, total, 0); this.style.display = "none";
});
render(0, total, 0);
"""


def _svg(
    boxes: Sequence[_Box],
    total: float,
    max_depth: int,
    title: str,
    subtitle: str,
    legend: Sequence[tuple[str, str]],
) -> str:
    height = TOP + (max_depth + 1) * FRAME_H + BOTTOM
    usable = WIDTH - 2 * PAD
    scale = usable / total if total else 0.0
    out = [
        '<?xml version="1.0" encoding="UTF-8" standalone="no"?>\n',
        f'<svg version="1.1" xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" '
        f'viewBox="0 0 {WIDTH} {height}">\n',
        "<style>text{font-family:Verdana,sans-serif;font-size:12px;fill:#000}"
        " g.f text{font-size:11px;pointer-events:none} g.f:hover rect{stroke:#000;stroke-width:0.7}"
        " g.f{cursor:pointer} #reset{cursor:pointer;fill:#0645ad}</style>\n",
        f'<rect x="0" y="0" width="{WIDTH}" height="{height}" fill="#fafafa"/>\n',
        f'<text x="{WIDTH / 2}" y="18" text-anchor="middle" font-size="16">{_xml(title)}</text>\n',
        f'<text x="{WIDTH / 2}" y="34" text-anchor="middle" fill="#555">{_xml(subtitle)}</text>\n',
        f'<text id="reset" x="{PAD}" y="18" style="display:none">Reset zoom</text>\n',
    ]
    lx = float(PAD)
    for name, colour in legend:
        out.append(
            f'<rect x="{lx}" y="44" width="12" height="12" fill="{colour}" stroke="#888" stroke-width="0.5"/>'
            f'<text x="{lx + 16}" y="54">{_xml(name)}</text>\n'
        )
        lx += 24 + CHAR_W * len(name)
    out.append('<g id="frames">\n')
    for bx in boxes:
        y = TOP + (max_depth - bx.depth) * FRAME_H
        px = bx.w * scale
        out.append(
            f'<g class="f" data-x="{bx.x!r}" data-w="{bx.w!r}" data-d="{bx.depth}" data-n="{_xml(bx.name)}">'
            f"<title>{_xml(bx.tip)}</title>"
            f'<rect x="{PAD + bx.x * scale:.2f}" y="{y}" width="{max(px - 0.5, 0.1):.2f}" '
            f'height="{FRAME_H - 1}" fill="{bx.fill}" rx="2"/>'
            f'<text x="{PAD + bx.x * scale + 3:.2f}" y="{y + FRAME_H - 4}"></text></g>\n'
        )
    out.append("</g>\n")
    out.append(f'<text id="details" x="{PAD}" y="{height - 10}"> </text>\n')
    script = _SCRIPT % {"width": WIDTH, "pad": PAD, "charw": repr(CHAR_W), "total": total}
    out.append(f'<script type="text/ecmascript"><![CDATA[{script}]]></script>\n</svg>\n')
    return "".join(out)


def flamegraph_svg(
    stacks: Iterable[Stack], rules: RuleSet | None = None, title: str = "wsprof flamegraph"
) -> str:
    """Render an interactive flamegraph coloured by layer."""
    rs = rules if rules is not None else default_rules()
    root = _Node("all")
    _add(root, stacks, 1.0, into_b=False)
    total = root.a
    placed, max_depth = _layout(root, lambda n: n.a, total * MIN_PX / (WIDTH - 2 * PAD))
    layer_of: dict[int, str] = {id(root): OTHER}
    boxes = []
    for node, parent, x, depth in placed:
        if parent is not None:
            decided = rs.decide(node.name)
            layer_of[id(node)] = layer_of[id(parent)] if decided == INHERIT else decided
        layer = layer_of[id(node)]
        share = node.a / total if total else 0.0
        tip = (
            f"{node.name}\n{int(node.a)} samples, {share:.2%}\nlayer: {layer if parent else 'all'}"
        )
        fill = "#dddddd" if parent is None else layer_colour(layer)
        boxes.append(_Box(x, node.a, depth, node.name, fill, tip))
    shown = [*rs.layers, IDLE]
    legend = [(name, layer_colour(name)) for name in shown]
    subtitle = (
        f"{int(total)} samples; colour = layer charged for the frame's own samples; click to zoom"
    )
    return _svg(boxes, total or 1.0, max_depth, title, subtitle, legend)


def write_flamegraph(
    stacks: Iterable[Stack],
    path: Path | str,
    rules: RuleSet | None = None,
    title: str = "wsprof flamegraph",
) -> Path:
    """Write :func:`flamegraph_svg` to ``path``."""
    p = Path(path)
    p.write_text(flamegraph_svg(stacks, rules, title), encoding="utf-8")
    return p


def _diff_colour(delta: float, max_abs: float) -> str:
    t = min(abs(delta) / max_abs, 1.0) if max_abs else 0.0
    fade = round(235 - 175 * t)
    if delta > 0:
        return f"#ff{fade:02x}{fade:02x}"
    if delta < 0:
        return f"#{fade:02x}{fade:02x}ff"
    return "#ebebeb"


def diff_flamegraph_svg(
    a: Sequence[Stack],
    b: Sequence[Stack],
    messages_a: int | None = None,
    messages_b: int | None = None,
    title: str = "wsprof differential flamegraph (B against A)",
) -> str:
    """Render B against A, normalised per message when both counts are known, else per sample."""
    total_a = sum(s.count for s in a)
    total_b = sum(s.count for s in b)
    if messages_a is not None and messages_b is not None and messages_a > 0 and messages_b > 0:
        per_msg = True
        scale_a, scale_b, unit = 1000.0 / messages_a, 1000.0 / messages_b, "samples per 1k messages"
    else:
        per_msg = False
        scale_a = 100.0 / total_a if total_a else 0.0
        scale_b = 100.0 / total_b if total_b else 0.0
        unit = "% of all samples"
    root = _Node("all")
    _add(root, a, scale_a, into_b=False, comparable=True)
    _add(root, b, scale_b, into_b=True, comparable=True)
    total = (root.a + root.b) / 2

    def mean(n: _Node) -> float:
        return (n.a + n.b) / 2

    placed, max_depth = _layout(root, mean, total * MIN_PX / (WIDTH - 2 * PAD))
    max_abs = max((abs(n.b - n.a) for n, _, _, _ in placed), default=0.0)
    boxes = []
    for node, _, x, depth in placed:
        delta = node.b - node.a
        rel = f" ({delta / node.a:+.1%})" if node.a else " (new in B)"
        tip = (
            f"{node.name}\nA: {node.a:.4g} {unit}\nB: {node.b:.4g} {unit}\ndelta: {delta:+.4g}{rel}"
        )
        boxes.append(_Box(x, mean(node), depth, node.name, _diff_colour(delta, max_abs), tip))
    how = (
        f"per message (A: {messages_a} msgs, B: {messages_b} msgs)"
        if per_msg
        else "per sample (message counts unknown)"
    )
    subtitle = (
        f"A: {total_a} samples, B: {total_b} samples; normalised {how}; width = mean of A and B"
    )
    legend = [
        ("B grew", _diff_colour(1, 1)),
        ("B shrank", _diff_colour(-1, 1)),
        ("unchanged", "#ebebeb"),
    ]
    return _svg(boxes, total or 1.0, max_depth, title, subtitle, legend)


def write_diff_flamegraph(
    a: Sequence[Stack],
    b: Sequence[Stack],
    path: Path | str,
    messages_a: int | None = None,
    messages_b: int | None = None,
    title: str = "wsprof differential flamegraph (B against A)",
) -> Path:
    """Write :func:`diff_flamegraph_svg` to ``path``."""
    p = Path(path)
    p.write_text(diff_flamegraph_svg(a, b, messages_a, messages_b, title), encoding="utf-8")
    return p
