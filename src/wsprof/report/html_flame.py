"""Flamegraph data for the HTML report: folded stacks -> a compact, pruned call tree.

The report draws its flamegraphs in the browser from this tree (report.js)
rather than inlining the SVG files: one page holds several graphs, and the
page adds search and values in µs per message, which the standalone SVGs
(counted in samples) do not carry. Frames are coloured by the same
top-down layer walk as profiling/flamegraph.py, and idle frames' own
samples are left out, as attribution leaves them out of the shares, so a
graph's root equals the variant's attributed server CPU µs/message.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from wsprof.profiling.flamegraph import comparable_frame
from wsprof.profiling.folded import Stack
from wsprof.profiling.layers import IDLE, INHERIT, OTHER, RuleSet

PRUNE = 0.0005  # frames narrower than this fraction of the root are folded into their parent
_DIGITS = 4


@dataclass
class _Node:
    count: float = 0.0
    children: dict[str, _Node] = field(default_factory=dict)


def _tree(stacks: Sequence[Stack], comparable: bool) -> _Node:
    root = _Node()
    for stack in stacks:
        node = root
        node.count += stack.count
        for depth, raw in enumerate(stack.frames):
            name = comparable_frame(raw) if comparable and depth < 2 else raw
            node = node.children.setdefault(name, _Node())
            node.count += stack.count
    return root


def _busy(node: _Node, layer: str, rules: RuleSet, memo: dict[int, float]) -> float:
    """Samples under ``node`` that are not idle (idle frames' own samples are waiting, not cost)."""
    own = node.count - sum(c.count for c in node.children.values())
    total = 0.0 if layer == IDLE else own
    for name, child in node.children.items():
        decided = rules.decide(name)
        total += _busy(child, layer if decided == INHERIT else decided, rules, memo)
    memo[id(node)] = total
    return total


class _Names:
    """One table of frame names per graph: frames repeat across branches."""

    def __init__(self) -> None:
        self.index: dict[str, int] = {}

    def __call__(self, name: str) -> int:
        return self.index.setdefault(name, len(self.index))

    def as_list(self) -> list[str]:
        return list(self.index)


def flame_data(
    stacks: Sequence[Stack], rules: RuleSet, unit_per_sample: float, unit: str
) -> dict[str, Any]:
    """A variant's graph: nodes ``[name, value, layer, children]`` in ``unit`` (e.g. µs/msg)."""
    root = _tree(stacks, comparable=False)
    memo: dict[int, float] = {}
    busy_root = _busy(root, OTHER, rules, memo)
    layers = [*rules.layers]
    names = _Names()
    floor = busy_root * PRUNE

    def emit(name: str, node: _Node, layer: str) -> list[Any]:
        kids = []
        for child_name in sorted(node.children):
            child = node.children[child_name]
            if memo[id(child)] <= floor or memo[id(child)] == 0:
                continue
            decided = rules.decide(child_name)
            child_layer = layer if decided == INHERIT else decided
            if child_layer not in layers:
                layers.append(child_layer)
            kids.append(emit(child_name, child, child_layer))
        value = round(memo[id(node)] * unit_per_sample, _DIGITS)
        return [names(name), value, layers.index(layer), kids]

    tree = emit("all", root, OTHER)
    return {"kind": "flame", "unit": unit, "names": names.as_list(), "layers": layers, "root": tree}


def diff_data(
    a: Sequence[Stack],
    b: Sequence[Stack],
    rules: RuleSet,
    unit_per_sample: tuple[float, float],
    unit: str,
) -> dict[str, Any]:
    """B against A: nodes ``[name, a, b, children]``, drawn as wide as the mean of a and b."""
    ta, tb = _tree(a, comparable=True), _tree(b, comparable=True)
    memo_a: dict[int, float] = {}
    memo_b: dict[int, float] = {}
    _busy(ta, OTHER, rules, memo_a)
    _busy(tb, OTHER, rules, memo_b)
    ua, ub = unit_per_sample
    names = _Names()
    floor = (memo_a[id(ta)] * ua + memo_b[id(tb)] * ub) / 2 * PRUNE

    def emit(name: str, na: _Node | None, nb: _Node | None) -> list[Any] | None:
        va = memo_a[id(na)] * ua if na is not None else 0.0
        vb = memo_b[id(nb)] * ub if nb is not None else 0.0
        if (va + vb) / 2 <= floor or va + vb == 0:
            return None
        ka = na.children if na is not None else {}
        kb = nb.children if nb is not None else {}
        kids = [
            k
            for child in sorted(set(ka) | set(kb))
            if (k := emit(child, ka.get(child), kb.get(child))) is not None
        ]
        return [names(name), round(va, _DIGITS), round(vb, _DIGITS), kids]

    tree = emit("all", ta, tb) or [names("all"), 0.0, 0.0, []]
    return {"kind": "diff", "unit": unit, "names": names.as_list(), "root": tree}
