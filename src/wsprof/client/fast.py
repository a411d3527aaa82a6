"""The fast-path load client: Python prepares, ``wsprof._loadclient`` runs the hot loop in C.

Everything that happens once (payload encoding, the Socket.IO packet text,
the file-descriptor limit) is done here in Python; everything that happens
per message happens in the extension, so the client's own CPU per message
stays near the kernel's price of one send plus one recv.
"""

from __future__ import annotations

from typing import Any

from wsprof import fastpath
from wsprof.client.base import LoadConfig, LoadError, LoadResult, ensure_fd_limit, unanswered
from wsprof.errors import WsprofError
from wsprof.protocol import socketio
from wsprof.protocol.engineio import socketio_path
from wsprof.protocol.websocket import OP_BINARY, OP_TEXT


def require() -> None:
    """Raise FastPathUnavailable (one clear line) when the extension is not built."""
    fastpath.load("_loadclient")


def message_frames(config: LoadConfig) -> list[tuple[int, bytes]]:
    """The frames of one message, which are also exactly what the echo must be.

    The servers re-encode the echo with compact JSON (or msgpack with the same
    key order), so the bytes they send back equal the bytes sent: the C loop
    checks each echo with one ``memcmp``.
    """
    payload = config.message_payload()
    if config.mode == "raw":
        raw = payload.raw_message()
        if isinstance(raw, str):
            return [(OP_TEXT, raw.encode())]
        return [(OP_BINARY, bytes(raw))]
    if config.serializer == "msgpack":
        return [(OP_BINARY, socketio.encode_event_msgpack(config.event, payload.value))]
    if config.serializer != "json":
        raise WsprofError(f"unknown serializer {config.serializer!r} (valid: json, msgpack)")
    messages = socketio.encode_event(config.event, payload.value)
    if len(messages) > 2:
        raise WsprofError("the fast client handles at most one binary attachment per event")
    return [(OP_TEXT, m.encode()) if isinstance(m, str) else (OP_BINARY, m) for m in messages]


def reply_matcher(config: LoadConfig) -> dict[str, Any]:
    """The reply contract as the C loop checks it: a kind and the prefixes it compares.

    An echo is compared whole; a reply event by its prefix ``42["name"`` and an ack by
    ``43`` + an outstanding id + ``[``, so the loop never decodes JSON.
    """
    if config.mode == "raw":
        return {"reply": config.reply_contract}
    matcher: dict[str, Any] = {
        "reply": "ack" if config.ack else config.reply_contract,
        "reply_prefix": socketio.event_prefix(config.expected_event),
        "ack_prefix": socketio.ack_prefix(),
    }
    if config.ack:
        try:
            matcher["ack_parts"] = socketio.event_with_ack_parts(
                config.event, config.message_payload().value
            )
        except socketio.SocketIOError:
            raise WsprofError(
                "the fast client sends --ack events with JSON payloads only: "
                "use a JSON payload or --client reference"
            ) from None
    return matcher


def run(config: LoadConfig) -> LoadResult:
    """Drive ``config.url`` from this process and return the measured window."""
    require()
    from wsprof._histogram import Histogram
    from wsprof._loadclient import LoadRun

    ensure_fd_limit(config.connections)
    frames = message_frames(config)
    hist = Histogram()
    path = config.path if config.mode == "raw" else socketio_path(config.path)
    try:
        loop = LoadRun(
            host=config.host,
            port=config.port,
            path=path,
            connections=config.connections,
            socketio=config.mode == "socketio",
            send_frames=frames,
            expect_frames=frames,
            in_flight=config.in_flight,
            rate=config.rate or 0.0,
            max_message_size=config.max_message_size,
            histogram=hist,
            msgpack=config.mode == "socketio" and config.serializer == "msgpack",
            **reply_matcher(config),
        )
        out: dict[str, Any] = loop.run(
            warmup=config.warmup,
            duration=config.duration,
            max_messages=config.max_messages,
            connect_timeout=config.connect_timeout,
            on_window=config.on_window,
        )
    except OSError as exc:
        raise LoadError(f"load against {config.url} failed: {exc}") from None
    if out["messages"] == 0:
        raise unanswered(config, f"{config.host}:{config.port}", out["errors"], out["seen"])
    elapsed = out["elapsed_s"]
    return LoadResult(
        client="fast",
        messages=out["messages"],
        elapsed_s=elapsed,
        client_cpu_s=out["cpu_s"],
        histogram=hist.to_dict(),
        errors=out["errors"],
        workers=1,
        worker_busy_max=out["cpu_s"] / elapsed if elapsed > 0 else 0.0,
    )
