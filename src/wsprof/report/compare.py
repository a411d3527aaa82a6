"""Compare two wsprof results: pure comparisons (documents in, changes out) and their tables.

Scenario results compare variant by variant, with a change counted only when
it exceeds both runs' spread; micro results compare row by row. File reading
and exit codes belong to ``wsprof.commands.compare``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from rich.markup import escape
from rich.table import Table

from wsprof.errors import WsprofError

SCHEMAS = ("wsprof.scenario/1", "wsprof.micro/1")
UNDECIDED = "unknown (1 window)"
ONE_WINDOW_NOTE = (
    "one measurement window per variant cannot show significance (no spread to judge a change "
    "by): rerun both with --repeats 2 or more (not --quick); exit status 3 means undecided"
)
_MICRO_KEY = ("layer", "case", "variant", "payload")


def _fail(where: str, what: str) -> WsprofError:
    return WsprofError(f"{where}: {what}")


def _number(value: Any, where: str, positive: bool = True) -> float:
    """A finite number (> 0, or >= 0 when not ``positive``); bools and NaN are not numbers."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _fail(where, f"expected a number, not {type(value).__name__}")
    try:
        number = float(value)
    except OverflowError:
        number = math.inf
    if not math.isfinite(number) or number < 0 or (positive and number == 0):
        wanted = "a positive finite number" if positive else "a finite number >= 0"
        raise _fail(where, f"expected {wanted}, not {value!r:.40}")
    return number


def _field(doc: dict[str, Any], key: str, where: str, kind: type | tuple[type, ...]) -> Any:
    if key not in doc:
        raise _fail(f"{where}.{key}", "missing")
    value = doc[key]
    if not isinstance(value, kind) or isinstance(value, bool):
        raise _fail(f"{where}.{key}", f"wrong type {type(value).__name__}")
    return value


def _numeric(doc: dict[str, Any], key: str, where: str, positive: bool = True) -> float:
    return _number(_field(doc, key, where, (int, float)), f"{where}.{key}", positive)


def _check_variant(v: Any, where: str) -> None:
    if not isinstance(v, dict):
        raise _fail(where, "expected an object")
    _field(v, "name", where, str)
    if _field(v, "status", where, str) != "ok":
        return  # a failed variant is listed as not comparable; nothing else is read
    _numeric(v, "server_cpu_us_per_msg", where)
    _numeric(v, "throughput_msgs_per_s", where)
    spread = _field(v, "server_cpu", where, dict)
    _numeric(spread, "median", f"{where}.server_cpu")
    _numeric(spread, "mad", f"{where}.server_cpu", positive=False)
    n = _field(spread, "n", f"{where}.server_cpu", int)
    if n < 1:
        raise _fail(f"{where}.server_cpu.n", f"expected a count >= 1, not {n}")


def _check_micro_row(r: Any, where: str) -> None:
    if not isinstance(r, dict):
        raise _fail(where, "expected an object")
    for key in _MICRO_KEY[:3]:
        _field(r, key, where, str)
    if "payload" not in r:
        raise _fail(f"{where}.payload", "missing")
    if r["payload"] is not None and not isinstance(r["payload"], str):
        raise _fail(f"{where}.payload", f"wrong type {type(r['payload']).__name__}")
    _numeric(r, "ns_per_op", where)


def check_document(doc: Any, source: str) -> dict[str, Any]:
    """``doc`` if it is a result ``compare`` can read whole; else a WsprofError naming the key.

    Every key a comparison reads is checked here (present, right type, finite,
    positive where it divides), so a hand-edited or truncated result is one
    line, never a traceback halfway through a table.
    """
    if not isinstance(doc, dict) or doc.get("schema") not in SCHEMAS:
        raise WsprofError(f"{source}: not a wsprof result ({' or '.join(SCHEMAS)})")
    if doc["schema"] == "wsprof.micro/1":
        rows = _field(doc, "results", source, list)
        for i, r in enumerate(rows):
            _check_micro_row(r, f"{source}: results[{i}]")
        return doc
    _field(doc, "scenario", source, str)
    variants = _field(doc, "variants", source, list)
    if not variants:
        raise _fail(f"{source}: variants", "empty")
    for i, v in enumerate(variants):
        _check_variant(v, f"{source}: variants[{i}]")
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
    def windows(self) -> int:
        """The fewer measurement windows of the two runs (1: no spread to judge by)."""
        assert self.before is not None
        return min(int(self.before["server_cpu"]["n"]), int(self.after["server_cpu"]["n"]))

    @property
    def verdict(self) -> str:
        if not self.comparable:
            return "not comparable"
        if self.windows < 2:
            return UNDECIDED
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


def undecided(changes: Sequence[VariantChange]) -> int:
    """Comparable variants that one window (in either run) leaves without a verdict."""
    return sum(c.verdict == UNDECIDED for c in changes)


def scenario_table(changes: Sequence[VariantChange], title: str) -> Table:
    table = Table(title=escape(title))
    for col in ("variant", "server CPU µs/msg", "change", "msgs/s", "change", "verdict"):
        table.add_column(col, justify="left" if col in ("variant", "verdict") else "right")
    for c in changes:
        if c.before is None or not c.comparable:
            table.add_row(escape(c.name), "-", "-", "-", "-", c.verdict)
            continue
        old, new = c.before, c.after
        table.add_row(
            escape(c.name),
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
    table = Table(title=escape(title))
    for col in ("layer", "case", "variant", "payload", "A ns/op", "B ns/op", "B/A - 1"):
        table.add_column(col, justify="right" if "ns" in col or "/" in col else "left")
    for c in changes:
        r = c.after
        table.add_row(
            escape(r["layer"]),
            escape(r["case"]),
            escape(r["variant"]),
            escape(r["payload"] or "-"),
            f"{c.before['ns_per_op']:,.0f}",
            f"{r['ns_per_op']:,.0f}",
            f"{c.change_pct:+.1f}%",
        )
    return table
