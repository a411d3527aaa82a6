"""``wsprof load --workload idle|connect``: the JSON document and the terminal table."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

from wsprof.client.connections import ConnectConfig, ConnectResult, IdleConfig, IdleResult
from wsprof.env import environment
from wsprof.report.load import SCHEMA


def _errors(errors: dict[str, int]) -> str:
    return ", ".join(f"{k}={n}" for k, n in errors.items()) or "0"


def idle_document(config: IdleConfig, result: IdleResult, client: str) -> dict[str, Any]:
    return {
        "schema": SCHEMA,
        "workload": "idle",
        "url": config.url,
        "mode": config.mode,
        "client": client,
        "requested": config.connections,
        "open_concurrency": config.open_concurrency,
        **result.summary(),
        "complete": not result.errors and not result.failed,
        "env": environment(),
    }


def connect_document(config: ConnectConfig, result: ConnectResult, client: str) -> dict[str, Any]:
    return {
        "schema": SCHEMA,
        "workload": "connect",
        "url": config.url,
        "mode": config.mode,
        "client": client,
        "concurrency": config.concurrency,
        **result.summary(),
        "complete": not result.errors,
        "env": environment(),
    }


def print_idle(console: Console, config: IdleConfig, result: IdleResult) -> None:
    table = Table(
        title=f"wsprof load {config.url} ({config.mode}, idle: {config.connections:,} "
        f"connections for {config.duration:g} s)"
    )
    for col in ("open", "failed", "open s", "heartbeats", "late", "client CPU ms", "errors"):
        table.add_column(col, justify="right")
    table.add_row(
        f"{result.connections:,}",
        f"{result.failed:,}",
        f"{result.open_s:.2f}",
        f"{result.heartbeats:,}",
        f"{result.heartbeats_late:,}",
        f"{result.client_cpu_s * 1e3:.1f}",
        _errors(result.errors),
    )
    console.print(table)
    console.print(
        "late: a heartbeat answered more than 1 s after the client could last have seen it"
    )


def print_connect(console: Console, config: ConnectConfig, result: ConnectResult) -> None:
    table = Table(
        title=f"wsprof load {config.url} ({config.mode}, connect: {config.concurrency} at once)"
    )
    for col in ("connects", "connects/s", "p50 µs", "p90 µs", "p99 µs", "max µs", "errors"):
        table.add_column(col, justify="right")
    lat = result.latency_us()
    table.add_row(
        f"{result.connects:,}",
        f"{result.connects_per_s:,.0f}",
        *(f"{lat[k]:,.0f}" for k in ("p50", "p90", "p99", "max")),
        _errors(result.errors),
    )
    console.print(table)
    if result.client_bound:
        console.print(
            "[bold yellow]client-bound:[/] the client used most of a core; the rate is the "
            "client's, not the server's"
        )
