"""The idle and connect workloads: what it costs a server to hold connections and to accept them.

idle: N connections opened (bounded concurrency), then held for a window in which the
client only answers the server's Engine.IO pings (counting those it answered late).
connect: a closed loop of ``concurrency`` connects in progress, each one TCP + HTTP
upgrade (+ Engine.IO open + Socket.IO namespace connect), timed, then closed.
Both clients (fast: wsprof._connections, reference: asyncio in connections_reference)
keep the contract in wsprof.client.connections_base, re-exported here.
"""

from __future__ import annotations

from wsprof import fastpath
from wsprof.client.base import LoadError, raise_fd_limit
from wsprof.client.connections_base import (
    CLOSE_TIMEOUT_S,
    DEFAULT_CONNECT_CONCURRENCY,
    DEFAULT_IDLE_CONNECTIONS,
    DEFAULT_IDLE_WINDOW_S,
    DEFAULT_OPEN_CONCURRENCY,
    OPEN_TIMEOUT_S,
    ConnectConfig,
    ConnectionLimit,
    ConnectResult,
    IdleConfig,
    IdleResult,
    check_client,
    client_bound,
    endpoint,
    idle_close_timeout,
    limit_error,
    nothing_opened,
)

__all__ = [
    "DEFAULT_CONNECT_CONCURRENCY",
    "DEFAULT_IDLE_CONNECTIONS",
    "DEFAULT_IDLE_WINDOW_S",
    "DEFAULT_OPEN_CONCURRENCY",
    "ConnectConfig",
    "ConnectResult",
    "ConnectionLimit",
    "IdleConfig",
    "IdleResult",
    "limit_error",
    "run_connect",
    "run_idle",
]


def run_idle(config: IdleConfig, client: str = "fast") -> IdleResult:
    """Open, hold and close ``config.connections``; raise ConnectionLimit at an OS limit,
    LoadError when none could be opened."""
    check_client(client)
    raise_fd_limit(config.connections)
    if client == "reference":
        from wsprof.client import connections_reference

        return connections_reference.run_idle(config)
    fastpath.load("_connections")
    from wsprof._connections import ConnectionsRun

    host, port, path = endpoint(config.url, config.mode)
    run = ConnectionsRun(
        host=host,
        port=port,
        path=path,
        slots=config.connections,
        socketio=config.mode == "socketio",
        msgpack=config.serializer == "msgpack",
    )
    try:
        out = run.run_idle(
            connections=config.connections,
            open_concurrency=config.open_concurrency,
            duration=config.duration,
            open_timeout=OPEN_TIMEOUT_S,
            close_timeout=idle_close_timeout(config.connections),
            on_window=config.on_window,
        )
    except OSError as exc:
        opened = run.ready + run.pending + run.closing
        run.abort()
        raise limit_error(exc, opened) or LoadError(
            f"idle connections to {config.url} failed: {exc}"
        ) from None
    except BaseException:
        run.abort()
        raise
    if out["connections"] == 0:
        raise nothing_opened(
            config.url,
            f"none of {config.connections:,} connections stayed open",
            run.errors(),
            run.first_errors(),
        )
    return IdleResult(
        connections=out["connections"],
        failed=out["failed"],
        heartbeats=out["heartbeats"],
        heartbeats_late=out["heartbeats_late"],
        open_s=out["open_s"],
        elapsed_s=out["elapsed_s"],
        client_cpu_s=out["cpu_s"],
        errors=out["errors"],
    )


def run_connect(config: ConnectConfig, client: str = "fast") -> ConnectResult:
    """Connect and close in a closed loop; raise LoadError when no connect completed."""
    check_client(client)
    raise_fd_limit(2 * config.concurrency)
    if client == "reference":
        from wsprof.client import connections_reference

        return connections_reference.run_connect(config)
    fastpath.load("_connections")
    from wsprof._connections import ConnectionsRun
    from wsprof._histogram import Histogram

    host, port, path = endpoint(config.url, config.mode)
    hist = Histogram()
    # A slot per connect in set-up and one per connection the server is still closing.
    run = ConnectionsRun(
        host=host,
        port=port,
        path=path,
        slots=2 * config.concurrency,
        socketio=config.mode == "socketio",
        msgpack=config.serializer == "msgpack",
    )
    try:
        out = run.run_connect(
            concurrency=config.concurrency,
            warmup=config.warmup,
            duration=config.duration,
            connect_timeout=OPEN_TIMEOUT_S,
            close_timeout=CLOSE_TIMEOUT_S,
            histogram=hist,
            on_window=config.on_window,
        )
    except OSError as exc:
        opened = run.ready + run.pending + run.closing
        run.abort()
        raise limit_error(exc, opened) or LoadError(
            f"connects to {config.url} failed: {exc}"
        ) from None
    except BaseException:
        run.abort()
        raise
    if out["connects"] == 0:
        raise nothing_opened(config.url, "no connect completed", run.errors(), run.first_errors())
    return ConnectResult(
        connects=out["connects"],
        elapsed_s=out["elapsed_s"],
        client_cpu_s=out["cpu_s"],
        client_bound=client_bound(out["cpu_s"], out["elapsed_s"]),
        errors=run.errors(),
        histogram=hist.to_dict(),
    )
