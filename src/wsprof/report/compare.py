"""Compare two wsprof results: pure comparisons (documents in, changes out) and their tables.

Scenario results compare variant by variant (an exact Mann-Whitney test over
the measurement windows' server CPU µs/message) and layer by layer (a
two-proportion test over the profiled samples); micro results compare row by
row. Results from different environments are told apart by ``env_differences``.
File reading and exit codes belong to ``wsprof.commands.compare``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TypeGuard

from rich.markup import escape
from rich.table import Table

from wsprof.errors import WsprofError
from wsprof.significance import (
    ALPHA,
    holm,
    mann_whitney_p,
    min_p_value,
    two_proportion_p,
    wilson_interval,
)

SCHEMAS = ("wsprof.scenario/1", "wsprof.micro/1")
UNDECIDED = "unknown (1 window)"
ONE_WINDOW_NOTE = (
    "too few measurement windows to show significance (one has no spread; a rank test needs "
    "4+4 to reach p < 0.05): rerun both with --repeats 5 (not --quick); exit status 3 means "
    "undecided"
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
    values = _field(spread, "values", f"{where}.server_cpu", list)
    if len(values) != n:
        raise _fail(f"{where}.server_cpu.values", f"expected {n} values (n), not {len(values)}")
    for i, value in enumerate(values):
        _number(value, f"{where}.server_cpu.values[{i}]")
    if "layers" in v:
        _check_layers(v, where)


def _check_layers(v: dict[str, Any], where: str) -> None:
    total = _field(v, "profile_samples", where, int)
    layers = _field(v, "layers", where, dict)
    for name, layer in layers.items():
        at = f"{where}.layers.{name}"
        if not isinstance(layer, dict):
            raise _fail(at, "expected an object")
        samples = _field(layer, "samples", at, int)
        if not 0 <= samples <= total:
            raise _fail(f"{at}.samples", f"expected 0 to profile_samples ({total}), not {samples}")
        _numeric(layer, "us_per_msg", at, positive=False)


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


def _values(spread: dict[str, Any]) -> list[float]:
    return [float(x) for x in spread["values"]]


def _has_values(spread: Any) -> TypeGuard[dict[str, Any]]:
    """A summary with numeric per-window values (``throughput`` is optional in a result)."""
    if not isinstance(spread, dict) or not isinstance(spread.get("values"), list):
        return False
    values = spread["values"]
    return bool(values) and all(
        isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) for x in values
    )


def window_p(a: dict[str, Any], b: dict[str, Any]) -> float:
    """Exact Mann-Whitney p over the per-window values of two ``server_cpu`` summaries."""
    return mann_whitney_p(_values(a), _values(b))


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
    def throughput_p(self) -> float | None:
        """The same test over the windows' msgs/s, where both results list them (information)."""
        assert self.before is not None
        before, after = self.before.get("throughput"), self.after.get("throughput")
        if not (_has_values(before) and _has_values(after)):
            return None
        return mann_whitney_p(_values(before), _values(after))

    @property
    def window_counts(self) -> tuple[int, int]:
        assert self.before is not None
        return len(self.before["server_cpu"]["values"]), len(self.after["server_cpu"]["values"])

    @property
    def windows(self) -> int:
        """The fewer measurement windows of the two runs (1: no spread to judge by)."""
        return min(self.window_counts)

    @property
    def p_value(self) -> float:
        """Two-sided p that the windows' server CPU µs/message did not change."""
        assert self.before is not None
        return window_p(self.before["server_cpu"], self.after["server_cpu"])

    @property
    def testable(self) -> bool:
        """Enough windows for the test to reach ALPHA at all (4+4, 3+5, 2+8, ...)."""
        return min_p_value(*self.window_counts) < ALPHA

    @property
    def significant(self) -> bool:
        return self.comparable and self.testable and self.p_value < ALPHA

    @property
    def verdict(self) -> str:
        if not self.comparable:
            return "not comparable"
        if self.windows < 2:
            return UNDECIDED
        if not self.testable:
            n, m = self.window_counts
            return f"unknown ({n}+{m} windows)"
        if not self.significant:
            return "not significant"
        return "slower" if self.cpu_change_pct > 0 else "faster"

    @property
    def undecided(self) -> bool:
        return self.verdict.startswith("unknown")


def compare_scenarios(a: dict[str, Any], b: dict[str, Any]) -> list[VariantChange]:
    """Every variant of ``b`` against the same variant of ``a`` (if it ran there)."""
    base = {v["name"]: v for v in a["variants"] if v["status"] == "ok"}
    return [VariantChange(v["name"], base.get(v["name"]), v) for v in b["variants"]]


def regressions(changes: Sequence[VariantChange], above_pct: float | None = None) -> int:
    """Variants significantly slower per message (and by more than ``above_pct`` if given)."""
    return sum(
        c.verdict == "slower" and (above_pct is None or c.cpu_change_pct > above_pct)
        for c in changes
    )


def undecided(changes: Sequence[VariantChange]) -> int:
    """Comparable variants with too few windows (in either run) for a verdict."""
    return sum(c.undecided for c in changes)


def scenario_table(changes: Sequence[VariantChange], title: str) -> Table:
    table = Table(title=escape(title))
    columns = ("variant", "server CPU µs/msg", "change", "p", "msgs/s", "change", "p ", "verdict")
    for col in columns:
        table.add_column(col, justify="left" if col in ("variant", "verdict") else "right")
    for c in changes:
        if c.before is None or not c.comparable:
            table.add_row(escape(c.name), "-", "-", "-", "-", "-", "-", c.verdict)
            continue
        old, new = c.before, c.after
        table.add_row(
            escape(c.name),
            f"{old['server_cpu_us_per_msg']:.1f} → {new['server_cpu_us_per_msg']:.1f}",
            f"{c.cpu_change_pct:+.1f}%",
            f"{c.p_value:.3f}" if c.windows > 1 else "-",
            f"{old['throughput_msgs_per_s']:,.0f} → {new['throughput_msgs_per_s']:,.0f}",
            f"{c.throughput_change_pct:+.1f}%",
            "-" if c.windows < 2 or (tp := c.throughput_p) is None else f"{tp:.3f}",
            c.verdict,
        )
    return table


@dataclass(frozen=True)
class LayerChange:
    """One layer of one variant: its share of the profiled samples in each run."""

    variant: str
    layer: str
    samples: tuple[int, int]
    totals: tuple[int, int]
    us_per_msg: tuple[float, float]
    p_value: float  # Holm-adjusted over every layer of the comparison

    def share(self, side: int) -> float:
        return self.samples[side] / self.totals[side] if self.totals[side] else 0.0

    def interval(self, side: int) -> tuple[float, float]:
        return wilson_interval(self.samples[side], self.totals[side])

    @property
    def verdict(self) -> str:
        if self.p_value >= ALPHA:
            return "not significant"
        return "larger share" if self.share(1) > self.share(0) else "smaller share"


def _layer(v: dict[str, Any], name: str) -> tuple[int, float]:
    entry = v["layers"].get(name, {})
    return int(entry.get("samples", 0)), float(entry.get("us_per_msg", 0.0))


def compare_layers(changes: Sequence[VariantChange]) -> list[LayerChange]:
    """Per layer of every comparable, profiled variant: the share test over the samples.

    Shares come from one profiled window each, so their spread is the sampling
    one (binomial); py-spy's samples are not fully independent, so the test is,
    if anything, too ready to call a change: read small shifts with care.
    """
    rows: list[tuple[str, str, tuple[int, int], tuple[int, int], tuple[float, float]]] = []
    for c in changes:
        if not c.comparable or c.before is None:
            continue
        a, b = c.before, c.after
        if "layers" not in a or "layers" not in b:
            continue
        totals = (int(a["profile_samples"]), int(b["profile_samples"]))
        for name in dict.fromkeys([*a["layers"], *b["layers"]]):
            (sa, ua), (sb, ub) = _layer(a, name), _layer(b, name)
            if sa or sb:
                rows.append((c.name, name, (sa, sb), totals, (ua, ub)))
    raw = [two_proportion_p(s[0], t[0], s[1], t[1]) for _, _, s, t, _ in rows]
    return [
        LayerChange(variant, layer, s, t, us, p)
        for (variant, layer, s, t, us), p in zip(rows, holm(raw), strict=True)
    ]


def layer_table(changes: Sequence[LayerChange], title: str) -> Table:
    table = Table(title=escape(title))
    columns = ("variant", "layer", "share A [95%]", "share B [95%]", "µs/msg", "p", "verdict")
    for col in columns:
        table.add_column(col, justify="left" if col in ("variant", "layer", "verdict") else "right")

    def share(c: LayerChange, side: int) -> str:
        lo, hi = c.interval(side)
        return f"{100 * c.share(side):.1f}% [{100 * lo:.1f}-{100 * hi:.1f}]"

    for c in changes:
        table.add_row(
            escape(c.variant),
            escape(c.layer),
            share(c, 0),
            share(c, 1),
            f"{c.us_per_msg[0]:.1f} → {c.us_per_msg[1]:.1f}",
            f"{c.p_value:.3f}",
            c.verdict,
        )
    return table


ENV_KEYS = (
    "python",
    "implementation",
    "cpu_model",
    "cpu_count",
    "cpu_affinity",
    "server_cpu",
    "client_cpus",
    "client",
)
"""Facts of the ``env`` block that must match for two results to compare (with ``packages``)."""


def _packages(env: dict[str, Any]) -> dict[str, Any]:
    packages = env.get("packages")
    return packages if isinstance(packages, dict) else {}


def env_differences(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    """What differs between the environments of two results, one phrase each (empty: same)."""
    env_a, env_b = a.get("env"), b.get("env")
    if not isinstance(env_a, dict) or not isinstance(env_b, dict):
        missing = " and ".join(
            n for n, e in (("A", env_a), ("B", env_b)) if not isinstance(e, dict)
        )
        return [f"no env block in {missing}"]
    diffs = [
        f"{key} {env_a.get(key)!r:.40} vs {env_b.get(key)!r:.40}"
        for key in ENV_KEYS
        if env_a.get(key) != env_b.get(key)
    ]
    pkg_a, pkg_b = _packages(env_a), _packages(env_b)
    for name in sorted(set(pkg_a) | set(pkg_b)):
        if pkg_a.get(name) != pkg_b.get(name):
            diffs.append(f"{name} {pkg_a.get(name)} vs {pkg_b.get(name)}")
    return diffs


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
