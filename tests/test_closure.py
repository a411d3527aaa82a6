"""The counted closure: counted events x micro costs against attribution, and end to end."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import pytest

from wsprof.scenario.closure import (
    closure_entries,
    counted_events,
    misses,
    models,
    needed_rows,
    per_message,
)

JSON = {"serializer": "json"}
LOADS = ("json", "loads", "json", "small")
DUMPS = ("json", "dumps", "json", "small")
FRAMING = {
    "engineio-decode": ("framing", "engineio-decode", "python-engineio", "small"),
    "socketio-decode": ("framing", "socketio-decode", "python-socketio", "small"),
    "socketio-encode": ("framing", "socketio-encode", "python-socketio", "small"),
    "engineio-encode": ("framing", "engineio-encode", "python-engineio", "small"),
}
UVLOOP_YIELD = ("asyncio", "yield", "uvloop", None)
SWITCH = ("greenlet", "switch", "greenlet", None)

# What the instrumented window of socketio-asgi on uvloop counted over 1,000 messages.
SIO_UVLOOP = {
    "messages": 1000,
    "elapsed_s": 2.0,
    "counts": {
        "json_dumps": 1000,
        "json_loads": 1000,
        "eio_decode": 1000,
        "sio_decode": 1000,
        "sio_encode": 1000,
        "eio_encode": 1000,
        "tasks": 4000,
        "task_steps": 10000,
        "ws_frames_sent": 1000,
    },
    "counters": ["asyncio", "socketio", "websockets"],
    "loops": ["uvloop"],
    "callbacks_countable": False,
}
GREEN = {
    "messages": 500,
    "counts": {"greenlet_switches": 3000, "json_dumps": 500, "json_loads": 500},
    "counters": ["greenlet", "socketio"],
    "loops": [],
    "callbacks_countable": False,
}


def _micro(ns: dict[tuple[str, str, str, str | None], float]) -> list[dict]:
    """Micro results as `wsprof micro` writes them (only the keys closure reads matter)."""
    return [
        {"layer": layer, "case": case, "variant": variant, "payload": payload, "ns_per_op": v}
        for (layer, case, variant, payload), v in ns.items()
    ]


def test_counts_become_weighted_micro_rows_per_layer():
    found = {m["layer"]: m for m in models(JSON, "small", SIO_UVLOOP)}
    assert list(found) == ["json", "socketio-framing", "event-loop"]
    assert found["json"]["plus"] == [(LOADS, 1.0), (DUMPS, 1.0)]
    assert found["socketio-framing"]["plus"] == [(row, 1.0) for row in FRAMING.values()]
    # Packet encode/decode call json inside, and attribution charges that to `json`.
    assert found["socketio-framing"]["minus"] == found["json"]["plus"]
    assert found["event-loop"]["plus"] == [(UVLOOP_YIELD, 10.0)]
    assert found["event-loop"]["events"] == {"task steps": 10.0, "task creations": 4.0}
    green = {m["layer"]: m for m in models(JSON, "small", GREEN)}
    assert list(green) == ["json", "greenlet-switching"]
    assert green["greenlet-switching"]["plus"] == [(SWITCH, 6.0)]


def test_no_counts_no_model_and_binary_payloads_have_no_serializer_row():
    assert models(JSON, "small", {}) == []
    assert models(JSON, "small", {"error": "counting failed: x"}) == []
    assert models(JSON, "small", {**SIO_UVLOOP, "messages": 0}) == []
    binary = models(JSON, "binary", SIO_UVLOOP)
    assert [m["layer"] for m in binary] == ["event-loop"]
    orjson = {m["layer"]: m for m in models({"serializer": "orjson"}, "small", SIO_UVLOOP)}
    assert list(orjson) == ["json", "event-loop"]  # no framing row outside the json packets
    assert orjson["json"]["plus"][0][0] == ("json", "loads", "orjson", "small")


def test_pure_asyncio_reports_callbacks_and_raw_stacks_only_the_loop():
    raw = {
        "messages": 10,
        "counts": {"task_steps": 10, "callbacks": 20, "ws_frames_sent": 10},
        "loops": ["asyncio"],
        "callbacks_countable": True,
    }
    (loop,) = models({}, "small", raw)
    assert loop["plus"] == [(("asyncio", "yield", "asyncio", None), 1.0)]
    assert loop["events"] == {"task steps": 1.0, "task creations": 0.0, "callbacks": 2.0}


def test_needed_rows_lists_each_row_once_in_first_use_order():
    rows = needed_rows(JSON, "small", SIO_UVLOOP)
    assert rows == [LOADS, DUMPS, *FRAMING.values(), UVLOOP_YIELD]
    assert needed_rows(JSON, "small", {}) == []


def test_closure_entries_multiply_counts_by_micro_costs():
    micro = _micro(
        {
            LOADS: 1000.0,
            DUMPS: 1500.0,
            FRAMING["engineio-decode"]: 3000.0,
            FRAMING["socketio-decode"]: 2000.0,
            FRAMING["socketio-encode"]: 2500.0,
            FRAMING["engineio-encode"]: 3500.0,
            UVLOOP_YIELD: 400.0,
        }
    )
    layers = {
        "json": {"us_per_msg": 5.0},
        "socketio-framing": {"us_per_msg": 8.5},
        "event-loop": {"us_per_msg": 12.0},
    }
    entries = {e["layer"]: e for e in closure_entries(JSON, "small", layers, micro, SIO_UVLOOP)}
    j = entries["json"]
    assert j["predicted_us"] == pytest.approx(2.5)
    assert j["ratio"] == pytest.approx(2.0)
    assert j["events_per_msg"] == {"json loads": 1.0, "json dumps": 1.0}
    assert "whole packet" in j["misses"]
    # Framing: 11 µs of packet work, less the 2.5 µs of json inside it.
    f = entries["socketio-framing"]
    assert f["predicted_us"] == pytest.approx(8.5)
    assert f["ratio"] == pytest.approx(1.0)
    assert f["misses"] is None
    assert len(f["micro_rows"]) == 6
    loop = entries["event-loop"]
    assert loop["predicted_us"] == pytest.approx(4.0)  # 10 steps x 0.4 µs
    assert loop["ratio"] == pytest.approx(3.0)
    assert "uvloop runs its callbacks in C" in loop["misses"]
    assert loop["basis"] == "10.00 task steps, 4.00 task creations per message"


def test_missing_micro_rows_and_unseen_layers():
    # No uvloop yield row measured: the event-loop entry is left out, not guessed.
    micro = _micro({LOADS: 1000.0, DUMPS: 1000.0})
    (entry,) = closure_entries(JSON, "small", {}, micro, SIO_UVLOOP)
    assert entry["layer"] == "json"
    assert entry["attributed_us"] == 0.0
    assert entry["ratio"] == 0.0
    assert closure_entries(JSON, "small", {}, micro, None) == []
    zero = _micro({SWITCH: 0.0, LOADS: 0.0, DUMPS: 0.0})
    assert all(e["ratio"] is None for e in closure_entries(JSON, "small", {}, zero, GREEN))


def test_misses_only_outside_the_band_and_counted_events_json_form():
    assert misses("json", 1.2, SIO_UVLOOP) is None
    assert misses("json", None, SIO_UVLOOP) is None
    asyncio_counts = {"messages": 1, "counts": {"callbacks": 5, "task_steps": 2, "tasks": 1}}
    note = misses("event-loop", 2.0, {**asyncio_counts, "callbacks_countable": True})
    assert note is not None and note.startswith("3.0 callbacks/msg")
    assert misses("greenlet-switching", 0.3, GREEN)
    assert per_message(GREEN)["greenlet_switches"] == 6.0
    form = counted_events(SIO_UVLOOP)
    assert form is not None and form["per_message"]["task_steps"] == 10.0
    assert counted_events({"error": "counting failed: x"}) == {"error": "counting failed: x"}
    assert counted_events(None) is None


SIO_ONLY = """
name = "closure-e2e"
description = "socketio-asgi alone, tiny windows: a test, not a benchmark"
[load]
connections = 4
in_flight = 1
payload = "small"
warmup_s = 0.2
capacity_window_s = 0.8
latency_window_s = 0.6
profile_window_s = 1.5
profile_rate_hz = 200
repeats = 1
[[variants]]
name = "socketio-asgi"
stack = "socketio-asgi"
options = { loop = "uvloop", serializer = "json" }
"""


def test_counted_closure_on_socketio_asgi_end_to_end(tmp_path: Path):
    import json

    source = tmp_path / "closure.toml"
    source.write_text(SIO_ONLY)
    out = tmp_path / "result.json"
    command = [sys.executable, "-m", "wsprof", "scenario", str(source), "--quick"]
    proc = subprocess.run(
        [*command, "--json", str(out), "--out", str(tmp_path / "fg")],
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert proc.returncode == 0, proc.stderr
    (sio,) = json.loads(out.read_text())["variants"]
    counted = sio["counted_events"]
    assert "error" not in counted, counted
    per = counted["per_message"]
    assert counted["loops"] == ["uvloop"] and counted["callbacks_countable"] is False
    assert 1 <= per["json_dumps"] + per["json_loads"] <= 4
    assert per["sio_encode"] + per["eio_encode"] >= 1
    # Each is one per echo; the client's window and the server's counts differ by in-flight edges.
    assert per["sio_encode"] > 0.9 and per["eio_encode"] > 0.9
    assert per["task_steps"] >= 1
    entries = {c["layer"]: c for c in sio["closure"]}
    assert {"json", "socketio-framing", "event-loop"} <= set(entries)
    for entry in entries.values():
        assert entry["predicted_us"] > 0 and math.isfinite(entry["predicted_us"])
        assert entry["ratio"] is None or math.isfinite(entry["ratio"])
        assert entry["events_per_msg"]
    assert "counted per message" in proc.stdout


def test_the_closure_table_shows_notes_and_errors_as_written() -> None:
    """Notes hold brackets ("[event, data]") and errors hold server text: never rich markup."""
    from rich.console import Console

    from wsprof.report.scenario import _closure_table

    note = misses("json", 2.0, {"messages": 1, "counts": {"json_loads": 1}})
    assert note is not None and "[event, data]" in note
    doc = {
        "variants": [
            {
                "name": "sio",
                "closure": [
                    {
                        "layer": "json",
                        "attributed_us": 20.0,
                        "predicted_us": 10.0,
                        "ratio": 2.0,
                        "basis": "1.00 json loads per message",
                        "misses": note,
                    }
                ],
            },
            {"name": "app", "counted_events": {"error": "server said [bold]no[/bold]"}},
        ]
    }
    table = _closure_table(doc)
    assert table is not None
    console = Console(width=400, record=True, color_system=None)
    console.print(table)
    text = console.export_text()
    assert "[event, data]" in text
    assert "server said [bold]no[/bold]" in text
