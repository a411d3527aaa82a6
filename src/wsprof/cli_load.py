"""The ``wsprof load`` parser: the command with the most flags (four workloads, a reply
contract), kept apart from cli.py so each stays a file one can read through."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from wsprof.argtypes import non_negative_float, positive_float, positive_int


def _load_defaults() -> dict[str, Any]:
    """``LoadConfig``'s field defaults: the one source of every ``wsprof load`` default."""
    from wsprof.client.base import LoadConfig

    return {
        f.name: f.default
        for f in dataclasses.fields(LoadConfig)
        if f.default is not dataclasses.MISSING
    }


def add_load(sub: Any) -> None:
    """The ``load`` subcommand and its flags (defaults: the workloads' config classes)."""
    from wsprof.client.base import CLIENTS, MODES, REPLIES, SERIALIZERS, WORKLOADS
    from wsprof.client.connections import DEFAULT_IDLE_CONNECTIONS
    from wsprof.payloads import payload_names

    d = _load_defaults()
    load = sub.add_parser(
        "load",
        help="drive a WebSocket or Socket.IO server with the fast client",
        description="Drive any WebSocket or Socket.IO server on this machine. Closed loop "
        "(--in-flight K per connection) measures capacity; open loop (--rate R msgs/s total) "
        "measures latency from each message's intended send time (no coordinated omission).",
    )
    load.add_argument(
        "url",
        help="ws://127.0.0.1:PORT/PATH "
        "(Socket.IO: ws://HOST:PORT/socket.io/?EIO=4&transport=websocket)",
    )
    load.add_argument(
        "--mode",
        choices=MODES,
        default=d["mode"],
        help="raw WebSocket frames, or Engine.IO v4 + Socket.IO v5 events (default %(default)s)",
    )
    load.add_argument(
        "--workload",
        choices=WORKLOADS,
        default=WORKLOADS[0],
        help="echo: round trips; idle: hold --connections open for --idle-window, answering "
        "heartbeats; connect: --concurrency connects at once, each closed once open "
        "(default %(default)s)",
    )
    load.add_argument(
        "--connections",
        type=positive_int,
        default=None,
        metavar="N",
        help=f"echo: default {d['connections']}; idle: connections held open "
        f"(default {DEFAULT_IDLE_CONNECTIONS})",
    )
    _add_connection_workloads(load)
    pace = load.add_mutually_exclusive_group()
    pace.add_argument(
        "--in-flight",
        type=positive_int,
        default=d["in_flight"],
        metavar="K",
        help="closed loop: messages outstanding per connection (default %(default)s)",
    )
    pace.add_argument(
        "--rate",
        type=positive_float,
        default=d["rate"],
        metavar="R",
        help="open loop: total messages per second over all connections",
    )
    load.add_argument(
        "--duration",
        type=positive_float,
        default=d["duration"],
        metavar="S",
        help="measurement window in seconds (default %(default)s)",
    )
    load.add_argument(
        "--messages",
        type=positive_int,
        default=d["max_messages"],
        metavar="M",
        help="stop after M round trips",
    )
    load.add_argument(
        "--warmup",
        type=non_negative_float,
        default=d["warmup"],
        metavar="S",
        help="unrecorded warm-up (default %(default)s s)",
    )
    load.add_argument(
        "--payload",
        default=d["payload"],
        metavar="P",
        help=f"one of {', '.join(payload_names())} (default %(default)s)",
    )
    load.add_argument(
        "--payload-file",
        metavar="FILE",
        help="send this file's JSON value (or, not JSON, its raw bytes) instead of --payload",
    )
    reply = load.add_argument_group(
        "reply contract",
        "what completes a round trip. Raw: an echo of the message, or with --reply any the "
        "next data message on that connection (FIFO). Socket.IO: the --reply-event, or the "
        "matching ack with --ack. E.g. for a handler doing emit('response', 'Echo: '+data): "
        "--mode socketio --event message --reply-event response",
    )
    reply.add_argument(
        "--reply",
        choices=REPLIES,
        default=d["reply"],
        help="echo: byte-for-byte (default; Socket.IO: unless the reply event differs); "
        "any: any reply",
    )
    reply.add_argument(
        "--event",
        default=d["event"],
        metavar="NAME",
        help="Socket.IO: the event emitted (default %(default)s)",
    )
    reply.add_argument(
        "--reply-event",
        default=d["reply_event"],
        metavar="NAME",
        help="Socket.IO: the event that answers it (default: the same name)",
    )
    reply.add_argument(
        "--ack",
        action="store_true",
        help="Socket.IO: emit with an ack id; the matching ack ends the round trip",
    )
    load.add_argument(
        "--serializer",
        choices=SERIALIZERS,
        default=d["serializer"],
        help="Socket.IO packet format the server uses (default %(default)s)",
    )
    load.add_argument(
        "--workers",
        type=positive_int,
        default=1,
        metavar="W",
        help="client processes (default %(default)s)",
    )
    load.add_argument(
        "--client",
        choices=CLIENTS,
        default=CLIENTS[0],
        help="fast: Cython epoll client; reference: pure-Python asyncio (default %(default)s)",
    )
    load.add_argument(
        "--connect-timeout",
        type=positive_float,
        default=d["connect_timeout"],
        metavar="S",
        help="default %(default)s s",
    )
    load.add_argument(
        "--json", type=Path, metavar="PATH", help="write the result as wsprof.load/1 JSON"
    )
    _add_broadcast_options(load)
    load.add_argument(
        "--hgrm",
        type=Path,
        metavar="PATH",
        help="write the latency histogram in HdrHistogram's percentile-distribution format "
        "(.hgrm, milliseconds), for HdrHistogram's plotter",
    )


def _add_broadcast_options(load: Any) -> None:
    """``wsprof load --workload broadcast``: the fan-out workload (wsprof.client.broadcast)."""
    from wsprof.client.broadcast import BroadcastConfig

    d = {f.name: f.default for f in dataclasses.fields(BroadcastConfig)}
    group = load.add_argument_group(
        "broadcast workload",
        "--workload broadcast: every connection joins one room (the server runs "
        "handler=broadcast), the first --senders send and every recipient must get each "
        "broadcast exactly once; --in-flight (per sender) / --rate (total) pace them",
    )
    for flag, key, what in (
        ("--recipients", "recipients", "connections in the room"),
        ("--senders", "senders", "connections that also send"),
        ("--payload-bytes", "payload_bytes", "broadcast body size, at least 16"),
    ):
        group.add_argument(
            flag, type=positive_int, default=d[key], metavar="N", help=f"{what} (default {d[key]})"
        )
    group.add_argument(
        "--drain",
        type=non_negative_float,
        default=d["drain_s"],
        metavar="S",
        help="after the window, wait this long for deliveries in flight (default %(default)s)",
    )


def _add_connection_workloads(load: Any) -> None:
    """The idle and connect workloads' options (defaults: IdleConfig / ConnectConfig)."""
    from wsprof.client.connections import (
        DEFAULT_CONNECT_CONCURRENCY,
        DEFAULT_IDLE_WINDOW_S,
        DEFAULT_OPEN_CONCURRENCY,
    )

    load.add_argument(
        "--idle-window",
        type=positive_float,
        default=DEFAULT_IDLE_WINDOW_S,
        metavar="S",
        help="idle: seconds all connections are held open (default %(default)s)",
    )
    load.add_argument(
        "--concurrency",
        type=positive_int,
        default=None,
        metavar="C",
        help=f"connect: connects in progress at once (default {DEFAULT_CONNECT_CONCURRENCY}); "
        f"idle: handshakes at once while opening (default {DEFAULT_OPEN_CONCURRENCY})",
    )
