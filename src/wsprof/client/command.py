"""`wsprof load`: drive any server and report what the client saw."""

from __future__ import annotations

import argparse
import sys

from rich.console import Console
from rich.table import Table

from wsprof.client.base import LoadConfig, LoadResult
from wsprof.client.driver import run_load
from wsprof.env import environment
from wsprof.payloads import get_payload
from wsprof.report.console import make_console
from wsprof.report.jsonout import write_json

SCHEMA = "wsprof.load/1"


def load_document(config: LoadConfig, result: LoadResult) -> dict:
    return {
        "schema": SCHEMA,
        "url": config.url,
        "mode": config.mode,
        "connections": config.connections,
        "in_flight": None if config.open_loop else config.in_flight,
        "rate": config.rate,
        "payload": config.payload,
        **result.summary(),
        "complete": not result.errors,
        "env": environment(),
    }


def render_load(config: LoadConfig, result: LoadResult, console: Console) -> None:
    loop = (
        f"open loop at {config.rate:,.0f} msgs/s"
        if config.open_loop
        else f"closed loop, {config.in_flight} in flight"
    )
    table = Table(
        title=f"wsprof load {config.url} ({config.mode}, {config.connections} connections, {loop})"
    )
    for col in (
        "client",
        "messages",
        "msgs/s",
        "client CPU µs/msg",
        "p50 µs",
        "p90 µs",
        "p99 µs",
        "p99.9 µs",
        "max µs",
        "errors",
    ):
        table.add_column(col, justify="right")
    lat = result.latency_us()
    table.add_row(
        result.client,
        f"{result.messages:,}",
        f"{result.msgs_per_s:,.0f}",
        f"{result.client_cpu_us_per_msg:.2f}",
        *(f"{lat[k]:,.0f}" for k in ("p50", "p90", "p99", "p999", "max")),
        ", ".join(f"{k}={n}" for k, n in result.errors.items()) or "0",
    )
    console.print(table)
    if config.open_loop:
        console.print(
            "latency is timed from each message's intended send time (no coordinated omission)"
        )
    if result.client_bound:
        console.print(
            f"[bold yellow]client-bound:[/] a client process used {result.worker_busy_max:.0%} of a core; "
            "the throughput is the client's, not the server's (add --workers)"
        )


def load_command(args: argparse.Namespace) -> int:
    get_payload(args.payload)
    config = LoadConfig(
        url=args.url,
        mode=args.mode,
        connections=args.connections,
        in_flight=args.in_flight,
        rate=args.rate,
        duration=args.duration,
        max_messages=args.messages,
        payload=args.payload,
        serializer=args.serializer,
        warmup=args.warmup,
        connect_timeout=args.connect_timeout,
    )
    result = run_load(config, client=args.client, workers=args.workers)
    render_load(config, result, make_console())
    if args.json:
        write_json(args.json, load_document(config, result))
    if result.errors:
        kinds = ", ".join(f"{k} x{n}" for k, n in result.errors.items())
        print(
            f"wsprof: error: the run had errors ({kinds}); figures above are partial",
            file=sys.stderr,
        )
        return 1
    return 0
