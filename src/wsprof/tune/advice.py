"""What to configure, and what it would save: pure functions of the tune results (no I/O)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from wsprof.micro.serializers import BASELINE

_SHIM_CACHED = """\
# json_cached.py: a json= module for python-socketio
import json
from engineio.json import loads  # engineio's loads: it refuses 100-digit integers
_encode = json.JSONEncoder(separators=(",", ":")).encode
def dumps(obj, **kwargs):
    return _encode(obj)"""

_SHIM_MSGSPEC = """\
# msgspec_json.py: a json= module for python-socketio (Engine.IO needs str, not bytes)
import msgspec
_encode = msgspec.json.Encoder().encode
loads = msgspec.json.Decoder().decode
def dumps(obj, **kwargs):
    return _encode(obj).decode()"""

NO_CLIENT_CHANGE = "none: the wire stays JSON text, which every Socket.IO client reads"
NO_INT_GUARD = (
    "; note: engineio's default loads refuses integers of over 100 digits (a CPU-exhaustion "
    "guard); this loads accepts thousands of digits"
)

CONFIGS: dict[str, dict[str, str]] = {
    "json": {
        "server": "socketio.AsyncServer()  # the default serializer; nothing to change",
        "client": NO_CLIENT_CHANGE,
    },
    "json-cached": {
        "server": _SHIM_CACHED + "\n\nsocketio.AsyncServer(json=json_cached)",
        "client": NO_CLIENT_CHANGE,
    },
    "orjson-shim": {
        "server": "from wsprof.servers import orjson_shim  # or copy that 60-line module\n"
        "socketio.AsyncServer(json=orjson_shim)",
        "client": NO_CLIENT_CHANGE,
    },
    "msgspec": {
        "server": _SHIM_MSGSPEC + "\n\nsocketio.AsyncServer(json=msgspec_json)",
        "client": NO_CLIENT_CHANGE + NO_INT_GUARD,
    },
    "ujson": {
        "server": "import ujson\nsocketio.AsyncServer(json=ujson)",
        "client": NO_CLIENT_CHANGE + ' (ujson writes "/" as "\\/", still JSON)' + NO_INT_GUARD,
    },
    "msgpack": {
        "server": 'socketio.AsyncServer(serializer="msgpack")',
        "client": "every client at once: JavaScript io(url, { parser: require("
        '"socket.io-msgpack-parser") }); Python socketio.AsyncClient(serializer="msgpack"); '
        "a JSON client cannot talk to a msgpack server",
    },
}
"""python-socketio configuration per serializer (``socketio.Server`` takes the same arguments)."""

# A scenario variant's ``serializer`` option -> the codec it runs.
SCENARIO_SERIALIZERS = {"json": "json", "orjson": "orjson-shim", "msgpack": "msgpack"}


def cost_ns(result: dict[str, Any]) -> float | None:
    """One dumps + one loads: what an echo's server pays per message."""
    if result["dumps_ns"] is None or result["loads_ns"] is None:
        return None
    return float(result["dumps_ns"] + result["loads_ns"])


def best(results: Sequence[dict[str, Any]], wire: str | None = None) -> dict[str, Any] | None:
    """The cheapest compatible, measured serializer (of one ``wire``, if given), or None."""
    candidates = [
        r
        for r in results
        if r["compatible"] and cost_ns(r) is not None and (wire is None or r["wire"] == wire)
    ]
    return min(candidates, key=lambda r: cost_ns(r) or 0.0, default=None)


def _spread_ns(result: dict[str, Any]) -> float:
    return float((result.get("dumps_spread_ns") or 0.0) + (result.get("loads_spread_ns") or 0.0))


def within_noise(results: Sequence[dict[str, Any]], choice: dict[str, Any]) -> list[str]:
    """Compatible serializers whose dumps+loads is within both spreads (MAD) of ``choice``'s:
    on a contended host the order among them is not a finding."""
    best_cost = cost_ns(choice) or 0.0
    return [
        r["serializer"]
        for r in results
        if r is not choice
        and r["compatible"]
        and (cost := cost_ns(r)) is not None
        and cost - best_cost <= _spread_ns(r) + _spread_ns(choice)
    ]


def recommendation(results: Sequence[dict[str, Any]]) -> dict[str, Any] | None:
    """The best choice with its configuration, and the best JSON-wire one when they differ."""
    choice = best(results)
    if choice is None:
        return None
    by_name = {r["serializer"]: r for r in results}
    baseline = cost_ns(by_name[BASELINE]) if BASELINE in by_name else None
    out: dict[str, Any] = {
        "serializer": choice["serializer"],
        **CONFIGS[choice["serializer"]],
        "speedup_vs_json": (baseline / cost) if baseline and (cost := cost_ns(choice)) else None,
        "within_noise": within_noise(results, choice),
    }
    json_choice = best(results, wire="json")
    if choice["wire"] != "json" and json_choice is not None:
        out["without_client_change"] = {
            "serializer": json_choice["serializer"],
            **CONFIGS[json_choice["serializer"]],
        }
    return out


def projection(scenario: dict[str, Any], results: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Projected server CPU saving per message for each variant of a scenario result.

    The variant's attributed json layer (µs/message) is scaled by the ratio of
    the best choice's dumps+loads to the variant's own serializer's, as
    measured on the tuned samples.
    """
    choice = best(results)
    by_name = {r["serializer"]: r for r in results}
    rows = []
    for variant in scenario.get("variants", []):
        layer = (variant.get("layers") or {}).get("json")
        current = SCENARIO_SERIALIZERS.get((variant.get("options") or {}).get("serializer", ""))
        row: dict[str, Any] = {
            "variant": variant.get("name"),
            "serializer": current,
            "json_us_per_msg": layer["us_per_msg"] if layer else None,
            "server_cpu_us_per_msg": variant.get("server_cpu_us_per_msg"),
            "saving_us_per_msg": None,
            "saving_share_of_cpu": None,
        }
        cur = cost_ns(by_name[current]) if current in by_name else None
        new = cost_ns(choice) if choice else None
        if layer and cur and new is not None:
            saving = layer["us_per_msg"] * max(0.0, 1.0 - new / cur)
            row["saving_us_per_msg"] = saving
            cpu = variant.get("server_cpu_us_per_msg")
            row["saving_share_of_cpu"] = saving / cpu if cpu else None
        rows.append(row)
    payload = (scenario.get("plan") or {}).get("payload")
    return {
        "scenario": scenario.get("scenario"),
        "to": choice["serializer"] if choice else None,
        "variants": rows,
        "assumptions": [
            "the json layer attributed by py-spy is this serializer's dumps + loads per message "
            "(one each, an echo); a broadcast's dumps is per emit, not per delivery",
            f"it scales as dumps+loads do on the tuned samples; the scenario sent payload "
            f"{payload!r}, the ratio may differ for other sizes",
            "variants without a serializer option or an attributed json layer are not projected",
            "a switch to msgpack also changes Socket.IO framing costs, which are not projected",
        ],
    }
