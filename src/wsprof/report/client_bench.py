"""The client-bench table: each client's CPU per message next to the kernel floor."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table


def render_client_bench(document: dict[str, Any], console: Console) -> None:
    """Print the rows of a ``wsprof.client-bench/1`` document and the fast/reference ratios."""
    floor = document["floor_us_per_msg"]
    table = Table(
        title=f"wsprof client-bench (floor: one send + one recv = {floor:.2f} µs CPU)",
    )
    for col in (
        "client",
        "conns",
        "in flight",
        "msgs/s",
        "CPU µs/msg",
        "x floor",
        "p50 µs",
        "p99 µs",
    ):
        table.add_column(col, justify="right", no_wrap=True)
    for row in document["results"]:
        lat = row["latency_us"]
        table.add_row(
            row["client"],
            str(row["connections"]),
            str(row["in_flight"]),
            f"{row['msgs_per_s']:,.0f}",
            f"{row['client_cpu_us_per_msg']:.2f}",
            f"{row['floor_multiple']:.2f}x",
            f"{lat['p50']:,.0f}",
            f"{lat['p99']:,.0f}",
        )
    console.print(table)
    for line in ratio_lines(document["results"]):
        console.print(line)
    if "broadcast" in document:
        console.print(broadcast_line(document["broadcast"]))
    console.print(
        "floor multiple = client CPU per round trip / floor; below 1.0 needs several "
        "messages per send and recv (write coalescing with k > 1 in flight)"
    )


def ratio_lines(results: list[dict[str, Any]]) -> list[str]:
    """'fast is N x cheaper than reference' for each connection count both clients ran."""
    lines = []
    single = [r for r in results if r["in_flight"] == 1]
    for conns in sorted({r["connections"] for r in single}):
        by_client = {r["client"]: r for r in single if r["connections"] == conns}
        fast, ref = by_client.get("fast"), by_client.get("reference")
        if fast and ref and fast["client_cpu_us_per_msg"] > 0:
            ratio = ref["client_cpu_us_per_msg"] / fast["client_cpu_us_per_msg"]
            lines.append(
                f"{conns} connection{'s' if conns > 1 else ''}: the fast client uses "
                f"{ratio:.1f}x less CPU per message than the reference client"
            )
    return lines


def broadcast_line(row: dict[str, Any]) -> str:
    """The fan-out ceiling: deliveries/s the fast broadcast client counts on one core."""
    line = (
        f"broadcast: the fast client counted {row['deliveries_per_s']:,.0f} deliveries/s from "
        f"the C fan-out server ({row['recipients']} recipients) at "
        f"{row['client_cpu_us_per_delivery']:.3f} µs CPU each: one core's ceiling is "
        f"{row['capacity_deliveries_per_s']:,.0f} deliveries/s"
    )
    if row["client_bound"]:
        line += " [bold yellow]client-bound[/]: a broadcast run near this rate measures the client"
    return line
