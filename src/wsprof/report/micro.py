"""Terminal table for ``wsprof micro``: one section per layer, ratios to each case's baseline."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rich.console import Console
from rich.table import Table

from wsprof.env import environment
from wsprof.micro.harness import SCHEMA_ID


def format_ns(ns: float) -> str:
    """Three significant figures in the unit a reader expects for the magnitude."""
    if ns < 1e3:
        return f"{ns:.0f} ns" if ns >= 100 else f"{ns:.1f} ns"
    if ns < 1e6:
        return f"{ns / 1e3:.3g} µs"
    return f"{ns / 1e6:.3g} ms"


def micro_table(results: Sequence[dict[str, Any]], title: str | None = None) -> Table:
    table = Table(title=title, title_justify="left")
    table.add_column("layer")
    table.add_column("case")
    table.add_column("variant")
    table.add_column("payload")
    table.add_column("median", justify="right")
    table.add_column("± MAD", justify="right")
    table.add_column("p10", justify="right")
    table.add_column("values", justify="right")
    table.add_column("vs baseline", justify="right")
    previous_layer = None
    for r in results:
        if previous_layer is not None and r["layer"] != previous_layer:
            table.add_section()
        previous_layer = r["layer"]
        ratio = r.get("ratio_to_baseline")
        table.add_row(
            r["layer"],
            r["case"],
            r["variant"],
            r["payload"] or "-",
            format_ns(r["ns_per_op"]),
            format_ns(r["spread_ns"]),
            format_ns(r["p10_ns"]),
            str(r["values"]),
            "-" if ratio is None else f"{ratio:.2f}x",
        )
    return table


CONTENDED = 1.25  # median/p10 above this: the row spent much of its time on a contended CPU


def contention_note(results: Sequence[dict[str, Any]]) -> str | None:
    """Say so when the host was contended: medians then mix two CPU speeds."""
    contended = [r for r in results if r["p10_ns"] > 0 and r["ns_per_op"] / r["p10_ns"] > CONTENDED]
    if len(contended) < max(3, len(results) // 5):
        return None
    return (
        f"{len(contended)} of {len(results)} rows have a median over {CONTENDED:.2f}x their p10: "
        "the CPU was contended for part of the run (a shared host), so medians mix a fast and a "
        "slow speed; p10 tracks the uncontended cost and is the steadier figure to compare runs by"
    )


def print_micro(
    console: Console,
    results: Sequence[dict[str, Any]],
    notes: Sequence[str],
    settings: dict[str, Any],
    wall_s: float,
) -> None:
    """The table, then what was not measured and how the figures were obtained."""
    console.print(micro_table(results, title="wsprof micro: ns per operation (median)"))
    for note in notes:
        console.print(f"note: {note}")
    contention = contention_note(results)
    if contention:
        console.print(f"[yellow]note:[/] {contention}")
    side_by_side = f", {settings['jobs']} rows side by side" if settings.get("jobs", 1) > 1 else ""
    console.print(
        f"pyperf, {settings['mode']} mode: {settings.get('rounds', 1)} round(s) x "
        f"{settings['processes']} worker processes x {settings['values']} values (after "
        f"{settings['warmups']} warm-up, min time {settings['min_time']} s) per row, each row in "
        f"its own processes{side_by_side}; spread is the median absolute deviation; p10 is the "
        f"10th percentile; baseline: json, asyncio, eventlet. {wall_s:.0f} s wall."
    )


def micro_document(
    results: Sequence[dict[str, Any]], notes: Sequence[str], harness: dict[str, Any]
) -> dict[str, Any]:
    """The ``wsprof micro --json`` document: the rows, what was skipped, how and where."""
    return {
        "schema": SCHEMA_ID,
        "env": environment(harness=harness),
        "results": list(results),
        "notes": list(notes),
    }
