"""wsprof micro: real (quick) pyperf runs of every layer, the JSON document, the error paths."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from wsprof.cli import build_parser, main
from wsprof.commands import micro
from wsprof.errors import MeasurementError, WsprofError
from wsprof.micro import LAYERS, lookup, predict_ns, read_results, rows_for
from wsprof.micro.catalog import Row, not_applicable, select_rows
from wsprof.micro.harness import QUICK, run_rows

ORIGINAL_SOCKET = socket.socket

# One row per layer/case family, including every green-thread and event-loop flavour.
CROSS_LAYER_ROWS = [
    Row("greenlet", "switch", "greenlet", None),
    Row("greenlet", "yield", "eventlet", None),
    Row("greenlet", "handoff", "gevent", None),
    Row("asyncio", "yield", "uvloop", None),
    Row("asyncio", "handoff", "asyncio", None),
    Row("framing", "socketio-encode", "python-socketio", "binary"),
    Row("framing", "socketio-decode", "python-socketio", "binary"),
    Row("framing", "engineio-decode", "python-engineio", "small"),
]


@pytest.fixture(scope="module")
def cross_layer() -> list[dict[str, Any]]:
    return run_rows(CROSS_LAYER_ROWS, QUICK)


@pytest.fixture(scope="module")
def json_small(tmp_path_factory: pytest.TempPathFactory) -> tuple[int, Path]:
    path = tmp_path_factory.mktemp("micro") / "out" / "micro.json"
    return main(
        ["micro", "--layer", "json", "--payload", "small", "--quick", "--json", str(path)]
    ), path


def test_every_layer_measures_positive_numbers(cross_layer: list[dict[str, Any]]) -> None:
    assert [(r["layer"], r["case"], r["variant"], r["payload"]) for r in cross_layer] == [
        row.as_tuple() for row in CROSS_LAYER_ROWS
    ]
    assert {r["layer"] for r in cross_layer} == {"greenlet", "asyncio", "framing"}
    for r in cross_layer:
        assert r["ns_per_op"] > 0
        assert r["spread_ns"] >= 0
        assert r["values"] == QUICK.processes * QUICK.values


def test_binary_event_costs_more_to_decode_than_a_small_engineio_frame(
    cross_layer: list[dict[str, Any]],
) -> None:
    decode_binary = lookup(cross_layer, "framing", "socketio-decode", "python-socketio", "binary")
    eio_small = lookup(cross_layer, "framing", "engineio-decode", "python-engineio", "small")
    assert decode_binary is not None and eio_small is not None
    # A Socket.IO decode parses JSON and rebuilds the attachment; an Engine.IO
    # decode of a Socket.IO text frame only slices a string.
    assert decode_binary["ns_per_op"] > eio_small["ns_per_op"]


def test_eventlet_row_does_not_patch_the_orchestrator(cross_layer: list[dict[str, Any]]) -> None:
    assert lookup(cross_layer, "greenlet", "yield", "eventlet") is not None
    assert socket.socket is ORIGINAL_SOCKET
    assert socket.socket.__module__ == "socket"


def test_json_document_validates_against_the_schema(json_small: tuple[int, Path]) -> None:
    code, path = json_small
    assert code == 0
    document = json.loads(path.read_text())
    schema = json.loads(resources.files("wsprof").joinpath("schemas/micro.schema.json").read_text())
    jsonschema.validate(document, schema)
    assert document["env"]["harness"]["mode"] == "quick"
    assert [(r["case"], r["variant"]) for r in document["results"]] == [
        (case, variant) for _, case, variant, _ in rows_for(["json"], ["small"])
    ]
    assert not list(path.parent.glob(".micro.json.*")), "temporary file left behind"


def test_orjson_dumps_small_is_cheaper_than_json(json_small: tuple[int, Path]) -> None:
    results = read_results(json_small[1])
    stdlib = lookup(results, "json", "dumps", "json", "small")
    fast = lookup(results, "json", "dumps", "orjson", "small")
    assert stdlib is not None and fast is not None
    assert fast["ns_per_op"] < stdlib["ns_per_op"]
    assert stdlib["ratio_to_baseline"] == pytest.approx(1.0)
    assert fast["ratio_to_baseline"] == pytest.approx(fast["ns_per_op"] / stdlib["ns_per_op"])
    echo = predict_ns(
        results, [("json", "dumps", "json", "small"), ("json", "loads", "json", "small")]
    )
    assert echo is not None and echo > stdlib["ns_per_op"]
    assert predict_ns(results, [("json", "dumps", "json", "large")]) is None


def test_json_rows_exclude_binary_and_say_so() -> None:
    rows = rows_for(["json"], None)
    assert rows and all(payload != "binary" for *_, payload in rows)
    notes = not_applicable(["json"], None)
    assert len(notes) == 1 and "binary" in notes[0] and "JSON" in notes[0]
    assert not_applicable(["framing"], None) == []
    with pytest.raises(WsprofError, match="no micro rows match: json x binary"):
        select_rows(["json"], ["binary"])


def test_rows_cover_the_required_interface() -> None:
    rows = set(rows_for())
    for required in [
        ("greenlet", "switch", "greenlet", None),
        ("greenlet", "yield", "gevent", None),
        ("greenlet", "handoff", "eventlet", None),
        ("asyncio", "yield", "uvloop", None),
        ("asyncio", "handoff", "uvloop", None),
        ("framing", "socketio-encode", "python-socketio", "binary"),
        ("framing", "engineio-decode", "python-engineio", "large"),
        ("json", "dumps", "msgpack", "medium"),
        ("json", "loads", "orjson", "large"),
    ]:
        assert required in rows
    assert LAYERS == ("greenlet", "asyncio", "framing", "json")


def test_unknown_layer_lists_the_valid_ones(tmp_path: Path) -> None:
    with pytest.raises(
        WsprofError, match=r"unknown layer 'nope' \(valid: greenlet, asyncio, framing, json\)"
    ):
        micro.run(
            build_parser().parse_args(
                ["micro", "--layer", "nope", "--json", str(tmp_path / "x.json")]
            )
        )
    assert not (tmp_path / "x.json").exists()


def test_unknown_payload_lists_the_valid_ones() -> None:
    with pytest.raises(
        WsprofError, match=r"unknown payload 'huge' \(valid: small, medium, large, binary\)"
    ):
        micro.run(build_parser().parse_args(["micro", "--payload", "huge"]))


def test_cli_exits_2_on_unknown_layer() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "wsprof", "micro", "--layer", "nope"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert "unknown layer 'nope'" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_failing_worker_names_the_row_and_the_cause() -> None:
    # Built directly, bypassing select_rows: the worker itself must reject it.
    bad = Row("json", "dumps", "orjson", "nope")
    with pytest.raises(
        MeasurementError, match=r"json/dumps/orjson/nope failed .*unknown payload 'nope'"
    ) as info:
        run_rows([bad], QUICK)
    assert "\n" not in str(info.value)
