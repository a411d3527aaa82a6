"""Terminal output of ``wsprof tune serialization``: the table, the problems, the advice."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from wsprof.report.micro import format_ns
from wsprof.tune.advice import cost_ns


def _size(n: int) -> str:
    return f"{n} B" if n < 10_000 else f"{n / 1024:.0f} KiB"


def _ns(value: float | None) -> str:
    return "-" if value is None else format_ns(value)


def _compatible(result: dict[str, Any], count: int) -> str:
    if result["compatible"]:
        return "yes"
    timed = result.get("samples_timed", count)
    return "[red]no[/] (see below)" + (f"; timed on {timed} of {count}" if timed < count else "")


def tune_table(doc: dict[str, Any]) -> Table:
    """One row per serializer: ns per message, bytes on the wire, compatible or not."""
    samples = doc["samples"]
    table = Table(
        title=f"wsprof tune serialization: {samples['count']} samples from {samples['source']}, "
        f"{_size(samples['min_bytes'])} to {_size(samples['max_bytes'])} "
        "(ns per message, pyperf median; a mean over the samples)",
        title_justify="left",
    )
    for name in ("serializer", "wire", "dumps", "loads", "dumps+loads", "speedup vs json", "bytes"):
        table.add_column(name, justify="left" if name in ("serializer", "wire") else "right")
    table.add_column("compatible")
    base = next((cost_ns(r) for r in doc["results"] if r["serializer"] == "json"), None)
    for r in doc["results"]:
        cost = cost_ns(r)
        table.add_row(
            r["serializer"],
            r["wire"],
            _ns(r["dumps_ns"]),
            _ns(r["loads_ns"]),
            _ns(cost),
            f"{base / cost:.2f}x" if base and cost else "-",
            "-" if r["bytes"] is None else f"{r['bytes']:.0f}",
            _compatible(r, samples["count"]),
        )
    return table


def print_tune(console: Console, doc: dict[str, Any]) -> None:
    """The table, each incompatible serializer's problems, the configuration, the projection."""
    console.print(tune_table(doc))
    for r in doc["results"]:
        for problem in r["problems"]:
            console.print(f"[red]{r['serializer']}[/]: {escape(problem)}", soft_wrap=True)
    for line in doc.get("client_notes", []):
        console.print(f"[yellow]note:[/] {escape(line)}", soft_wrap=True)
    rec = doc["recommendation"]
    if rec is None:
        console.print(
            "no serializer round-trips every sample unchanged: the values named above are what "
            "to change in your messages (or keep them off the wire) before switching"
        )
    else:
        speedup = rec["speedup_vs_json"]
        faster = f" ({speedup:.2f}x json's dumps+loads)" if speedup else ""
        console.print(f"\n[bold]best compatible choice: {rec['serializer']}[/]{faster}")
        if rec.get("within_noise"):
            console.print(
                f"within this run's spread of it: {', '.join(rec['within_noise'])} "
                "(their order is noise here; any of them will do, or rerun on a quiet machine)"
            )
        console.print(escape(rec["server"]), highlight=False)
        console.print(f"client change: {escape(rec['client'])}", soft_wrap=True)
        alt = rec.get("without_client_change")
        if alt:
            console.print(f"\nwithout a client change: [bold]{alt['serializer']}[/]")
            console.print(escape(alt["server"]), highlight=False)
    projection = doc.get("projection")
    if projection:
        _print_projection(console, projection)
    harness = doc["harness"]
    console.print(
        f"\npyperf {harness['mode']} mode, {harness['wall_s']:.0f} s wall; dumps/loads are "
        "python-socketio's calls (json= dumps(data, separators) / loads(text); msgpack packs "
        "the packet dict); bytes exclude the WebSocket frame header.",
        soft_wrap=True,
    )


def _print_projection(console: Console, projection: dict[str, Any]) -> None:
    table = Table(
        title=f"projected server CPU saving per message, scenario {projection['scenario']} "
        f"-> {projection['to']}",
        title_justify="left",
    )
    for name in ("variant", "serializer", "json layer", "server CPU", "saving", "share"):
        table.add_column(name, justify="left" if name in ("variant", "serializer") else "right")
    for v in projection["variants"]:
        table.add_row(
            str(v["variant"]),
            str(v["serializer"] or "-"),
            "-" if v["json_us_per_msg"] is None else f"{v['json_us_per_msg']:.2f} µs",
            "-" if v["server_cpu_us_per_msg"] is None else f"{v['server_cpu_us_per_msg']:.1f} µs",
            "-" if v["saving_us_per_msg"] is None else f"{v['saving_us_per_msg']:.2f} µs",
            "-" if v["saving_share_of_cpu"] is None else f"{v['saving_share_of_cpu']:.1%}",
        )
    console.print()
    console.print(table)
    for assumption in projection["assumptions"]:
        console.print(f"assumes: {escape(assumption)}", soft_wrap=True)
