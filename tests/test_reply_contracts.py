"""Reply contracts: servers that answer with something other than a byte-for-byte echo.

Same rule as test_load_clients.py: one test body, run on both clients through the
parametrised ``load`` fixture, so "fast" and "reference" keep one contract.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from servers import (
    fastapi_prefixing,
    flask_socketio_app,
    raw_server,
    server_thread,
    socketio_acker,
    socketio_replying,
    stack,
)
from test_load_clients import Load, assert_clean, load_error, make_load

from wsprof.client.base import CLIENTS, LoadConfig, LoadError, unanswered
from wsprof.client.driver import run_load
from wsprof.errors import WsprofError
from wsprof.scenario.files import ScenarioFileError, parse_scenario
from wsprof.scenario.runner import reply_contract


@pytest.fixture(params=CLIENTS)
def load(request: pytest.FixtureRequest) -> Load:
    """``load(url, **LoadConfig fields)`` on each client in turn (test_load_clients.py)."""
    return make_load(request.param)


@pytest.fixture(scope="module")
def fastapi_port() -> Iterator[int]:
    with server_thread(fastapi_prefixing) as port:
        yield port


@pytest.fixture(scope="module")
def replying_url() -> Iterator[str]:
    with server_thread(socketio_replying) as port:
        yield f"ws://127.0.0.1:{port}/"


def test_raw_reply_any_completes_with_any_data_message(load, fastapi_port):
    url = f"ws://127.0.0.1:{fastapi_port}/ws"
    assert_clean(load(url, reply="any", connections=3, in_flight=2))
    assert_clean(load(url, reply="any", rate=200), min_messages=100)


def test_raw_echo_against_a_prefixing_app_names_the_fix(load, fastapi_port):
    load_error(
        load,
        f"ws://127.0.0.1:{fastapi_port}/ws",
        "replies that differ from the message sent and no echo; try --reply any",
        duration=0.5,
    )


def test_socketio_reply_event(load, replying_url):
    options = {"mode": "socketio", "event": "message", "reply_event": "response"}
    assert_clean(load(replying_url, connections=3, in_flight=2, **options))
    assert_clean(load(replying_url, rate=150, **options), min_messages=80)


def test_socketio_reply_event_missed_names_what_arrived(load, replying_url):
    text = load_error(
        load,
        replying_url,
        "'response' events and no 'message' event; try --reply-event response",
        mode="socketio",
        event="message",
        duration=0.5,
    )
    assert "received " in text


def test_socketio_event_nobody_handles_is_not_a_quiet_server(load, replying_url):
    load_error(
        load,
        replying_url,
        "nothing came back for the 'echo' events sent",
        "try --event NAME",
        mode="socketio",
        duration=0.5,
    )


def test_socketio_acks(load, replying_url):
    options = {"mode": "socketio", "event": "ask", "ack": True}
    assert_clean(load(replying_url, connections=3, in_flight=3, **options))
    assert_clean(load(replying_url, rate=150, **options), min_messages=80)


def test_acks_on_the_stand_in_server(load):
    with stack("socketio-asgi") as server:
        result = load(server.url, mode="socketio", event="ack", ack=True, in_flight=2)
    assert_clean(result)


def test_an_ack_with_an_id_nobody_sent_is_a_mismatch(load):
    # One request in flight: every third ack names the next id, which is not outstanding.
    with raw_server(socketio_acker(shift_every=3)) as port:
        result = load(port, mode="socketio", event="ask", ack=True, duration=0.5)
    assert result.messages >= 20
    assert set(result.errors) == {"echo_mismatch"}
    assert result.errors["echo_mismatch"] >= result.messages // 3


def test_unanswered_names_the_commonest_arrival():
    # python-socketio acks every event that asks, so this case is only reachable on
    # servers that never ack: the line is checked directly.
    config = LoadConfig("ws://127.0.0.1:9/", mode="socketio", event="message", ack=True)
    seen = {"event:response": 18204, "event:note": 3}
    text = str(unanswered(config, "127.0.0.1:9", {"unexpected_event": 18207}, seen))
    assert text == (
        "no round trip completed against 127.0.0.1:9: received 18,204 'response' events "
        "and no ack to 'message'; try --reply-event response without --ack"
    )


def test_unexpected_events_are_counted_not_completed(load, replying_url):
    result = load(replying_url, mode="socketio", event="chatty", ack=True, duration=0.5)
    # two writes per answer meet delayed ACKs: ~40 ms round trips, a handful of messages
    assert result.messages >= 3
    assert set(result.errors) == {"unexpected_event"}
    # one 'note' per ack (the last few may arrive after the window)
    assert result.errors["unexpected_event"] >= result.messages


def test_a_handler_that_only_returns_suggests_acks(load, replying_url):
    load_error(
        load,
        replying_url,
        "nothing came back for the 'ask' events sent",
        "or --ack if its handler answers with a return value",
        mode="socketio",
        event="ask",
        duration=0.5,
    )


def test_payload_file_json_and_bytes(load, tmp_path: Path):
    text_file = tmp_path / "msg.json"
    text_file.write_text(json.dumps({"user": "ada", "text": "hi", "n": [1, 2, 3]}))
    blob = tmp_path / "msg.bin"
    blob.write_bytes(bytes(range(256)) * 4)
    with stack("starlette-raw", loop="asyncio") as server:
        assert_clean(load(server.url, payload_file=str(text_file)))
        assert_clean(load(server.url, payload_file=str(blob)))
    with stack("socketio-asgi") as server:
        assert_clean(load(server.url, mode="socketio", payload_file=str(text_file)))


def test_the_articles_flask_socketio_app(load):
    with flask_socketio_app() as port:
        url = f"ws://127.0.0.1:{port}/"
        assert_clean(
            load(url, mode="socketio", event="message", reply_event="response", connections=3)
        )
        assert_clean(load(url, mode="socketio", event="ask", ack=True, in_flight=2))


@pytest.mark.parametrize(
    ("options", "phrase"),
    [
        ({"ack": True}, "need --mode socketio"),
        ({"event": "x"}, "need --mode socketio"),
        ({"mode": "socketio", "ack": True, "reply_event": "r"}, "drop --reply-event"),
        ({"mode": "socketio", "serializer": "msgpack", "event": "x"}, "msgpack"),
        ({"reply": "some"}, "unknown --reply"),
        ({"mode": "socketio", "event": ""}, "--event must be a non-empty"),
        ({"payload_file": "/nonexistent/x.json"}, "cannot read --payload-file"),
    ],
)
def test_contract_options_are_checked(options, phrase):
    with pytest.raises(WsprofError, match=phrase):
        LoadConfig("ws://127.0.0.1:9/", **options)


def test_reply_contract_defaults():
    base = LoadConfig("ws://127.0.0.1:9/", mode="socketio")
    assert base.reply_contract == "echo"
    assert LoadConfig(base.url, mode="socketio", reply_event="r").reply_contract == "any"
    assert LoadConfig(base.url, mode="socketio", ack=True).reply_contract == "any"
    assert LoadConfig(base.url, reply="any").reply_contract == "any"


def test_fast_acks_refuse_binary_payloads(replying_url):
    config = LoadConfig(replying_url, mode="socketio", event="ask", ack=True, payload="binary")
    with pytest.raises(WsprofError, match="JSON payloads only"):
        run_load(config, client="fast")
    assert not isinstance(WsprofError, LoadError)


SCENARIO = """
name = "mine"
description = "a server that answers message with response"
[load]
{load}
[[variants]]
name = "asgi"
stack = "socketio-asgi"
"""


def test_scenario_load_takes_the_contract_keys(tmp_path: Path):
    body = tmp_path / "body.json"
    body.write_text('{"text": "hi"}')
    load_keys = 'event = "message"\nreply_event = "response"\npayload_file = "body.json"'
    source = str(tmp_path / "mine.toml")
    plan = parse_scenario(SCENARIO.format(load=load_keys), source).load
    assert (plan.event, plan.reply_event, plan.ack, plan.reply) == (
        "message",
        "response",
        False,
        None,
    )
    contract = reply_contract(plan, "socketio", source)
    assert contract["payload_file"] == str(body)
    config = LoadConfig("ws://127.0.0.1:9/", mode="socketio", **contract)
    assert config.reply_contract == "any"
    assert config.message_payload().value == {"text": "hi"}
    raw = reply_contract(plan, "raw", source)
    assert "event" not in raw and "ack" not in raw


@pytest.mark.parametrize(
    ("load_keys", "phrase"),
    [
        ('reply = "maybe"', "must be one of echo, any"),
        ('ack = "yes"', "must be true or false"),
        ('event = ""', "must be a non-empty string"),
        ("reply_event = 3", "must be a non-empty string"),
    ],
)
def test_scenario_contract_keys_are_checked(load_keys, phrase):
    with pytest.raises(ScenarioFileError, match=phrase):
        parse_scenario(SCENARIO.format(load=load_keys), "x.toml")
