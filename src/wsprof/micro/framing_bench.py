"""Socket.IO and Engine.IO packet costs, with python-socketio's own packet classes.

The calls are the ones the server makes per event: ``socketio.packet.Packet``
encodes ``["echo", value]`` (a BINARY_EVENT plus attachments when the value
holds bytes, after the binary scan every emit pays), and Engine.IO wraps
each resulting piece in a MESSAGE packet. Decoding is the reverse, with
``add_attachment`` for binary events. The JSON inside is the stdlib's, as a
default python-socketio server uses; the json layer isolates that part.
"""

from __future__ import annotations

from collections.abc import Callable
from time import perf_counter
from typing import Any

CASES: dict[str, tuple[str, ...]] = {
    "socketio-encode": ("python-socketio",),
    "socketio-decode": ("python-socketio",),
    "engineio-encode": ("python-engineio",),
    "engineio-decode": ("python-engineio",),
}
PAYLOAD_KINDS: tuple[str, ...] = ("json", "binary")
INNER_LOOPS: dict[tuple[str, str], int] = {}

TimeFunc = Callable[[int], float]
EVENT_NAME = "echo"


def socketio_pieces(value: Any) -> tuple[str, list[bytes]]:
    """The Socket.IO text packet and binary attachments the server emits for ``value``."""
    from socketio import packet

    encoded = packet.Packet(packet.EVENT, data=[EVENT_NAME, value]).encode()
    if isinstance(encoded, list):
        return encoded[0], list(encoded[1:])
    return encoded, []


def _socketio_encode(value: Any) -> TimeFunc:
    from socketio.packet import EVENT, Packet

    data = [EVENT_NAME, value]

    def time_func(loops: int) -> float:
        t0 = perf_counter()
        for _ in range(loops):
            Packet(EVENT, data=data).encode()
        return perf_counter() - t0

    return time_func


def _socketio_decode(value: Any) -> TimeFunc:
    from socketio.packet import Packet

    text, attachments = socketio_pieces(value)
    check = Packet(encoded_packet=text)
    for attachment in attachments:
        check.add_attachment(attachment)
    if check.data != [EVENT_NAME, value]:
        raise AssertionError("socketio decode does not round-trip the payload")

    def time_func(loops: int) -> float:
        t0 = perf_counter()
        for _ in range(loops):
            Packet(encoded_packet=text)
        return perf_counter() - t0

    def time_func_binary(loops: int) -> float:
        t0 = perf_counter()
        for _ in range(loops):
            pkt = Packet(encoded_packet=text)
            for attachment in attachments:
                pkt.add_attachment(attachment)
        return perf_counter() - t0

    return time_func_binary if attachments else time_func


def _engineio_encode(value: Any) -> TimeFunc:
    from engineio.packet import MESSAGE, Packet

    text, attachments = socketio_pieces(value)
    pieces: list[str | bytes] = [text, *attachments]

    def time_func(loops: int) -> float:
        t0 = perf_counter()
        for _ in range(loops):
            for piece in pieces:
                Packet(MESSAGE, data=piece).encode()
        return perf_counter() - t0

    return time_func


def _engineio_decode(value: Any) -> TimeFunc:
    from engineio.packet import MESSAGE, Packet

    text, attachments = socketio_pieces(value)
    frames = [Packet(MESSAGE, data=piece).encode() for piece in [text, *attachments]]
    if Packet(encoded_packet=frames[0]).data != text:
        raise AssertionError("engineio decode does not round-trip the Socket.IO text")

    def time_func(loops: int) -> float:
        t0 = perf_counter()
        for _ in range(loops):
            for frame in frames:
                Packet(encoded_packet=frame)
        return perf_counter() - t0

    return time_func


_FACTORIES: dict[str, Callable[[Any], TimeFunc]] = {
    "socketio-encode": _socketio_encode,
    "socketio-decode": _socketio_decode,
    "engineio-encode": _engineio_encode,
    "engineio-decode": _engineio_decode,
}


def timer(case: str, variant: str, payload: str | None) -> TimeFunc:
    """pyperf time function for one event of ``payload`` (all its packets)."""
    if variant not in CASES[case] or payload is None:
        raise KeyError((case, variant, payload))
    from wsprof.payloads import get_payload

    return _FACTORIES[case](get_payload(payload).value)
