"""Does a serializer give back what it was given? Round trips of each sample, compared strictly.

Strictly means by type as well as value: ``True`` is not ``1``, ``1.0`` is
not ``1``, a tuple that comes back a list and bytes that come back str are
changes, and ``NaN`` must come back ``NaN``. For the JSON wire the text must
also be JSON a browser's ``JSON.parse`` accepts (the stdlib writes ``NaN`` and
``Infinity``, which it does not). The first difference in a sample is
reported with its path (``$.items[3].id``), so the user can find it.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any

from wsprof.micro.samples import Sample
from wsprof.micro.serializers import Codec, encode_input

MAX_PROBLEMS = 10  # per serializer; the rest are counted, not listed


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _key_path(path: str, key: Any) -> str:
    if isinstance(key, str) and key.isidentifier():
        return f"{path}.{key}"
    return f"{path}[{key!r}]"


def difference(expected: Any, got: Any, path: str = "$") -> str | None:
    """Where and how ``got`` differs from ``expected`` (type-strict), or None if it does not."""
    if type(expected) is not type(got):
        return (
            f"{path}: {type(expected).__name__} {_short(expected)} "
            f"came back as {type(got).__name__} {_short(got)}"
        )
    if isinstance(expected, float):
        same = (math.isnan(expected) and math.isnan(got)) or (
            expected == got and math.copysign(1.0, expected) == math.copysign(1.0, got)
        )
        return None if same else f"{path}: {expected!r} came back as {got!r}"
    if isinstance(expected, dict):
        for key in expected:
            if key not in got:
                return (
                    f"{path}: key {_short(key)} ({type(key).__name__}) is missing; "
                    f"keys came back as {_short(list(got))}"
                )
        if len(got) != len(expected):
            return f"{path}: {len(got)} keys came back for {len(expected)}"
        for key, value in expected.items():
            found = difference(value, got[key], _key_path(path, key))
            if found:
                return found
        return None
    if isinstance(expected, (list, tuple)):
        if len(got) != len(expected):
            return f"{path}: {len(got)} items came back for {len(expected)}"
        for i, (a, b) in enumerate(zip(expected, got, strict=True)):
            found = difference(a, b, f"{path}[{i}]")
            if found:
                return found
        return None
    return None if expected == got else f"{path}: {_short(expected)} came back as {_short(got)}"


INT64_MIN, UINT64_MAX = -(2**63), 2**64 - 1


def suspect(value: Any, path: str = "$") -> str | None:
    """The first value serializers commonly reject (for a dumps error that names no place)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int) and not INT64_MIN <= value <= UINT64_MAX:
        return f"{path}: int beyond 64 bits"
    if isinstance(value, float) and not math.isfinite(value):
        return f"{path}: {value!r}"
    if isinstance(value, (bytes, bytearray)):
        return f"{path}: bytes"
    if isinstance(value, str) and any("\ud800" <= ch <= "\udfff" for ch in value):
        return f"{path}: a lone surrogate in a str"
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                return f"{path}: a {type(key).__name__} key {_short(key)}"
            found = suspect(item, _key_path(path, key))
            if found:
                return found
    if isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            found = suspect(item, f"{path}[{i}]")
            if found:
                return found
    return None


JS_SAFE_INT = 2**53 - 1  # Number.MAX_SAFE_INTEGER


def js_unsafe_int(value: Any, path: str = "$") -> str | None:
    """The first integer a JavaScript client's JSON.parse would round (beyond 2^53), or None."""
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > JS_SAFE_INT:
        return path
    children: Any = ()
    if isinstance(value, dict):
        children = ((_key_path(path, k), v) for k, v in value.items())
    elif isinstance(value, (list, tuple)):
        children = ((f"{path}[{i}]", v) for i, v in enumerate(value))
    for child_path, child in children:
        found = js_unsafe_int(child, child_path)
        if found:
            return found
    return None


def client_notes(samples: Sequence[Sample]) -> list[str]:
    """What no server-side choice fixes: integers a browser reads as rounded floats."""
    unsafe = [(s.label, where) for s in samples if (where := js_unsafe_int(s.value))]
    if not unsafe:
        return []
    label, where = unsafe[0]
    more = f" (and {len(unsafe) - 1} more samples)" if len(unsafe) > 1 else ""
    return [
        f"sample {label}{more}: {where} is an integer beyond 2^53; JavaScript clients parse it "
        "as a rounded float whatever the server's serializer (send it as a string)"
    ]


def _reject_constant(name: str) -> Any:
    raise ValueError(f"writes {name}, which is not JSON: a browser's JSON.parse rejects the packet")


def _decoded_value(codec: Codec, decoded: Any) -> Any:
    data = decoded["data"] if codec.wire == "msgpack" else decoded
    if not isinstance(data, list) or len(data) != 2:
        raise ValueError(f"the decoded packet data is {_short(data)}, not [event, value]")
    return data[1]


def _error(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}".rstrip(": ")


def check_sample(codec: Codec, value: Any) -> tuple[str | None, Any]:
    """(what is wrong with ``value``'s round trip or None, the wire message or None)."""
    dumps, loads = codec.build()
    try:
        wire = dumps(encode_input(codec, value))
    except Exception as exc:  # any failure is the finding
        where = suspect(value)
        return f"dumps raises {_error(exc)}" + (f" (at {where})" if where else ""), None
    if codec.wire == "json":
        try:
            json.loads(wire, parse_constant=_reject_constant)
        except ValueError as exc:
            return str(exc) if "JSON.parse" in str(exc) else f"not JSON: {_error(exc)}", wire
    try:
        back = _decoded_value(codec, loads(wire))
    except Exception as exc:  # any failure is the finding
        where = suspect(value)
        return f"loads raises {_error(exc)}" + (f" (at {where})" if where else ""), wire
    return difference(value, back), wire


def check(codec: Codec, samples: Sequence[Sample]) -> list[str]:
    """Problems of ``codec`` on ``samples``, one line each naming the sample; empty if none."""
    problems: list[str] = []
    failing = 0
    for sample in samples:
        problem, _ = check_sample(codec, sample.value)
        if problem is None:
            continue
        failing += 1
        if len(problems) < MAX_PROBLEMS:
            problems.append(f"sample {sample.label}: {problem}")
    if failing > len(problems):
        problems.append(f"... and {failing - len(problems)} more samples")
    return problems
