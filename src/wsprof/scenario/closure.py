"""Closure: does the attributed cost of a layer agree with the microbenchmarks?

For the payload and message pattern of a scenario, `wsprof micro` predicts what
a layer should cost per echoed message (e.g. one json.loads of the incoming
event + one json.dumps of the outgoing one). Attribution measures it inside the
real server. Both are reported with their ratio; a large disagreement is a
finding (hidden work, or a model of the message path that is wrong), not
something to tune away.

This module is pure (models and arithmetic); `wsprof.scenario.predict` runs
the micro rows.
"""

from __future__ import annotations

from typing import Any

from wsprof.micro.harness import predict_ns
from wsprof.payloads import get_payload

Row = tuple[str, str, str, str | None]
"""One `wsprof micro` row: (layer, case, variant, payload)."""

JSON_VARIANT = {"json": "json", "orjson": "orjson", "msgpack": "msgpack"}


def models(stack: str, options: dict[str, str], payload: str) -> list[dict[str, Any]]:
    """The micro rows that predict each layer's cost per echoed message for this variant."""
    found: list[dict[str, Any]] = []
    is_json_payload = not get_payload(payload).is_binary
    if stack.startswith("socketio-"):
        serializer = options.get("serializer", "json")
        if is_json_payload:
            variant = JSON_VARIANT[serializer]
            found.append(
                {
                    "layer": "json",
                    "plus": [
                        ("json", "loads", variant, payload),
                        ("json", "dumps", variant, payload),
                    ],
                    "minus": [],
                    "basis": f"1 {variant} loads + 1 dumps of {payload}",
                }
            )
        if serializer == "json" and is_json_payload:
            found.append(
                {
                    "layer": "socketio-framing",
                    "plus": [
                        ("framing", "engineio-decode", "python-engineio", payload),
                        ("framing", "socketio-decode", "python-socketio", payload),
                        ("framing", "socketio-encode", "python-socketio", payload),
                        ("framing", "engineio-encode", "python-engineio", payload),
                    ],
                    # Packet.encode/decode call json inside; attribution charges that to `json`.
                    "minus": [
                        ("json", "loads", "json", payload),
                        ("json", "dumps", "json", payload),
                    ],
                    "basis": f"Socket.IO + Engine.IO decode + encode of {payload}, less their json",
                }
            )
    # Task/green-thread hand-offs per echoed message: a raw echo wakes the
    # handler once; python-socketio wakes its reader, starts a task (or green
    # thread) per event (async_handlers) and hands the reply to its writer
    # through a queue.
    handoffs = 3 if stack.startswith("socketio-") else 1
    why = (
        "reader wake, per-event task, writer queue"
        if handoffs == 3
        else "the reader wakes the handler"
    )
    if stack in ("starlette-raw", "websockets-raw", "socketio-asgi"):
        loop = options.get("loop", "uvloop")
        found.append(
            {
                "layer": "event-loop",
                "plus": [("asyncio", "handoff", loop, None)] * handoffs,
                "minus": [],
                "basis": f"{handoffs} {loop} task handoff(s) ({why})",
            }
        )
    if stack in ("socketio-eventlet", "socketio-gevent"):
        hub = stack.removeprefix("socketio-")
        found.append(
            {
                "layer": "greenlet-switching",
                "plus": [("greenlet", "handoff", hub, None)] * handoffs,
                "minus": [],
                "basis": f"{handoffs} {hub} green-thread handoff(s) ({why})",
            }
        )
    return found


def needed_rows(variants: list[tuple[str, dict[str, str]]], payload: str) -> list[Row]:
    """Every micro row the variants' models use, each once, in first-use order."""
    rows: list[Row] = []
    for stack, options in variants:
        for model in models(stack, options, payload):
            for row in model["plus"] + model["minus"]:
                if row not in rows:
                    rows.append(row)
    return rows


def closure_entries(
    stack: str,
    options: dict[str, str],
    payload: str,
    layers: dict[str, dict[str, float]],
    micro: list[dict[str, Any]],
) -> list[dict[str, Any]]:
    """Attributed against predicted µs/message per modelled layer; rows ``micro`` lacks are skipped."""
    entries = []
    for model in models(stack, options, payload):
        plus = predict_ns(micro, model["plus"])
        minus = predict_ns(micro, model["minus"]) if model["minus"] else 0.0
        if plus is None or minus is None:
            continue
        predicted_us = max(plus - minus, 0.0) / 1000.0
        attributed_us = layers.get(model["layer"], {}).get("us_per_msg", 0.0)
        entries.append(
            {
                "layer": model["layer"],
                "attributed_us": attributed_us,
                "predicted_us": predicted_us,
                "ratio": attributed_us / predicted_us if predicted_us > 0 else None,
                "basis": model["basis"],
                "micro_rows": [
                    "/".join(str(p) for p in row) for row in model["plus"] + model["minus"]
                ],
            }
        )
    return entries
