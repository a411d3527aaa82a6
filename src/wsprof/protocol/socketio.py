"""Socket.IO v5 packets on top of Engine.IO v4, sans-I/O.

Text packets read ``<type>[<attachments>-][<namespace>,][<ack id>][<JSON>]``;
the default namespace ``/`` is omitted. Bytes inside the arguments travel as
separate binary Engine.IO messages, replaced in the JSON by
``{"_placeholder":true,"num":N}`` (BINARY_EVENT / BINARY_ACK). A server started
with ``serializer="msgpack"`` sends each packet as one msgpack map instead.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from wsprof.protocol.engineio import CLOSE, MESSAGE, PING, PONG
from wsprof.protocol.websocket import OP_BINARY, OP_TEXT, ProtocolError

CONNECT, DISCONNECT, EVENT, ACK, CONNECT_ERROR, BINARY_EVENT, BINARY_ACK = range(7)
MAX_ATTACHMENTS = 1000


class SocketIOError(ProtocolError):
    """A malformed or unexpected Socket.IO packet."""


@dataclass(frozen=True)
class Packet:
    type: int
    namespace: str
    data: Any  # EVENT/ACK: the argument list (an EVENT's first item is its name)
    id: int | None


def compact_dumps(obj: Any) -> str:
    """JSON as python-socketio writes it, so sizes and costs match the server's."""
    return json.dumps(obj, separators=(",", ":"))


def has_binary(data: Any) -> bool:
    """Whether ``data`` holds bytes anywhere (then it must go as BINARY_EVENT)."""
    if isinstance(data, bytes | bytearray):
        return True
    if isinstance(data, list | tuple):
        return any(has_binary(item) for item in data)
    if isinstance(data, dict):
        return any(has_binary(item) for item in data.values())
    return False


def deconstruct(data: Any, attachments: list[bytes]) -> Any:
    """Replace each bytes value by a placeholder and collect it in ``attachments``."""
    if isinstance(data, bytes | bytearray):
        attachments.append(bytes(data))
        return {"_placeholder": True, "num": len(attachments) - 1}
    if isinstance(data, list | tuple):
        return [deconstruct(item, attachments) for item in data]
    if isinstance(data, dict):
        return {key: deconstruct(value, attachments) for key, value in data.items()}
    return data


def reconstruct(data: Any, attachments: list[bytes]) -> Any:
    """Put the attachments back where their placeholders are."""
    if isinstance(data, list):
        return [reconstruct(item, attachments) for item in data]
    if isinstance(data, dict):
        if data.get("_placeholder") is True and "num" in data:
            num = data["num"]
            if not isinstance(num, int) or not 0 <= num < len(attachments):
                raise SocketIOError(f"binary placeholder {num!r} has no attachment")
            return attachments[num]
        return {key: reconstruct(value, attachments) for key, value in data.items()}
    return data


def encode_packet(
    ptype: int,
    data: Any = None,
    *,
    namespace: str = "/",
    ack_id: int | None = None,
    dumps: Callable[[Any], str] = compact_dumps,
) -> list[str | bytes]:
    """Engine.IO messages for one packet: the text, then any binary attachments."""
    attachments: list[bytes] = []
    head = MESSAGE
    if ptype in (EVENT, ACK) and has_binary(data):
        ptype = BINARY_EVENT if ptype == EVENT else BINARY_ACK
    if ptype in (BINARY_EVENT, BINARY_ACK):
        data = deconstruct(data, attachments)
        head += f"{ptype}{len(attachments)}-"
    else:
        head += str(ptype)
    if namespace != "/":
        head += namespace + ","
    if ack_id is not None:
        head += str(ack_id)
    text = head if data is None else head + dumps(data)
    return [text, *attachments]


def encode_event(
    event: str,
    *args: Any,
    ack_id: int | None = None,
    namespace: str = "/",
    dumps: Callable[[Any], str] = compact_dumps,
) -> list[str | bytes]:
    """Messages that emit ``event`` with ``args``: ``42[...]`` or ``451-[...]`` + bytes."""
    return encode_packet(EVENT, [event, *args], namespace=namespace, ack_id=ack_id, dumps=dumps)


def encode_ack(
    ack_id: int,
    *args: Any,
    namespace: str = "/",
    dumps: Callable[[Any], str] = compact_dumps,
) -> list[str | bytes]:
    """Messages that acknowledge ``ack_id`` with ``args``."""
    return encode_packet(ACK, list(args), namespace=namespace, ack_id=ack_id, dumps=dumps)


def encode_connect(namespace: str = "/", auth: dict[str, Any] | None = None) -> str:
    """The CONNECT request that opens a namespace: ``40`` or ``40/ns,{auth}``."""
    text = encode_packet(CONNECT, auth, namespace=namespace)[0]
    assert isinstance(text, str)
    return text


def encode_disconnect(namespace: str = "/") -> str:
    """The DISCONNECT packet a client sends before it leaves a namespace."""
    text = encode_packet(DISCONNECT, namespace=namespace)[0]
    assert isinstance(text, str)
    return text


class PacketDecoder:
    """Resumable decoder: text packets, then the binary attachments they announce."""

    def __init__(self, loads: Callable[[str], Any] = json.loads) -> None:
        self.loads = loads
        self._pending: tuple[int, str, Any, int | None, int] | None = None
        self._attachments: list[bytes] = []

    @property
    def waiting_for_attachments(self) -> int:
        """How many binary messages the pending packet still needs."""
        return 0 if self._pending is None else self._pending[4] - len(self._attachments)

    def feed_text(self, text: str) -> list[Packet]:
        """Decode the text of an Engine.IO MESSAGE (without its ``4``)."""
        if self._pending is not None:
            raise SocketIOError(
                f"text packet while {self.waiting_for_attachments} binary attachment(s) are pending"
            )
        if not text:
            raise SocketIOError("empty Socket.IO packet")
        ptype = ord(text[0]) - 48
        if not 0 <= ptype <= 6:
            raise SocketIOError(f"unknown Socket.IO packet type {text[0]!r}")
        pos = 1
        count = 0
        if ptype in (BINARY_EVENT, BINARY_ACK):
            dash = text.find("-", pos)
            if dash < 0 or not text[pos:dash].isdigit():
                raise SocketIOError("binary packet without an attachment count")
            count = int(text[pos:dash])
            if count > MAX_ATTACHMENTS:
                raise SocketIOError(f"{count} attachments exceed the {MAX_ATTACHMENTS} limit")
            pos = dash + 1
        namespace = "/"
        if text.startswith("/", pos):
            comma = text.find(",", pos)
            end = len(text) if comma < 0 else comma
            namespace = text[pos:end].split("?", 1)[0]
            pos = end + 1
        start = pos
        while pos < len(text) and text[pos].isdigit():
            pos += 1
        ack_id = int(text[start:pos]) if pos > start else None
        data = None
        if pos < len(text):
            try:
                data = self.loads(text[pos:])
            except ValueError as exc:
                raise SocketIOError(f"invalid JSON in Socket.IO packet: {exc}") from None
        if ptype in (EVENT, BINARY_EVENT) and not (
            isinstance(data, list) and data and isinstance(data[0], str)
        ):
            raise SocketIOError("event packet data is not [name, ...args]")
        if count:
            self._pending = (ptype, namespace, data, ack_id, count)
            self._attachments = []
            return []
        return [Packet(ptype, namespace, data, ack_id)]

    def feed_binary(self, data: bytes) -> list[Packet]:
        """Take one binary attachment; returns the packet once all have arrived."""
        if self._pending is None:
            raise SocketIOError("unexpected binary message (no binary packet is pending)")
        self._attachments.append(bytes(data))
        ptype, namespace, payload, ack_id, count = self._pending
        if len(self._attachments) < count:
            return []
        attachments, self._attachments, self._pending = self._attachments, [], None
        return [Packet(ptype, namespace, reconstruct(payload, attachments), ack_id)]


def _msgpack() -> Any:
    import msgpack

    return msgpack


def encode_msgpack(
    ptype: int, data: Any = None, *, namespace: str = "/", ack_id: int | None = None
) -> bytes:
    """One packet as python-socketio's msgpack serializer writes it (a binary message)."""
    packet: dict[str, Any] = {"type": ptype, "data": data, "nsp": namespace}
    if ack_id is not None:
        packet["id"] = ack_id
    return _msgpack().packb(packet)


def encode_event_msgpack(
    event: str, *args: Any, ack_id: int | None = None, namespace: str = "/"
) -> bytes:
    """The msgpack twin of encode_event: bytes stay bytes, no attachments."""
    return encode_msgpack(EVENT, [event, *args], namespace=namespace, ack_id=ack_id)


def encode_connect_msgpack(namespace: str = "/", auth: dict[str, Any] | None = None) -> bytes:
    return encode_msgpack(CONNECT, auth, namespace=namespace)


def encode_disconnect_msgpack(namespace: str = "/") -> bytes:
    return encode_msgpack(DISCONNECT, namespace=namespace)


def decode_msgpack(data: bytes) -> Packet:
    """Read one msgpack packet (a map with type, data, nsp and optional id)."""
    msgpack = _msgpack()
    try:
        packet = msgpack.unpackb(data)
    except (ValueError, msgpack.UnpackException) as exc:
        raise SocketIOError(f"invalid msgpack Socket.IO packet: {exc}") from None
    if not isinstance(packet, dict):
        raise SocketIOError("msgpack Socket.IO packet is not a map")
    ptype = packet.get("type")
    if not isinstance(ptype, int) or isinstance(ptype, bool) or not 0 <= ptype <= 6:
        raise SocketIOError(f"unknown Socket.IO packet type {ptype!r}")
    namespace = packet.get("nsp") or "/"
    ack_id = packet.get("id")
    if not isinstance(namespace, str) or not (ack_id is None or isinstance(ack_id, int)):
        raise SocketIOError("msgpack Socket.IO packet has a bad 'nsp' or 'id'")
    return Packet(ptype, namespace, packet.get("data"), ack_id)


def check_connect_reply(message: str | bytes, *, msgpack: bool) -> None:
    """Accept the server's answer to our namespace CONNECT, or raise SocketIOError saying why."""
    packet = None
    if isinstance(message, bytes) and msgpack:
        with contextlib.suppress(SocketIOError):
            packet = decode_msgpack(message)
    elif isinstance(message, str) and message.startswith(MESSAGE):
        with contextlib.suppress(SocketIOError):
            packet = next(iter(PacketDecoder().feed_text(message[1:])), None)
    if packet is not None and packet.type == CONNECT:
        return
    if packet is not None and packet.type == CONNECT_ERROR:
        raise SocketIOError(f"the server refused the namespace connect: {packet.data}")
    raise SocketIOError(f"unexpected message during the Socket.IO connect: {message[:60]!r}")


@dataclass(frozen=True)
class SessionBytes:
    """What a load loop sends and recognises in a Socket.IO session, built once here.

    The fast client's C loop writes no Engine.IO / Socket.IO bytes of its own:
    it sends these and compares messages against these prefixes.
    """

    connect: tuple[int, bytes]  # (opcode, payload) that opens the default namespace
    disconnect: tuple[int, bytes]  # sent before the WebSocket Close
    ping: bytes  # the server's Engine.IO PING, a text message
    pong: bytes  # the answer to it
    ended: tuple[bytes, ...]  # text prefixes that end the session (Engine.IO CLOSE, DISCONNECT)
    event: bytes  # text prefix of an EVENT
    binary_event: bytes  # text prefix of a BINARY_EVENT, followed by "<attachments>-"
    msgpack: bool  # every packet is one binary message


def session_bytes(msgpack: bool) -> SessionBytes:
    """The SessionBytes of a default-namespace session with the JSON or msgpack serializer."""
    if msgpack:
        connect = (OP_BINARY, encode_connect_msgpack())
        disconnect = (OP_BINARY, encode_disconnect_msgpack())
    else:
        connect = (OP_TEXT, encode_connect().encode())
        disconnect = (OP_TEXT, encode_disconnect().encode())
    return SessionBytes(
        connect=connect,
        disconnect=disconnect,
        ping=PING.encode(),
        pong=PONG.encode(),
        ended=(CLOSE.encode(), f"{MESSAGE}{DISCONNECT}".encode()),
        event=f"{MESSAGE}{EVENT}".encode(),
        binary_event=f"{MESSAGE}{BINARY_EVENT}".encode(),
        msgpack=msgpack,
    )


def event_prefix(event: str) -> bytes:
    """The text every JSON packet of ``event`` starts with (``42["name"``), followed by
    ``,`` or ``]``: a load client recognises a reply event without decoding it."""
    return f"{MESSAGE}{EVENT}[{compact_dumps(event)}".encode()


def ack_prefix() -> bytes:
    """The text every JSON ack starts with; the ack id's digits follow, then ``[``."""
    return f"{MESSAGE}{ACK}".encode()


def event_with_ack_parts(event: str, *args: Any) -> tuple[bytes, bytes]:
    """(head, tail) of a JSON event with an ack id: the message is head + digits + tail.

    Only an event without binary attachments splits this way (one text message).
    """
    messages = encode_event(event, *args)
    if len(messages) != 1:
        raise SocketIOError("an event with binary attachments has no one-message ack form")
    text = str(messages[0]).encode()
    split = text.index(b"[")
    return text[:split], text[split:]


def event_name(text: str) -> str | None:
    """The name of the event in a JSON EVENT or BINARY_EVENT message (maybe cut short)."""
    if len(text) < 2 or text[0] != MESSAGE or text[1] not in (str(EVENT), str(BINARY_EVENT)):
        return None
    start = text.find("[")
    with contextlib.suppress(ValueError):
        name, _ = json.JSONDecoder().raw_decode(text, start + 1)
        return name if isinstance(name, str) else None
    return None


def event_key(data: bytes) -> tuple[str, bytes | None]:
    """How a load client tallies an unexpected message (maybe cut short): ("event:NAME",
    the prefix every such event starts with) for a JSON event, else ("frame", None)."""
    text = data.decode(errors="replace")
    name = event_name(text)
    if name is None:
        return "frame", None
    return f"event:{name}", (text[: text.index("[") + 1] + compact_dumps(name)).encode()
