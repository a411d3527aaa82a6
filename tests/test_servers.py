"""Real server stacks, started by the launcher, spoken to over 127.0.0.1.

Socket.IO is spoken by hand (Engine.IO v4 / Socket.IO v5 text packets, or the
msgpack parser's maps) so that these tests check the wire, not a client library.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import msgpack
import pytest
from servers import gone, wait_gone
from websockets.sync.client import ClientConnection, connect

from wsprof.client.base import CLIENTS, LoadConfig
from wsprof.client.driver import run_load
from wsprof.scenario.files import load_scenario
from wsprof.servers import orjson_shim
from wsprof.servers.launcher import ServerFailed, ServerProcess, stack_names, validate_options
from wsprof.servers.stacks import StackOptionError

TIMEOUT = 10.0
ONE_MB = 1_000_000


class SocketIOClient:
    """Just enough Engine.IO v4 / Socket.IO v5 to check a server's behaviour."""

    def __init__(self, ws: ClientConnection, serializer: str) -> None:
        self.msgpack = serializer == "msgpack"
        self.ws = ws
        opening = self.ws.recv(timeout=TIMEOUT)
        assert isinstance(opening, str) and opening.startswith("0")
        self.open_info: dict[str, Any] = json.loads(opening[1:])
        self.send_packet({"type": 0, "nsp": "/"}, "0")
        reply = self.recv_packet()
        if self.msgpack:
            assert reply["type"] == 0 and "sid" in reply["data"]
        else:
            assert reply.startswith("0{") and "sid" in json.loads(reply[1:])

    def send_packet(self, as_map: dict[str, Any], as_text: str) -> None:
        """Send a Socket.IO packet inside an Engine.IO message (``4``), or as a msgpack map."""
        self.ws.send(msgpack.packb(as_map) if self.msgpack else "4" + as_text)

    def recv_packet(self) -> Any:
        """Next Socket.IO packet, answering Engine.IO pings on the way."""
        for _ in range(10):
            message = self.ws.recv(timeout=TIMEOUT)
            if message == "2":
                self.ws.send("3")
                continue
            if self.msgpack:
                assert isinstance(message, bytes)
                return msgpack.unpackb(message)
            assert isinstance(message, str) and message[0] == "4", message
            return message[1:]
        raise AssertionError("only pings received")


@contextmanager
def socketio_client(url: str, serializer: str) -> Iterator[SocketIOClient]:
    # close_timeout: gevent pywsgi + simple-websocket never closes TCP after the
    # closing handshake (see green_apps), and the client would wait it out.
    with connect(url, max_size=None, open_timeout=TIMEOUT, close_timeout=0.5) as ws:
        yield SocketIOClient(ws, serializer)


# ---------------------------------------------------------------- options


def test_stack_names_and_defaults() -> None:
    assert stack_names() == [
        "starlette-raw",
        "websockets-raw",
        "socketio-asgi",
        "socketio-eventlet",
        "socketio-gevent",
        "fastapi",
        "flask-socketio-eventlet",
        "flask-socketio-gevent",
        "quart-socketio",
    ]
    assert validate_options("socketio-asgi", {}) == {
        "handler": "echo",
        "loop": "uvloop",
        "ws": "websockets",
        "serializer": "json",
        "ping_interval": "25",
        "ping_timeout": "20",
        "manager": "memory",
        "redis_url": "",
    }
    assert validate_options("websockets-raw", {"loop": "asyncio"}) == {
        "loop": "asyncio",
        "handler": "echo",
    }
    assert validate_options("fastapi", {}) == {
        "loop": "uvloop",
        "ws": "websockets",
        "workers": "1",
        "handler": "echo",
    }
    assert validate_options("quart-socketio", {})["server"] == "uvicorn"
    assert set(validate_options("flask-socketio-gevent", {})) == {
        "handler",
        "serializer",
        "ping_interval",
        "ping_timeout",
        "manager",
        "redis_url",
    }


def test_bad_stack_and_options_name_the_valid_values() -> None:
    with pytest.raises(
        ValueError, match=r"unknown stack 'x' \(valid: starlette-raw, websockets-raw"
    ):
        validate_options("x", {})
    with pytest.raises(
        ValueError,
        match=r"stack 'socketio-asgi': option 'serializer' must be one of json, orjson, msgpack, not 'yaml'",
    ):
        validate_options("socketio-asgi", {"serializer": "yaml"})
    with pytest.raises(
        StackOptionError, match=r"unknown option 'serializer' \(valid: loop, ws, handler\)"
    ):
        validate_options("starlette-raw", {"serializer": "json"})
    with pytest.raises(ValueError, match=r"ping_interval.*whole number"):
        validate_options("socketio-gevent", {"ping_interval": "0.5"})
    with pytest.raises(ValueError, match=r"ping_timeout.*positive"):
        validate_options("socketio-gevent", {"ping_timeout": "-1"})
    with pytest.raises(ValueError, match="unknown stack"):
        ServerProcess("nope")
    with pytest.raises(StackOptionError, match=r"'workers' must be a whole number .* from 1 to"):
        validate_options("fastapi", {"workers": "0"})
    with pytest.raises(StackOptionError, match=r"'server' must be one of uvicorn, hypercorn"):
        validate_options("quart-socketio", {"server": "gunicorn"})


BAD_OPT = ["--opt", "loop=trio"]


def test_serve_rejects_bad_option_with_exit_code_2() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "wsprof.servers.serve", "--stack", "websockets-raw", *BAD_OPT],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert result.stdout == ""
    assert "must be one of asyncio, uvloop, not 'trio'" in result.stderr


# ------------------------------------------------------------ raw stacks


@pytest.mark.parametrize(
    ("stack", "options"),
    [
        ("starlette-raw", {"loop": "uvloop"}),
        ("starlette-raw", {"loop": "asyncio"}),
        ("starlette-raw", {"ws": "websockets-sansio"}),
        ("starlette-raw", {"ws": "wsproto"}),
        ("websockets-raw", {"loop": "uvloop"}),
        ("websockets-raw", {"loop": "asyncio"}),
        ("fastapi", {"loop": "uvloop"}),
        ("fastapi", {"ws": "wsproto", "loop": "asyncio"}),
    ],
)
def test_raw_stack_echoes_text_and_bytes_unchanged(stack: str, options: dict[str, str]) -> None:
    text = "héllo ✓ " * 10
    blob = bytes(range(256)) * 4
    big = os.urandom(ONE_MB)
    with ServerProcess(stack, options) as server:
        assert server.mode == "raw" and server.serializer == "none"
        assert server.url == f"ws://127.0.0.1:{server.port}/ws"
        pids = server.pids()
        assert pids[0] == server.pid
        with connect(server.url, max_size=None, open_timeout=TIMEOUT) as ws:
            ws.send(text)
            assert ws.recv(timeout=TIMEOUT) == text
            ws.send(blob)
            assert ws.recv(timeout=TIMEOUT) == blob
            ws.send(big)
            assert ws.recv(timeout=TIMEOUT) == big
        server.check_alive()
    assert wait_gone(pids, timeout=1.0) == []


# ------------------------------------------------------- socketio stacks


@pytest.mark.parametrize(
    ("stack", "options"),
    [
        ("socketio-asgi", {"serializer": "json"}),
        ("socketio-asgi", {"serializer": "orjson", "loop": "asyncio", "ws": "websockets-sansio"}),
        ("socketio-asgi", {"serializer": "msgpack", "ws": "wsproto"}),
        ("socketio-eventlet", {"serializer": "json"}),
        ("socketio-eventlet", {"serializer": "msgpack"}),
        ("socketio-gevent", {"serializer": "json"}),
        ("socketio-gevent", {"serializer": "orjson"}),
        ("flask-socketio-eventlet", {"serializer": "json"}),
        ("flask-socketio-eventlet", {"serializer": "msgpack"}),
        ("flask-socketio-gevent", {"serializer": "json"}),
        ("quart-socketio", {"serializer": "json"}),
        ("quart-socketio", {"serializer": "orjson", "server": "hypercorn", "loop": "asyncio"}),
        ("quart-socketio", {"serializer": "msgpack", "server": "hypercorn"}),
    ],
)
def test_socketio_stack_echo_ack_and_binary(stack: str, options: dict[str, str]) -> None:
    with ServerProcess(stack, options) as server:
        assert server.mode == "socketio"
        assert server.serializer == options["serializer"]
        assert server.url.endswith("/socket.io/?EIO=4&transport=websocket")
        pids = server.pids()
        with socketio_client(server.url, server.serializer) as client:
            assert client.open_info["pingInterval"] == 25000
            if client.msgpack:
                client.send_packet(
                    {"type": 2, "nsp": "/", "data": ["echo", {"a": 1}, b"\x00\xff"]}, ""
                )
                assert client.recv_packet() == {
                    "type": 2,
                    "nsp": "/",
                    "data": ["echo", {"a": 1}, b"\x00\xff"],
                }
                client.send_packet({"type": 2, "nsp": "/", "id": 1, "data": ["ack", "x"]}, "")
                assert client.recv_packet() == {"type": 3, "nsp": "/", "id": 1, "data": ["x"]}
            else:
                client.send_packet({}, '2["echo",{"a":1}]')
                assert client.recv_packet() == '2["echo",{"a":1}]'
                client.send_packet({}, '21["ack","x"]')
                assert client.recv_packet() == '31["x"]'
                client.send_packet({}, '2["echo","é",[1,2],null]')
                assert json.loads(client.recv_packet()[1:]) == ["echo", "é", [1, 2], None]
                payload = os.urandom(ONE_MB)
                client.send_packet({}, '51-["echo",{"_placeholder":true,"num":0}]')
                client.ws.send(payload)
                assert client.recv_packet() == '51-["echo",{"_placeholder":true,"num":0}]'
                assert client.ws.recv(timeout=TIMEOUT) == payload
        server.check_alive()
    assert wait_gone(pids, timeout=1.0) == []


# ------------------------------------------------- the seeds' frameworks

FRAMEWORK_STACKS = [
    ("fastapi", {}),
    ("flask-socketio-eventlet", {}),
    ("flask-socketio-gevent", {}),
    ("quart-socketio", {}),
    ("quart-socketio", {"server": "hypercorn"}),
]


def _echo_through_both_clients(server: ServerProcess) -> None:
    """Text (a JSON payload) and binary round trips, every reply checked, with each client."""
    for client in CLIENTS:
        for payload in ("small", "binary"):
            config = LoadConfig(
                server.url,
                mode=server.mode,
                connections=4,
                duration=0.5,
                warmup=0.0,
                connect_timeout=5.0,
                payload=payload,
            )
            result = run_load(config, client=client)
            assert result.errors == {}, (client, payload, result.errors)
            assert result.messages >= 20, (client, payload, result.messages)


@pytest.mark.parametrize(("stack", "options"), FRAMEWORK_STACKS)
def test_framework_stack_serves_both_load_clients(stack: str, options: dict[str, str]) -> None:
    with ServerProcess(stack, options) as server:
        pids = server.pids()
        _echo_through_both_clients(server)
        server.check_alive()
    assert wait_gone(pids, timeout=1.0) == []


def test_fastapi_with_two_uvicorn_workers_is_one_tree_torn_down_whole() -> None:
    with ServerProcess("fastapi", {"workers": "2"}, startup_timeout=30) as server:
        deadline = time.monotonic() + TIMEOUT
        while len(server.pids()) < 3 and time.monotonic() < deadline:
            time.sleep(0.05)  # the supervisor and both workers
        pids = server.pids()
        assert len(pids) >= 3 and pids[0] == server.pid
        _echo_through_both_clients(server)
        assert server.cpu_seconds() > 0
    assert wait_gone(pids, timeout=2.0) == []


def test_flask_socketio_run_still_makes_the_calls_our_stacks_make() -> None:
    """The flask-socketio stacks repeat ``socketio.run``'s server calls on a pre-bound socket:
    if Flask-SocketIO changes them, the stacks must follow."""
    import inspect

    from flask_socketio import SocketIO

    source = " ".join(inspect.getsource(SocketIO.run).split())
    assert "eventlet.wsgi.server(eventlet_socket, app, log_output=log_output, **kwargs)" in source
    assert "pywsgi.WSGIServer((host, port), app, log=log, **kwargs)" in source
    assert "if not log_output: log = None" in source  # log_output defaults to app.debug


def test_shipped_scenarios_run_the_framework_stacks() -> None:
    matrix = load_scenario("stack-matrix")
    assert [v.stack for v in matrix.variants] == [
        "fastapi",
        "flask-socketio-eventlet",
        "quart-socketio",
    ]
    claims = {v.stack: v.claim for v in matrix.variants if v.claim}
    assert claims["fastapi"]["msgs_per_s"] == 12450
    assert claims["flask-socketio-eventlet"]["p99_ms"] == 45
    workers = load_scenario("workers")
    assert [v.options.get("workers") for v in workers.variants] == ["1", "2"]
    assert "share" in workers.description


def test_ping_options_reach_the_engineio_open_packet() -> None:
    options = {"ping_interval": "1", "ping_timeout": "2.5"}
    with (
        ServerProcess("socketio-asgi", options, startup_timeout=20) as server,
        socketio_client(server.url, "json") as client,
    ):
        assert client.open_info["pingInterval"] == 1000
        assert client.open_info["pingTimeout"] == 2500
        assert client.open_info["maxPayload"] >= ONE_MB
        assert client.ws.recv(timeout=TIMEOUT) == "2"  # the server pings within 1 s


# ------------------------------------------------------ failures, stop


def test_busy_port_is_reported_with_stderr_tail_and_nothing_left() -> None:
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        port = blocker.getsockname()[1]
        server = ServerProcess("websockets-raw", port=port, startup_timeout=20)
        with pytest.raises(ServerFailed) as failure:
            server.start()
    message = str(failure.value)
    assert f"could not bind port {port}" in message
    assert f"wsprof-serve: could not bind 127.0.0.1:{port}" in message  # from its stderr
    assert server.pid and gone(server.pid)
    assert "could not bind" in server.stderr_tail()


def test_startup_timeout_kills_the_server() -> None:
    server = ServerProcess("socketio-gevent", startup_timeout=0.05)
    with pytest.raises(ServerFailed, match=r"was not ready within 0.05 s"):
        server.start()
    assert server.pid and gone(server.pid)


def test_server_killed_mid_run_is_detected() -> None:
    with ServerProcess("socketio-eventlet") as server:
        server.check_alive()
        os.kill(server.pid, signal.SIGKILL)
        deadline = time.monotonic() + TIMEOUT
        with pytest.raises(ServerFailed, match=r"died mid-run \(killed by SIGKILL\)"):
            while time.monotonic() < deadline:
                server.check_alive()
                time.sleep(0.02)
        with pytest.raises(ServerFailed):
            server.rss_bytes()
    server.stop()  # idempotent


def test_cpu_seconds_and_rss_grow_with_work() -> None:
    with ServerProcess("starlette-raw", cpu=0) as server:
        assert os.sched_getaffinity(server.pid) == {0}
        assert server.rss_bytes() > 10_000_000
        before = server.cpu_seconds()
        with connect(server.url, open_timeout=TIMEOUT, compression=None) as ws:
            for i in range(3000):
                ws.send(f"message {i}")
                assert ws.recv(timeout=TIMEOUT) == f"message {i}"
        after = server.cpu_seconds()
        assert after - before > 0.02
        assert server.cpu_seconds() >= after
    assert server.cpu_seconds() >= after  # the last sample survives stop()


CTRL_C_SCRIPT = textwrap.dedent(
    """
    import sys, time
    from wsprof.servers.launcher import ServerProcess
    with ServerProcess(sys.argv[1]) as server:
        print(server.pid, flush=True)
        time.sleep(60)
    """
)


@pytest.mark.parametrize(
    ("stack", "parent_signal"),
    [
        ("starlette-raw", signal.SIGINT),
        ("socketio-eventlet", signal.SIGINT),
        ("starlette-raw", signal.SIGKILL),
    ],
)
def test_server_dies_with_its_parent(stack: str, parent_signal: signal.Signals) -> None:
    """Ctrl-C runs the ``with`` block's cleanup; SIGKILL relies on PR_SET_PDEATHSIG."""
    parent = subprocess.Popen(
        [sys.executable, "-c", CTRL_C_SCRIPT, stack],
        stdout=subprocess.PIPE,
        text=True,
        # A shell that starts jobs in the background (as CI may) makes them ignore
        # SIGINT, and Python then never raises KeyboardInterrupt: restore Ctrl-C.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        assert parent.stdout is not None
        line = parent.stdout.readline()
        server_pid = int(line)
        assert not gone(server_pid)
        parent.send_signal(parent_signal)
        assert parent.wait(timeout=20) != 0
        assert wait_gone([server_pid]) == []
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait(timeout=10)
        if parent.stdout is not None:
            parent.stdout.close()


# ------------------------------------------------------------ orjson shim


def test_orjson_shim_matches_what_socketio_calls() -> None:
    data = ["echo", {"a": 1, "b": [1.5, None, True]}, "é"]
    encoded = orjson_shim.dumps(data, separators=(",", ":"))
    assert isinstance(encoded, str)
    assert encoded == json.dumps(data, separators=(",", ":"), ensure_ascii=False)
    assert orjson_shim.loads(encoded) == data
    assert orjson_shim.dumps({1: 2}) == '{"1":2}'
    assert orjson_shim.dumps({"b": 1, "a": 2}, sort_keys=True) == '{"a":2,"b":1}'
    assert orjson_shim.loads('{"n":1}', parse_int=int) == {"n": 1}
    with pytest.raises(TypeError, match="cls"):
        orjson_shim.dumps({}, cls=json.JSONEncoder)
    with pytest.raises(ValueError):
        orjson_shim.loads("{not json")
