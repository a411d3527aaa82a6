"""Closure models: which micro rows predict which layer, and the ratio against attribution."""

from __future__ import annotations

import pytest

from wsprof.scenario.closure import closure_entries, models, needed_rows

JSON_ROWS = [("json", "loads", "json", "small"), ("json", "dumps", "json", "small")]
FRAMING_ROWS = [
    ("framing", "engineio-decode", "python-engineio", "small"),
    ("framing", "socketio-decode", "python-socketio", "small"),
    ("framing", "socketio-encode", "python-socketio", "small"),
    ("framing", "engineio-encode", "python-engineio", "small"),
]
UVLOOP = ("asyncio", "handoff", "uvloop", None)


def _micro(ns: dict[tuple[str, str, str, str | None], float]) -> list[dict]:
    """Micro results as `wsprof micro` writes them (only the keys closure reads matter)."""
    return [
        {"layer": layer, "case": case, "variant": variant, "payload": payload, "ns_per_op": v}
        for (layer, case, variant, payload), v in ns.items()
    ]


def test_a_raw_echo_is_modelled_by_one_event_loop_handoff():
    (model,) = models("starlette-raw", {"loop": "uvloop"}, "small")
    assert model["layer"] == "event-loop"
    assert model["plus"] == [UVLOOP]
    assert model["minus"] == []


def test_socketio_with_json_models_json_framing_and_three_handoffs():
    found = {m["layer"]: m for m in models("socketio-asgi", {"serializer": "json"}, "small")}
    assert list(found) == ["json", "socketio-framing", "event-loop"]
    assert found["json"]["plus"] == JSON_ROWS
    assert found["socketio-framing"]["plus"] == FRAMING_ROWS
    # Packet.encode/decode call json inside, and attribution charges that to `json`.
    assert found["socketio-framing"]["minus"] == JSON_ROWS
    assert found["event-loop"]["plus"] == [UVLOOP] * 3


def test_other_serializers_binary_payloads_and_green_stacks():
    orjson = {m["layer"]: m for m in models("socketio-asgi", {"serializer": "orjson"}, "small")}
    assert list(orjson) == ["json", "event-loop"]  # no framing model outside the json packets
    assert orjson["json"]["plus"] == [
        ("json", "loads", "orjson", "small"),
        ("json", "dumps", "orjson", "small"),
    ]
    binary = models("socketio-asgi", {"serializer": "json"}, "binary")
    assert [m["layer"] for m in binary] == ["event-loop"]
    green = {m["layer"]: m for m in models("socketio-gevent", {}, "small")}
    assert list(green) == ["json", "socketio-framing", "greenlet-switching"]
    assert green["greenlet-switching"]["plus"] == [("greenlet", "handoff", "gevent", None)] * 3
    (asyncio,) = models("websockets-raw", {"loop": "asyncio"}, "small")
    assert asyncio["plus"] == [("asyncio", "handoff", "asyncio", None)]


def test_needed_rows_lists_each_row_once_in_first_use_order():
    rows = needed_rows(
        [
            ("starlette-raw", {"loop": "uvloop"}),
            ("socketio-asgi", {"loop": "uvloop", "serializer": "json"}),
            ("socketio-asgi", {"loop": "uvloop", "serializer": "orjson"}),
        ],
        "small",
    )
    assert rows == [
        UVLOOP,
        *JSON_ROWS,
        *FRAMING_ROWS,
        ("json", "loads", "orjson", "small"),
        ("json", "dumps", "orjson", "small"),
    ]
    assert needed_rows([], "small") == []


def test_closure_entries_set_attributed_against_predicted():
    micro = _micro(
        {
            JSON_ROWS[0]: 1000.0,
            JSON_ROWS[1]: 1500.0,
            FRAMING_ROWS[0]: 3000.0,
            FRAMING_ROWS[1]: 2000.0,
            FRAMING_ROWS[2]: 2500.0,
            FRAMING_ROWS[3]: 3500.0,
        }
    )
    layers = {"json": {"us_per_msg": 5.0}, "socketio-framing": {"us_per_msg": 4.25}}
    entries = closure_entries("socketio-asgi", {"serializer": "json"}, "small", layers, micro)
    # No uvloop handoff was measured: the event-loop model is left out, not guessed.
    json_entry, framing = entries
    assert json_entry["layer"] == "json"
    assert json_entry["predicted_us"] == pytest.approx(2.5)
    assert json_entry["attributed_us"] == 5.0
    assert json_entry["ratio"] == pytest.approx(2.0)
    assert json_entry["micro_rows"] == ["json/loads/json/small", "json/dumps/json/small"]
    # Framing: 11 µs of packet work, less the 2.5 µs of json inside it.
    assert framing["predicted_us"] == pytest.approx(8.5)
    assert framing["ratio"] == pytest.approx(0.5)
    assert len(framing["micro_rows"]) == 6


def test_a_layer_attribution_did_not_see_counts_zero_and_no_prediction_has_no_ratio():
    micro = _micro({UVLOOP: 0.0})
    (entry,) = closure_entries("starlette-raw", {"loop": "uvloop"}, "small", {}, micro)
    assert entry["attributed_us"] == 0.0
    assert entry["predicted_us"] == 0.0
    assert entry["ratio"] is None
    assert entry["basis"] == "1 uvloop task handoff(s) (the reader wakes the handler)"
