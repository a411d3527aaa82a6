"""Scenario files are data: every shipped one loads, and every mistake names the file and key."""

from __future__ import annotations

from pathlib import Path

import pytest

from wsprof.errors import WsprofError
from wsprof.scenario.files import load_scenario, parse_scenario, shipped_scenarios

SHIPPED = ("socketio-framing", "json-encoding", "event-loop", "greenlet-switching", "stack-matrix")

MINIMAL = """
name = "mine"
description = "a copy a user made"
[load]
connections = 4
[[variants]]
stack = "starlette-raw"
"""


def test_every_required_scenario_ships_and_loads():
    assert set(SHIPPED) <= set(shipped_scenarios())
    for name in SHIPPED:
        scenario = load_scenario(name)
        assert scenario.name == name
        assert scenario.variants
        quick = scenario.plan(quick=True)
        assert quick.capacity_window_s < scenario.load.capacity_window_s


def test_variant_names_follow_the_stack_and_option():
    assert [v.name for v in load_scenario("json-encoding").variants] == [
        "socketio-asgi",
        "socketio-asgi-orjson",
        "socketio-asgi-msgpack",
    ]
    assert [v.name for v in load_scenario("socketio-framing").variants] == [
        "starlette-raw",
        "socketio-asgi",
    ]


def test_a_user_file_by_path(tmp_path: Path):
    path = tmp_path / "mine.toml"
    path.write_text(MINIMAL)
    scenario = load_scenario(str(path))
    assert scenario.load.connections == 4
    assert scenario.variants[0].name == "starlette-raw"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            ("connections = 4", "connections = -1"),
            "key 'load.connections': must be a positive integer",
        ),
        (("connections = 4", "connectons = 4"), "key 'load.connectons': unknown key"),
        (("connections = 4", 'payload = "huge"'), "key 'load.payload': unknown payload 'huge'"),
        (
            ('stack = "starlette-raw"', 'stack = "tornado"'),
            "key 'variants[0].stack/options': unknown stack 'tornado'",
        ),
        (('name = "mine"', ""), "key 'name': is required"),
        (("[[variants]]", "[[variant]]"), "key 'variant': unknown key"),
        (("connections = 4", "connections = "), "not valid TOML"),
        (
            ('stack = "starlette-raw"', 'stack = "starlette-raw"\nname = 5'),
            "key 'variants[0].name': must be a non-empty string",
        ),
    ],
)
def test_malformed_file_names_the_file_and_key(tmp_path: Path, change, message):
    path = tmp_path / "bad.toml"
    path.write_text(MINIMAL.replace(*change))
    with pytest.raises(WsprofError) as info:
        load_scenario(str(path))
    assert str(path) in str(info.value)
    assert message in str(info.value)


def test_bad_option_value_is_named():
    text = MINIMAL.replace(
        'stack = "starlette-raw"', 'stack = "socketio-asgi"\noptions = { serializer = "yaml" }'
    )
    with pytest.raises(WsprofError, match="serializer"):
        parse_scenario(text, "x.toml")


def test_unknown_scenario_lists_the_valid_ones():
    with pytest.raises(WsprofError) as info:
        load_scenario("socketio-framin")
    for name in SHIPPED:
        assert name in str(info.value)


def test_missing_file():
    with pytest.raises(WsprofError, match="does not exist"):
        load_scenario("nowhere/mine.toml")
