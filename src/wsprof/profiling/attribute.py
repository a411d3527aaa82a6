"""Charge every sampled stack to exactly one cost layer (leaf attribution).

The walk goes from the leaf towards the root and stops at the first frame
that decides (see layers.toml's header): so the layer is the one of the
innermost Python frame, unless a native frame or a rule said otherwise.
Shares exclude idle samples unless asked: waiting is not cost per message.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from wsprof.profiling.folded import Stack, process_split
from wsprof.profiling.layers import IDLE, INHERIT, OTHER, RuleSet, default_rules

SCHEMA = "wsprof.attribution/1"


@dataclass(frozen=True)
class LayerShare:
    """Samples charged to one layer and their fraction of ``total_samples``."""

    samples: int
    share: float


@dataclass(frozen=True)
class Attribution:
    """Per-layer samples and shares; ``total_samples`` excludes idle unless ``include_idle``."""

    total_samples: int
    layers: dict[str, LayerShare]
    idle_samples: int
    include_idle: bool

    def to_json(self) -> dict[str, Any]:
        """The ``wsprof.attribution/1`` document (every layer listed, zeros included)."""
        return {
            "schema": SCHEMA,
            "total_samples": self.total_samples,
            "layers": {
                name: {"samples": ls.samples, "share": ls.share} for name, ls in self.layers.items()
            },
            "idle": {"samples": self.idle_samples, "included": self.include_idle},
        }


def _leaf_layer(stack: str, rules: RuleSet) -> str:
    """The layer one stack is charged to (may be ``idle``), reading frames from the end only."""
    decide = rules.decide
    _, rest = process_split(stack)
    if rest is None:
        return OTHER
    pos = len(rest)
    while pos >= 0:
        i = rest.rfind(";", 0, pos)
        layer = decide(rest[i + 1 : pos])
        if layer != INHERIT:
            return layer
        pos = i
    return OTHER


def attribute(
    stacks: Iterable[Stack], rules: RuleSet | None = None, idle: bool = False
) -> Attribution:
    """Split samples by layer; with ``idle=False`` idle samples are counted apart, not shared."""
    rs = rules if rules is not None else default_rules()
    counts: dict[str, int] = dict.fromkeys(rs.layers, 0)
    for stack in stacks:
        layer = _leaf_layer(stack.text, rs)
        counts[layer] = counts.get(layer, 0) + stack.count
    idle_samples = counts.pop(IDLE, 0)
    if idle:
        counts[IDLE] = idle_samples
    total = sum(counts.values())
    layers = {name: LayerShare(n, n / total if total else 0.0) for name, n in counts.items()}
    return Attribution(total, layers, idle_samples, idle)


def no_samples_reason(attribution: Attribution) -> str | None:
    """Why ``attribution`` has nothing to show (a table of zeros), or None when it has samples."""
    if attribution.total_samples > 0:
        return None
    if attribution.idle_samples > 0:
        return (
            f"all {attribution.idle_samples} samples are idle (waiting, not cost); "
            "--idle shows them"
        )
    return "no samples (no stacks, or every count is 0)"


def layer_us_per_msg(attribution: Attribution, cpu_us_per_msg: float) -> dict[str, float]:
    """Apply layer shares (from a profiled window) to the clean window's CPU µs/message.

    Shares come from the perturbed, profiled run; the absolute figure comes
    from the unprofiled run: sampling perturbs the server it samples (py-spy
    reads its memory and, unless non-blocking, pauses it), so the profiled
    window's own CPU figure is not the clean one.
    """
    return {name: ls.share * cpu_us_per_msg for name, ls in attribution.layers.items()}
