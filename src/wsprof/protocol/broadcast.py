"""The broadcast workload's message body, sans-I/O: the one place its bytes are made and read.

A body is text: 16 lowercase hex digits (the broadcast id, global and 0-based across
senders) followed by ASCII padding up to the payload size. The id is all a recipient
needs to count distinct deliveries and duplicates and to find the send time; fixed
width lets the C client read it at a fixed offset without parsing JSON.
"""

from __future__ import annotations

from wsprof.protocol import socketio
from wsprof.protocol.websocket import ProtocolError

#: The Socket.IO event a broadcast travels as (the server re-emits it to the room).
EVENT = "broadcast"
ID_DIGITS = 16
#: A body is at least its id; padding fills the rest.
MIN_PAYLOAD_BYTES = ID_DIGITS
PADDING = "."
MAX_ID = 16**ID_DIGITS - 1
_HEX = frozenset(b"0123456789abcdef")


class BroadcastBodyError(ProtocolError):
    """A message that is not a broadcast body (or event)."""


def encode_body(broadcast_id: int, payload_bytes: int) -> str:
    """The body of broadcast ``broadcast_id``, ``payload_bytes`` long."""
    if not 0 <= broadcast_id <= MAX_ID:
        raise ValueError(f"broadcast id {broadcast_id} is outside 0..{MAX_ID}")
    if payload_bytes < MIN_PAYLOAD_BYTES:
        raise ValueError(f"a broadcast body is at least {MIN_PAYLOAD_BYTES} bytes")
    return f"{broadcast_id:016x}" + PADDING * (payload_bytes - ID_DIGITS)


def parse_body(body: str | bytes) -> int:
    """The broadcast id of ``body``; BroadcastBodyError when it is not a valid body."""
    data = body.encode("utf-8", "surrogatepass") if isinstance(body, str) else bytes(body)
    if len(data) < ID_DIGITS:
        raise BroadcastBodyError(f"broadcast body of {len(data)} bytes is shorter than its id")
    head = data[:ID_DIGITS]
    if not _HEX.issuperset(head):
        raise BroadcastBodyError(f"broadcast body does not start with a hex id: {head!r}")
    if not data[ID_DIGITS:].isascii():
        raise BroadcastBodyError("broadcast body padding is not ASCII")
    return int(head, 16)


def socketio_message(broadcast_id: int, payload_bytes: int) -> str:
    """The Socket.IO text message of a broadcast: ``42["broadcast","<body>"]``."""
    (message,) = socketio.encode_event(EVENT, encode_body(broadcast_id, payload_bytes))
    assert isinstance(message, str)
    return message


def socketio_prefix() -> bytes:
    """What every broadcast event starts with; the id follows at once."""
    return socketio.event_prefix(EVENT) + b',"'


def template(mode: str, payload_bytes: int) -> tuple[bytes, int]:
    """One message carrying id 0 and the offset of its id, for a client that writes ids in
    place (raw: the body; socketio: the event text)."""
    if mode == "raw":
        return encode_body(0, payload_bytes).encode(), 0
    message = socketio_message(0, payload_bytes).encode()
    return message, len(socketio_prefix())


def parse_socketio(message: str | bytes) -> int:
    """The id in a Socket.IO broadcast event message; BroadcastBodyError otherwise."""
    data = message.encode() if isinstance(message, str) else bytes(message)
    prefix = socketio_prefix()
    if not data.startswith(prefix) or not data.endswith(b'"]'):
        raise BroadcastBodyError(f"not a broadcast event: {data[:40]!r}")
    return parse_body(data[len(prefix) : -2])
