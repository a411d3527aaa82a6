"""``wsprof load``: the wsprof.load/1 document and the terminal table."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

from wsprof.client.base import LoadConfig, LoadResult
from wsprof.client.broadcast import BroadcastConfig, BroadcastResult
from wsprof.env import environment

SCHEMA = "wsprof.load/1"


def load_document(config: LoadConfig, result: LoadResult) -> dict[str, Any]:
    """What the run was asked to do, what the client saw, and the machine it ran on."""
    return {
        "schema": SCHEMA,
        "url": config.url,
        "mode": config.mode,
        "connections": config.connections,
        "in_flight": None if config.open_loop else config.in_flight,
        "rate": config.rate,
        "payload": config.payload_file or config.payload,
        "reply": contract(config),
        **result.summary(),
        "complete": not result.errors,
        "env": environment(),
    }


def contract(config: LoadConfig) -> dict[str, Any]:
    """The reply contract the messages were counted under (JSON ``reply``)."""
    if config.mode == "raw":
        return {"check": config.reply_contract}
    return {
        "event": config.event,
        "reply_event": None if config.ack else config.expected_event,
        "ack": config.ack,
        "check": "ack id" if config.ack else config.reply_contract,
    }


def contract_words(config: LoadConfig) -> str:
    if config.mode == "raw":
        return "echo" if config.reply_contract == "echo" else "any reply"
    if config.ack:
        return f"'{config.event}' → ack"
    check = " (echo)" if config.reply_contract == "echo" else ""
    return f"'{config.event}' → '{config.expected_event}'{check}"


def print_load(console: Console, config: LoadConfig, result: LoadResult) -> None:
    """The table, then how latency was timed and whether the client was the bottleneck."""
    loop = (
        f"open loop at {config.rate:,.0f} msgs/s"
        if config.open_loop
        else f"closed loop, {config.in_flight} in flight"
    )
    table = Table(
        title=f"wsprof load {config.url} ({config.mode}, {contract_words(config)}, "
        f"{config.connections} connections, {loop})"
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
            f"[bold yellow]client-bound:[/] a client process used {result.worker_busy_max:.0%} "
            "of a core; the throughput is the client's, not the server's (add --workers)"
        )


def broadcast_document(config: BroadcastConfig, result: BroadcastResult) -> dict[str, Any]:
    """The wsprof.load/1 document of ``--workload broadcast``: the BroadcastResult fields."""
    return {
        "schema": SCHEMA,
        "workload": "broadcast",
        "url": config.url,
        "mode": config.mode,
        "recipients": config.recipients,
        "senders": config.senders,
        "in_flight": None if config.rate is not None else config.in_flight,
        "rate": config.rate,
        "payload_bytes": config.payload_bytes,
        **result.to_dict(),
        "complete": not (result.errors or result.missing or result.duplicates),
        "env": environment(),
    }


def print_broadcast(console: Console, config: BroadcastConfig, result: BroadcastResult) -> None:
    """Deliveries/s, send -> delivery latency, and proof of exactly-once delivery."""
    loop = (
        f"open loop at {config.rate:,.0f} broadcasts/s"
        if config.rate is not None
        else f"closed loop, {config.in_flight} in flight per sender"
    )
    table = Table(
        title=f"wsprof load --workload broadcast {config.url} ({config.mode}, "
        f"{config.recipients} recipients, {config.senders} senders, {loop})"
    )
    for col in (
        "broadcasts",
        "deliveries",
        "deliveries/s",
        "p50 µs",
        "p99 µs",
        "max µs",
        "missing",
        "duplicates",
        "errors",
    ):
        table.add_column(col, justify="right")
    lat = result.latency_us()
    table.add_row(
        f"{result.broadcasts:,}",
        f"{result.deliveries:,}",
        f"{result.deliveries_per_s:,.0f}",
        *(f"{lat[k]:,.0f}" for k in ("p50", "p99", "max")),
        f"{result.missing:,}",
        f"{result.duplicates:,}",
        ", ".join(f"{k}={n}" for k, n in result.errors.items()) or "0",
    )
    console.print(table)
    if result.client_bound:
        console.print(
            f"[bold yellow]client-bound:[/] the client used {result.client_busy:.0%} of a core; "
            "the throughput is the client's, not the server's"
        )
