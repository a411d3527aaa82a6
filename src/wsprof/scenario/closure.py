"""Closure: does the attributed cost of a layer agree with counted events x micro costs?

An instrumented window (:mod:`wsprof.servers.counting`) counts, per message,
what the server did: serializer calls, Engine.IO/Socket.IO packet encodes and
decodes, asyncio task steps and callbacks, greenlet switches. Each layer's
prediction is the sum of those counts times the `wsprof micro` cost of one such
event; attribution measures the layer inside the real server. Both are reported
with their ratio, the counts beside them, and, when the ratio leaves
[RATIO_LOW, RATIO_HIGH], what the model leaves out: a finding, never a tuned
constant.

Without counts (a user app, or a variant whose instrumented window failed)
there is no prediction: the assumed hand-offs per message this replaced are
gone, so there is one way to predict a layer.

This module is pure (models and arithmetic); `wsprof.scenario.predict` runs
the micro rows and the runner records the counts.
"""

from __future__ import annotations

from typing import Any

from wsprof.micro.harness import lookup
from wsprof.payloads import get_payload

Row = tuple[str, str, str, str | None]
"""One `wsprof micro` row: (layer, case, variant, payload)."""

#: The band a prediction is said to close within; outside it the entry names what the model misses.
RATIO_LOW = 0.67
RATIO_HIGH = 1.5

JSON_VARIANT = {"json": "json", "orjson": "orjson"}
PACKET_ROWS = (
    ("eio_decode", "engineio-decode", "python-engineio"),
    ("sio_decode", "socketio-decode", "python-socketio"),
    ("sio_encode", "socketio-encode", "python-socketio"),
    ("eio_encode", "engineio-encode", "python-engineio"),
)
GREENLET_SWITCH: Row = ("greenlet", "switch", "greenlet", None)


def per_message(counted: dict[str, Any]) -> dict[str, float]:
    """Counted events of the instrumented window divided by its messages."""
    messages = counted.get("messages", 0)
    if not messages:
        return {}
    return {key: n / messages for key, n in counted.get("counts", {}).items()}


def counted_events(counted: dict[str, Any] | None) -> dict[str, Any] | None:
    """The JSON form of a variant's instrumented window: events per message, or why none."""
    if counted is None:
        return None
    if "error" in counted:
        return {"error": counted["error"]}
    return {
        "messages": counted["messages"],
        "per_message": {k: round(v, 3) for k, v in per_message(counted).items()},
        "counters": counted["counters"],
        "loops": counted["loops"],
        "callbacks_countable": counted["callbacks_countable"],
    }


def _serializer_terms(
    options: dict[str, str], payload: str, per: dict[str, float]
) -> list[tuple[Row, float]]:
    """(json micro row, calls per message) for the serializer calls that were counted."""
    if get_payload(payload).is_binary:
        return []  # bytes travel as attachments: no serializer row encodes them
    terms: list[tuple[Row, float]] = []
    variant = JSON_VARIANT.get(options.get("serializer", "json"), "json")
    for prefix, row_variant in (("json", variant), ("msgpack", "msgpack")):
        for case in ("loads", "dumps"):
            n = per.get(f"{prefix}_{case}", 0.0)
            if n > 0:
                terms.append((("json", case, row_variant, payload), n))
    return terms


def _loop_kind(counted: dict[str, Any]) -> str | None:
    loops = counted.get("loops") or []
    return "uvloop" if "uvloop" in loops else ("asyncio" if loops else None)


def models(options: dict[str, str], payload: str, counted: dict[str, Any]) -> list[dict[str, Any]]:
    """Per layer: the (micro row, events per message) terms predicting it from ``counted``."""
    per = per_message(counted)
    if not per:
        return []
    found: list[dict[str, Any]] = []
    json_terms = _serializer_terms(options, payload, per)
    if json_terms:
        found.append(
            {
                "layer": "json",
                "plus": json_terms,
                "minus": [],
                "events": {f"{r[2]} {r[1]}": n for r, n in json_terms},
            }
        )
    packets = [(key, case, variant) for key, case, variant in PACKET_ROWS if per.get(key, 0) > 0]
    if (
        packets
        and options.get("serializer", "json") == "json"
        and not get_payload(payload).is_binary
    ):
        # Packet encode/decode call json inside, which attribution charges to `json`.
        found.append(
            {
                "layer": "socketio-framing",
                "plus": [
                    (("framing", case, variant, payload), per[key])
                    for key, case, variant in packets
                ],
                "minus": json_terms,
                "events": {case: per[key] for key, case, _ in packets},
            }
        )
    loop = _loop_kind(counted)
    if loop is not None and per.get("task_steps", 0) > 0:
        events = {"task steps": per["task_steps"], "task creations": per.get("tasks", 0.0)}
        if counted.get("callbacks_countable"):
            events["callbacks"] = per.get("callbacks", 0.0)
        found.append(
            {
                "layer": "event-loop",
                "plus": [(("asyncio", "yield", loop, None), per["task_steps"])],
                "minus": [],
                "events": events,
            }
        )
    if per.get("greenlet_switches", 0) > 0:
        found.append(
            {
                "layer": "greenlet-switching",
                "plus": [(GREENLET_SWITCH, per["greenlet_switches"])],
                "minus": [],
                "events": {"greenlet switches": per["greenlet_switches"]},
            }
        )
    return found


def needed_rows(options: dict[str, str], payload: str, counted: dict[str, Any]) -> list[Row]:
    """The micro rows one variant's counted models use, in first-use order."""
    rows: list[Row] = []
    for model in models(options, payload, counted):
        for row, _ in model["plus"] + model["minus"]:
            if row not in rows:
                rows.append(row)
    return rows


def _weighted_ns(micro: list[dict[str, Any]], terms: list[tuple[Row, float]]) -> float | None:
    total = 0.0
    for (layer, case, variant, payload), n in terms:
        found = lookup(micro, layer, case, variant, payload)
        if found is None:
            return None
        total += n * found["ns_per_op"]
    return total


def misses(layer: str, ratio: float | None, counted: dict[str, Any]) -> str | None:
    """What the model of ``layer`` leaves out, when its ratio is outside the band."""
    if ratio is None or RATIO_LOW <= ratio <= RATIO_HIGH:
        return None
    over = ratio > RATIO_HIGH
    per = per_message(counted)
    if layer == "event-loop":
        if not counted.get("callbacks_countable"):
            return (
                "uvloop runs its callbacks in C, so only task steps are counted: its I/O "
                "callbacks (reads, writes, transport and protocol calls, all under uvloop's "
                "frames) are not in the model, nor, without --native, the share of system time "
                "that apportioning leaves in event-loop"
                if over
                else "part of each task step runs in frames charged to other layers"
            )
        extra = per.get("callbacks", 0.0) - per.get("task_steps", 0.0)
        return (
            f"{extra:.1f} callbacks/msg that are not task steps (I/O, future callbacks) and "
            f"{per.get('tasks', 0.0):.1f} task creations/msg have no micro row"
            if over
            else "the yield row's loop iteration is cheaper inside a busy loop (one select serves "
            "many steps)"
        )
    if layer == "json":
        return (
            "the server encodes the whole packet ([event, data]), the micro row only the payload"
            if over
            else "the serializer's C code is partly charged to the packet frames that call it"
        )
    if layer == "socketio-framing":
        return (
            "packet code beyond encode/decode (python-engineio's send queues, python-socketio's "
            "argument handling) is charged to framing but has no micro row"
            if over
            else "part of encode/decode is charged to other layers (json, dispatch)"
        )
    if layer == "greenlet-switching":
        return (
            "the green library's Python hand-off code around each switch (eventlet's "
            "greenthread, event, queue and semaphore; gevent's waiter and queue) is charged to "
            "switching; the micro row prices only the bare greenlet.switch"
            if over
            else "the switches run in compiled code (gevent's Cython modules, greenlet's C) that "
            "py-spy shows no frame for without --native: their time lands in the caller's layer"
        )
    return None


def closure_entries(
    options: dict[str, str],
    payload: str,
    layers: dict[str, dict[str, float]],
    micro: list[dict[str, Any]],
    counted: dict[str, Any] | None,
) -> list[dict[str, Any]]:
    """Attributed against predicted µs/message per counted layer; rows ``micro`` lacks are skipped."""
    entries = []
    for model in models(options, payload, counted or {}):
        plus = _weighted_ns(micro, model["plus"])
        minus = _weighted_ns(micro, model["minus"])
        if plus is None or minus is None:
            continue
        predicted_us = max(plus - minus, 0.0) / 1000.0
        attributed_us = layers.get(model["layer"], {}).get("us_per_msg", 0.0)
        ratio = attributed_us / predicted_us if predicted_us > 0 else None
        events = {k: round(v, 3) for k, v in model["events"].items()}
        entries.append(
            {
                "layer": model["layer"],
                "attributed_us": attributed_us,
                "predicted_us": predicted_us,
                "ratio": ratio,
                "events_per_msg": events,
                "basis": ", ".join(f"{v:.2f} {k}" for k, v in events.items()) + " per message",
                "misses": misses(model["layer"], ratio, counted or {}),
                "micro_rows": [
                    "/".join(str(p) for p in row) + f" x{n:.2f}"
                    for row, n in model["plus"] + [(r, -n) for r, n in model["minus"]]
                ],
            }
        )
    return entries
