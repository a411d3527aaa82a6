"""Engine.IO v4 over the websocket transport, sans-I/O.

On a WebSocket each Engine.IO packet is one message: text packets are a type
digit followed by their data, binary messages are raw MESSAGE packets.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from wsprof.protocol.websocket import ProtocolError

OPEN, CLOSE, PING, PONG, MESSAGE, UPGRADE, NOOP = "0", "1", "2", "3", "4", "5", "6"
PACKET_TYPES = frozenset((OPEN, CLOSE, PING, PONG, MESSAGE, UPGRADE, NOOP))
DEFAULT_MAX_PAYLOAD = 1_000_000


class EngineIOError(ProtocolError):
    """A malformed Engine.IO packet; a ProtocolError so one handler catches both."""


@dataclass(frozen=True)
class OpenPacket:
    sid: str
    ping_interval_ms: int
    ping_timeout_ms: int
    max_payload: int


def parse_open(text: str) -> OpenPacket:
    """Read the server's OPEN packet (``0{"sid":...}``), the first message of a session."""
    if not text.startswith(OPEN):
        raise EngineIOError(f"expected an Engine.IO OPEN packet, got {text[:40]!r}")
    try:
        info = json.loads(text[1:])
    except ValueError:
        raise EngineIOError(f"invalid JSON in Engine.IO OPEN packet: {text[:80]!r}") from None
    if not isinstance(info, dict):
        raise EngineIOError("Engine.IO OPEN packet data is not a JSON object")
    sid = info.get("sid")
    if not isinstance(sid, str) or not sid:
        raise EngineIOError("Engine.IO OPEN packet has no 'sid'")
    values = {}
    for name in ("pingInterval", "pingTimeout", "maxPayload"):
        value = info.get(name, DEFAULT_MAX_PAYLOAD if name == "maxPayload" else None)
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise EngineIOError(f"Engine.IO OPEN packet has no valid {name!r}")
        values[name] = value
    return OpenPacket(sid, values["pingInterval"], values["pingTimeout"], values["maxPayload"])


def encode_text(ptype: str, data: str = "") -> str:
    """A text packet: the type digit then the data."""
    if ptype not in PACKET_TYPES:
        raise ValueError(f"unknown Engine.IO packet type {ptype!r}")
    return ptype + data


def decode_text(text: str) -> tuple[str, str]:
    """(type, data) of a text packet."""
    if not text:
        raise EngineIOError("empty Engine.IO packet")
    ptype = text[0]
    if ptype not in PACKET_TYPES:
        raise EngineIOError(f"unknown Engine.IO packet type {ptype!r}")
    return ptype, text[1:]


def socketio_path(path: str) -> str:
    """The Engine.IO websocket endpoint for ``path`` ("/" means the default /socket.io/)."""
    if "EIO=" in path:
        return path
    base, _, query = path.partition("?")
    if base == "/":
        base = "/socket.io/"
    extra = "EIO=4&transport=websocket"
    return f"{base}?{query}&{extra}" if query else f"{base}?{extra}"
