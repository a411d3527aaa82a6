"""The serializers ``wsprof tune serialization`` weighs, called exactly as python-socketio calls them.

python-socketio hands its serializer the event's data list
(``[event, *args]``): a ``json=`` module gets ``dumps(data, separators=(',', ':'))``
and must return ``str`` (Engine.IO picks text or binary frames by type), and
``loads(text)``; the msgpack serializer (``socketio.msgpack_packet``) packs the
whole packet dict with ``msgpack.dumps`` and unpacks it with ``msgpack.loads``.
Each ``Codec`` here is that pair of calls, so the timing rows
(``wsprof.micro.serializer_bench``) and the fidelity check (``wsprof.tune``)
measure the same thing a server runs. Imports are lazy: a pyperf worker loads
only the library of the row it times.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

EVENT = "message"
SEPARATORS = (",", ":")
EVENT_PACKET_TYPE = 2  # socketio.packet.EVENT


@dataclass(frozen=True)
class Codec:
    """One serializer: how to build its (dumps, loads) pair and what it carries on the wire."""

    name: str
    description: str
    wire: str  # "json" (a text frame, any Socket.IO client reads it) or "msgpack" (binary frame)
    build: Callable[[], tuple[Callable[[Any], Any], Callable[[Any], Any]]]


def packet_input(value: Any) -> Any:
    """What python-socketio passes to ``dumps`` when a handler emits ``value``."""
    return [EVENT, value]


def msgpack_packet_input(value: Any) -> dict[str, Any]:
    """The packet dict ``MsgPackPacket.encode`` packs (``_to_dict``, default namespace)."""
    return {"type": EVENT_PACKET_TYPE, "data": [EVENT, value], "nsp": "/"}


def _engineio_json() -> tuple[Callable[[Any], Any], Callable[[Any], Any]]:
    # python-socketio's default json is engineio.json: the stdlib, whose loads
    # calls a Python parse_int on every integer to refuse huge ones.
    from engineio import json as engineio_json

    separators = SEPARATORS

    def dumps(data: Any) -> str:
        return engineio_json.dumps(data, separators=separators)

    return dumps, engineio_json.loads


def _json_cached() -> tuple[Callable[[Any], Any], Callable[[Any], Any]]:
    # A json= module whose dumps reuses one compact encoder; loads stays engineio's.
    import json

    from engineio import json as engineio_json

    return json.JSONEncoder(separators=SEPARATORS).encode, engineio_json.loads


def _orjson_shim() -> tuple[Callable[[Any], Any], Callable[[Any], Any]]:
    from wsprof.servers import orjson_shim

    separators = SEPARATORS

    def dumps(data: Any) -> str:
        return orjson_shim.dumps(data, separators=separators)

    return dumps, orjson_shim.loads


def _msgspec() -> tuple[Callable[[Any], Any], Callable[[Any], Any]]:
    # A json= shim: one reused Encoder, bytes decoded to str as Engine.IO needs.
    import msgspec

    encode = msgspec.json.Encoder().encode
    decode = msgspec.json.Decoder().decode

    def dumps(data: Any) -> str:
        return encode(data).decode()

    return dumps, decode


def _ujson() -> tuple[Callable[[Any], Any], Callable[[Any], Any]]:
    # ujson takes separators= itself, so the module is passed to json= unchanged.
    import ujson

    separators = SEPARATORS

    def dumps(data: Any) -> str:
        return ujson.dumps(data, separators=separators)

    return dumps, ujson.loads


def _msgpack() -> tuple[Callable[[Any], Any], Callable[[Any], Any]]:
    import msgpack

    return msgpack.dumps, msgpack.loads


CODECS: dict[str, Codec] = {
    c.name: c
    for c in (
        Codec("json", "engineio.json, python-socketio's default", "json", _engineio_json),
        Codec("json-cached", "stdlib json, one reused compact encoder", "json", _json_cached),
        Codec("orjson-shim", "orjson through wsprof.servers.orjson_shim", "json", _orjson_shim),
        Codec("msgspec", "msgspec.json behind a json= shim", "json", _msgspec),
        Codec("ujson", "the ujson module as json=", "json", _ujson),
        Codec("msgpack", "python-socketio's msgpack packets", "msgpack", _msgpack),
    )
}
"""Every serializer, in the order tables list them; ``json`` is the baseline."""

BASELINE = "json"


def encode_input(codec: Codec, value: Any) -> Any:
    """The object ``codec``'s dumps receives for an event carrying ``value``."""
    return msgpack_packet_input(value) if codec.wire == "msgpack" else packet_input(value)


def wire_bytes(codec: Codec, encoded: Any) -> int:
    """Bytes of the Socket.IO packet inside its WebSocket frame (Engine.IO ``4`` + ``2`` on text)."""
    if codec.wire == "msgpack":
        return len(encoded)
    return len(b"42") + len(str(encoded).encode("utf-8", "surrogatepass"))
