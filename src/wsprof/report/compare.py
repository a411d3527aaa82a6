"""Compare two wsprof results: pure comparisons (documents in, changes out) and their tables.

Scenario results compare variant by variant, with a change counted only when
it exceeds both runs' spread; micro results compare row by row. File reading
and exit codes belong to ``wsprof.commands.compare``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from rich.table import Table

from wsprof.errors import WsprofError

SCHEMAS = ("wsprof.scenario/1", "wsprof.micro/1")
_MICRO_KEY = ("layer", "case", "variant", "payload")


def check_document(doc: Any, source: str) -> dict[str, Any]:
    """``doc`` if it is a result ``compare`` understands; else a WsprofError naming ``source``."""
    if not isinstance(doc, dict) or doc.get("schema") not in SCHEMAS:
        raise WsprofError(f"{source}: not a wsprof result ({' or '.join(SCHEMAS)})")
    return doc


def check_pair(a: dict[str, Any], b: dict[str, Any]) -> None:
    """Only results of one schema compare."""
    if a["schema"] != b["schema"]:
        raise WsprofError(f"cannot compare a {a['schema']} result with a {b['schema']} one")


def significant(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """A change counts when the medians differ by more than both spreads together (3 MAD each)."""
    return abs(b["median"] - a["median"]) > 3 * (a["mad"] + b["mad"]) and a["n"] > 1 and b["n"] > 1


@dataclass(frozen=True)
class VariantChange:
    """One variant of the candidate against the baseline; ``before`` is None when not comparable."""

    name: str
    before: dict[str, Any] | None
    after: dict[str, Any]

    @property
    def comparable(self) -> bool:
        return self.before is not None and self.after["status"] == "ok"

    def _change(self, key: str) -> float:
        assert self.before is not None
        return 100 * (self.after[key] / self.before[key] - 1)

    @property
    def cpu_change_pct(self) -> float:
        """Change of server CPU µs/message, in percent (positive: slower)."""
        return self._change("server_cpu_us_per_msg")

    @property
    def throughput_change_pct(self) -> float:
        return self._change("throughput_msgs_per_s")

    @property
    def significant(self) -> bool:
        assert self.before is not None
        return significant(self.before["server_cpu"], self.after["server_cpu"])

    @property
    def verdict(self) -> str:
        if not self.comparable:
            return "not comparable"
        if not self.significant:
            return "same (within spread)"
        return "slower" if self.cpu_change_pct > 0 else "faster"


def compare_scenarios(a: dict[str, Any], b: dict[str, Any]) -> list[VariantChange]:
    """Every variant of ``b`` against the same variant of ``a`` (if it ran there)."""
    base = {v["name"]: v for v in a["variants"] if v["status"] == "ok"}
    return [VariantChange(v["name"], base.get(v["name"]), v) for v in b["variants"]]


def regressions(changes: Sequence[VariantChange]) -> int:
    """Variants whose server CPU per message grew beyond the spread."""
    return sum(c.verdict == "slower" for c in changes)


def scenario_table(changes: Sequence[VariantChange], title: str) -> Table:
    table = Table(title=title)
    for col in ("variant", "server CPU µs/msg", "change", "msgs/s", "change", "verdict"):
        table.add_column(col, justify="left" if col in ("variant", "verdict") else "right")
    for c in changes:
        if c.before is None or not c.comparable:
            table.add_row(c.name, "-", "-", "-", "-", c.verdict)
            continue
        old, new = c.before, c.after
        table.add_row(
            c.name,
            f"{old['server_cpu_us_per_msg']:.1f} → {new['server_cpu_us_per_msg']:.1f}",
            f"{c.cpu_change_pct:+.1f}%",
            f"{old['throughput_msgs_per_s']:,.0f} → {new['throughput_msgs_per_s']:,.0f}",
            f"{c.throughput_change_pct:+.1f}%",
            c.verdict,
        )
    return table


@dataclass(frozen=True)
class RowChange:
    """One micro row present in both results."""

    before: dict[str, Any]
    after: dict[str, Any]

    @property
    def change_pct(self) -> float:
        return 100 * (self.after["ns_per_op"] / self.before["ns_per_op"] - 1)


def compare_micro(a: dict[str, Any], b: dict[str, Any]) -> list[RowChange]:
    """The rows of ``b`` that ``a`` also measured, in ``b``'s order."""
    old = {tuple(r[k] for k in _MICRO_KEY): r for r in a["results"]}
    pairs = ((old.get(tuple(r[k] for k in _MICRO_KEY)), r) for r in b["results"])
    return [RowChange(prev, r) for prev, r in pairs if prev is not None]


def micro_table(changes: Sequence[RowChange], title: str) -> Table:
    table = Table(title=title)
    for col in ("layer", "case", "variant", "payload", "A ns/op", "B ns/op", "B/A - 1"):
        table.add_column(col, justify="right" if "ns" in col or "/" in col else "left")
    for c in changes:
        r = c.after
        table.add_row(
            r["layer"],
            r["case"],
            r["variant"],
            r["payload"] or "-",
            f"{c.before['ns_per_op']:,.0f}",
            f"{r['ns_per_op']:,.0f}",
            f"{c.change_pct:+.1f}%",
        )
    return table
