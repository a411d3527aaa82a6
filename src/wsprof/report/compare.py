"""`wsprof compare`: two scenario results, variant by variant, for CI regression checks."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rich.table import Table

from wsprof.errors import WsprofError
from wsprof.report.console import make_console

SCHEMAS = ("wsprof.scenario/1", "wsprof.micro/1")


def _load(path: Path) -> dict[str, Any]:
    try:
        doc = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise WsprofError(f"{path}: no such file") from None
    except json.JSONDecodeError as exc:
        raise WsprofError(f"{path}: not JSON ({exc})") from None
    if not isinstance(doc, dict) or doc.get("schema") not in SCHEMAS:
        raise WsprofError(f"{path}: not a wsprof result ({' or '.join(SCHEMAS)})")
    return doc


def significant(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """A change counts when the medians differ by more than both spreads together (3 MAD each)."""
    return abs(b["median"] - a["median"]) > 3 * (a["mad"] + b["mad"]) and a["n"] > 1 and b["n"] > 1


def compare_micro(a: dict[str, Any], b: dict[str, Any], title: str) -> Table:
    """Row by row: the medians of two micro runs and their difference."""
    key = ("layer", "case", "variant", "payload")
    old = {tuple(r[k] for k in key): r for r in a["results"]}
    table = Table(title=title)
    for col in ("layer", "case", "variant", "payload", "A ns/op", "B ns/op", "B/A - 1"):
        table.add_column(col, justify="right" if "ns" in col or "/" in col else "left")
    for r in b["results"]:
        prev = old.get(tuple(r[k] for k in key))
        if prev is None:
            continue
        change = 100 * (r["ns_per_op"] / prev["ns_per_op"] - 1)
        table.add_row(
            r["layer"],
            r["case"],
            r["variant"],
            r["payload"] or "-",
            f"{prev['ns_per_op']:,.0f}",
            f"{r['ns_per_op']:,.0f}",
            f"{change:+.1f}%",
        )
    return table


def compare_command(baseline: Path, candidate: Path) -> int:
    a, b = _load(baseline), _load(candidate)
    if a["schema"] != b["schema"]:
        raise WsprofError(f"cannot compare a {a['schema']} result with a {b['schema']} one")
    if a["schema"] == "wsprof.micro/1":
        make_console().print(compare_micro(a, b, f"wsprof micro: {baseline} → {candidate}"))
        return 0
    base = {v["name"]: v for v in a["variants"] if v["status"] == "ok"}
    table = Table(title=f"{a['scenario']}: {baseline} → {candidate}")
    for col in ("variant", "server CPU µs/msg", "change", "msgs/s", "change", "verdict"):
        table.add_column(col, justify="left" if col in ("variant", "verdict") else "right")
    regressions = 0
    for v in b["variants"]:
        old = base.get(v["name"])
        if old is None or v["status"] != "ok":
            table.add_row(v["name"], "-", "-", "-", "-", "not comparable")
            continue
        cpu_change = 100 * (v["server_cpu_us_per_msg"] / old["server_cpu_us_per_msg"] - 1)
        thr_change = 100 * (v["throughput_msgs_per_s"] / old["throughput_msgs_per_s"] - 1)
        sig = significant(old["server_cpu"], v["server_cpu"])
        verdict = "same (within spread)" if not sig else ("slower" if cpu_change > 0 else "faster")
        regressions += sig and cpu_change > 0
        table.add_row(
            v["name"],
            f"{old['server_cpu_us_per_msg']:.1f} → {v['server_cpu_us_per_msg']:.1f}",
            f"{cpu_change:+.1f}%",
            f"{old['throughput_msgs_per_s']:,.0f} → {v['throughput_msgs_per_s']:,.0f}",
            f"{thr_change:+.1f}%",
            verdict,
        )
    make_console().print(table)
    return 1 if regressions else 0
