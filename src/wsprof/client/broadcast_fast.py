"""The fast broadcast client: Python prepares the bytes, ``wsprof._broadcast`` runs the loop in C."""

from __future__ import annotations

from typing import Any

from wsprof import fastpath
from wsprof.client.base import LoadError, ensure_fd_limit, parse_url
from wsprof.client.broadcast_base import (
    BroadcastConfig,
    BroadcastResult,
    finish,
)
from wsprof.errors import WsprofError
from wsprof.protocol import broadcast
from wsprof.protocol.engineio import socketio_path
from wsprof.protocol.websocket import MAX_MESSAGE_SIZE


def run(config: BroadcastConfig) -> BroadcastResult:
    """Drive ``config`` from this thread and return the measured window."""
    fastpath.load("_broadcast")
    from wsprof._broadcast import BroadcastRun
    from wsprof._histogram import Histogram

    socketio = config.mode == "socketio"
    if socketio and config.serializer == "msgpack":
        raise WsprofError(
            "the fast broadcast client speaks JSON Socket.IO packets: use --client reference "
            "for msgpack"
        )
    ensure_fd_limit(config.recipients)
    endpoints = []
    for url in config.urls:
        host, port, path = parse_url(url)
        endpoints.append((host, port, socketio_path(path) if socketio else path))
    template, offset = broadcast.template(config.mode, config.payload_bytes)
    hist, cross = Histogram(), Histogram()
    try:
        loop = BroadcastRun(
            endpoints=endpoints,
            recipients=config.recipients,
            senders=config.senders,
            socketio=socketio,
            template=template,
            id_offset=offset,
            prefix=broadcast.socketio_prefix() if socketio else b"",
            in_flight=config.in_flight,
            rate=config.rate or 0.0,
            max_message_size=MAX_MESSAGE_SIZE,
            histogram=hist,
            cross=cross,
        )
        out: dict[str, Any] = loop.run(
            warmup=config.warmup,
            duration=config.duration,
            drain=config.drain_s,
            connect_timeout=config.connect_timeout,
            close_timeout=config.close_timeout,
            on_window=config.on_window,
        )
    except OSError as exc:
        raise LoadError(f"broadcast load against {config.url} failed: {exc}") from None
    return finish(config, out, hist, cross)
