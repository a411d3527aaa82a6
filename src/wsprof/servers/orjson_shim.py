"""A ``json``-module stand-in backed by orjson, for python-socketio's ``json=`` option.

python-socketio 5.18 and python-engineio 4.15 call exactly these:

- ``socketio.packet.Packet.encode``: ``json.dumps(data, separators=(',', ':'))``
- ``engineio.packet.Packet.encode``: ``json.dumps(data, separators=(',', ':'))``
- ``engineio.base_server`` (HTTP error bodies): ``json.dumps(message)``
- both decoders: ``json.loads(text)``

orjson rejects the ``separators`` keyword, so the stdlib signature is mapped
here. orjson's output is always compact, which is what ``(',', ':')`` asks
for; for a plain ``dumps(obj)`` it differs from the stdlib only in
whitespace, which no JSON parser sees. orjson never escapes non-ASCII, so
``ensure_ascii`` changes bytes on the wire, not the decoded value: we accept
and ignore it. Keywords whose meaning we could not keep raise ``TypeError``
instead of being silently dropped.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson

JSONDecodeError = orjson.JSONDecodeError

# Non-string dict keys are stringified by the stdlib (``{1: 2}`` -> ``{"1":2}``),
# and orjson only does that with this flag.
_BASE_OPTIONS = orjson.OPT_NON_STR_KEYS

_IGNORED_DUMPS_KWARGS = frozenset({"separators", "ensure_ascii", "check_circular", "allow_nan"})


def dumps(obj: Any, **kwargs: Any) -> str:
    """Serialize like ``json.dumps`` (compact) and return ``str`` as the stdlib does.

    The ``str`` return matters: Engine.IO decides text vs binary frames by type.
    """
    options = _BASE_OPTIONS
    default: Callable[[Any], Any] | None = kwargs.pop("default", None)
    if kwargs.pop("sort_keys", False):
        options |= orjson.OPT_SORT_KEYS
    if kwargs.pop("indent", None):
        options |= orjson.OPT_INDENT_2
    unsupported = set(kwargs) - _IGNORED_DUMPS_KWARGS
    if unsupported:
        raise TypeError(f"orjson_shim.dumps() does not support {', '.join(sorted(unsupported))}")
    return orjson.dumps(obj, default=default, option=options).decode()


def loads(s: str | bytes | bytearray | memoryview, **kwargs: Any) -> Any:
    """Parse like ``json.loads``.

    ``parse_int`` is accepted and ignored: engineio uses it only to refuse
    huge integers, and orjson already refuses integers beyond 64 bits.
    """
    kwargs.pop("parse_int", None)
    if kwargs:
        raise TypeError(f"orjson_shim.loads() does not support {', '.join(sorted(kwargs))}")
    return orjson.loads(s)
