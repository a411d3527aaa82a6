"""`wsprof compare`: two scenario results, variant by variant, for CI regression checks."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from wsprof.errors import WsprofError


def _load(path: Path) -> dict[str, Any]:
    try:
        doc = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise WsprofError(f"{path}: no such file") from None
    except json.JSONDecodeError as exc:
        raise WsprofError(f"{path}: not JSON ({exc})") from None
    if doc.get("schema") != "wsprof.scenario/1":
        raise WsprofError(f"{path}: not a wsprof.scenario/1 result (schema {doc.get('schema')!r})")
    return doc


def significant(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """A change counts when the medians differ by more than both spreads together (3 MAD each)."""
    return abs(b["median"] - a["median"]) > 3 * (a["mad"] + b["mad"]) and a["n"] > 1 and b["n"] > 1


def compare_command(baseline: Path, candidate: Path) -> int:
    a, b = _load(baseline), _load(candidate)
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
            v["name"], f"{old['server_cpu_us_per_msg']:.1f} → {v['server_cpu_us_per_msg']:.1f}",
            f"{cpu_change:+.1f}%", f"{old['throughput_msgs_per_s']:,.0f} → {v['throughput_msgs_per_s']:,.0f}",
            f"{thr_change:+.1f}%", verdict,
        )
    Console().print(table)
    return 1 if regressions else 0
