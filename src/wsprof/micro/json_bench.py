"""Serialization costs: json (as python-socketio calls it), orjson and msgpack.

The ``json`` variant is the baseline because it is what a default
python-socketio server runs: ``json.dumps(data, separators=(',', ':'))``,
which builds a new ``JSONEncoder`` on every call. ``json-cached`` reuses one
compact encoder, to show what that construction costs. ``orjson-shim`` is
orjson behind wsprof's ``json=`` stand-in (``wsprof.servers.orjson_shim``),
which is what the json-encoding scenario's orjson server pays: keyword
mapping plus bytes-to-str. ``loads`` takes the text a server receives (str)
for json and orjson, and the msgpack bytes for msgpack.
"""

from __future__ import annotations

from collections.abc import Callable
from time import perf_counter
from typing import Any

CASES: dict[str, tuple[str, ...]] = {
    "dumps": ("json", "json-cached", "orjson", "orjson-shim", "msgpack"),
    "loads": ("json", "orjson", "msgpack"),
}
PAYLOAD_KINDS: tuple[str, ...] = ("json",)
INNER_LOOPS: dict[tuple[str, str], int] = {}
NOT_APPLICABLE_REASON = (
    "JSON cannot encode bytes; python-socketio sends them as attachments, measured under framing"
)

TimeFunc = Callable[[int], float]
SEPARATORS = (",", ":")


def _loop(call: Callable[[Any], Any], arg: Any) -> TimeFunc:
    """Time ``call(arg)`` in a tight loop (a C function called directly: no wrapper per op)."""

    def time_func(loops: int) -> float:
        t0 = perf_counter()
        for _ in range(loops):
            call(arg)
        return perf_counter() - t0

    return time_func


def _compact_dumps(dumps: Callable[..., Any], value: Any) -> TimeFunc:
    """Time ``dumps(value, separators=...)``, the call python-socketio makes per packet."""
    separators = SEPARATORS

    def time_func(loops: int) -> float:
        t0 = perf_counter()
        for _ in range(loops):
            dumps(value, separators=separators)
        return perf_counter() - t0

    return time_func


def _json_dumps(value: Any) -> TimeFunc:
    import json

    return _compact_dumps(json.dumps, value)


def _orjson_shim_dumps(value: Any) -> TimeFunc:
    from wsprof.servers import orjson_shim

    return _compact_dumps(orjson_shim.dumps, value)


def _dumps(variant: str, value: Any) -> TimeFunc:
    if variant == "json":
        return _json_dumps(value)
    if variant == "orjson-shim":
        return _orjson_shim_dumps(value)
    if variant == "json-cached":
        import json

        return _loop(json.JSONEncoder(separators=SEPARATORS).encode, value)
    if variant == "orjson":
        import orjson

        return _loop(orjson.dumps, value)
    if variant == "msgpack":
        import msgpack

        return _loop(msgpack.packb, value)
    raise KeyError(variant)


def _loads(variant: str, value: Any) -> TimeFunc:
    import json

    text = json.dumps(value, separators=SEPARATORS)
    if variant == "json":
        return _loop(json.loads, text)
    if variant == "orjson":
        import orjson

        return _loop(orjson.loads, text)
    if variant == "msgpack":
        import msgpack

        return _loop(msgpack.unpackb, msgpack.packb(value))
    raise KeyError(variant)


def timer(case: str, variant: str, payload: str | None) -> TimeFunc:
    """pyperf time function for one ``case`` of ``payload``'s value."""
    if payload is None:
        raise KeyError((case, variant, payload))
    from wsprof.payloads import get_payload

    value = get_payload(payload).value
    if case == "dumps":
        return _dumps(variant, value)
    if case == "loads":
        return _loads(variant, value)
    raise KeyError(case)
