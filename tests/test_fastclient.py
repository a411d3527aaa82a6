"""The Cython fast path: its frame layer against the shared tests, and the load loop end to end.

Real servers run as subprocesses (``python -m wsprof.servers.serve``), so the
client and the server never share a GIL. Misbehaving servers (403, wrong
accept key, closing mid-run, broken or oversize frames) are tiny asyncio
servers in a thread; the client releases the GIL while it waits in epoll.
"""

from __future__ import annotations

import asyncio
import contextlib
import resource
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_protocol import FrameParserTests

from wsprof import _fastclient as fc
from wsprof.client import fast
from wsprof.client.base import LoadConfig, LoadError, LoadResult
from wsprof.client.bench import echo_server
from wsprof.errors import WsprofError
from wsprof.protocol import websocket as ws

HYPO = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


class TestFrameParserFast(FrameParserTests):
    impl_module = "wsprof._fastclient"


def test_protocol_error_is_the_reference_class():
    assert fc.ProtocolError is ws.ProtocolError


@HYPO
@given(st.binary(max_size=300), st.booleans())
def test_random_bytes_only_ever_raise_protocol_error(data, masked):
    parser = fc.FrameParser(max_message_size=200, expect_masked=masked)
    with contextlib.suppress(fc.ProtocolError):
        parser.feed(data)


frames = st.lists(
    st.tuples(
        st.sampled_from([0x0, 0x1, 0x2, 0x8, 0x9, 0xA]),
        st.binary(max_size=140),
        st.booleans(),
    ),
    max_size=6,
)


@HYPO
@given(frames, st.binary(max_size=8), st.integers(1, 50), st.booleans())
def test_same_messages_and_errors_as_the_python_parser(spec, junk, chunk, masked):
    stream = b""
    for opcode, payload, fin in spec:
        if opcode >= 8:
            payload, fin = payload[:125], True
        stream += ws.encode_frame(opcode, payload, fin=fin, mask=b"k3y!" if masked else None)
    stream += junk

    def run(module: Any) -> tuple[list[tuple[int, bytes]], str | None]:
        parser = module.FrameParser(max_message_size=300, expect_masked=masked)
        out: list[tuple[int, bytes]] = []
        for i in range(0, len(stream), chunk):
            try:
                out += parser.feed(stream[i : i + chunk])
            except module.ProtocolError as exc:
                return out, str(exc)
        return out, None

    assert run(fc) == run(ws)


# --- servers ---------------------------------------------------------------------------------


@contextlib.contextmanager
def served(stack: str, **options: str) -> Iterator[int]:
    """A wsprof server stack in its own process; yields its port, always terminates it."""
    args = [sys.executable, "-m", "wsprof.servers.serve", "--stack", stack]
    for key, value in options.items():
        args += ["--opt", f"{key}={value}"]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("WSPROF-READY"), f"{stack} did not start: {line!r}"
        yield int(line.split("port=")[1].split()[0])
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def load(port: int, path: str = "/", **kwargs: Any) -> LoadResult:
    kwargs.setdefault("duration", 0.8)
    kwargs.setdefault("connect_timeout", 5.0)
    return fast.run(LoadConfig(f"ws://127.0.0.1:{port}{path}", **kwargs))


def assert_clean(result: LoadResult, min_messages: int = 20) -> None:
    """Every echo matched byte for byte (no echo_mismatch), latencies positive and ordered."""
    assert result.errors == {}, result.errors
    assert result.messages >= min_messages
    assert result.client == "fast"
    assert result.client_cpu_s > 0
    lat = result.latency_us()
    assert 0 < lat["p50"] <= lat["p90"] <= lat["p99"] <= lat["p999"] <= lat["max"]


@pytest.fixture(scope="module")
def websockets_port() -> Iterator[int]:
    with served("websockets-raw", loop="asyncio") as port:
        yield port


@pytest.fixture(scope="module")
def socketio_port() -> Iterator[int]:
    with served("socketio-asgi", ping_interval="1", ping_timeout="5") as port:
        yield port


@pytest.mark.parametrize("payload", ["small", "binary"])
def test_websockets_closed_loop(websockets_port, payload):
    assert_clean(load(websockets_port, "/ws", payload=payload, connections=5, in_flight=2))


def test_websockets_max_messages_and_warmup(websockets_port):
    result = load(websockets_port, "/ws", max_messages=300, warmup=0.2, duration=10)
    assert_clean(result)
    assert result.messages == 300
    assert result.elapsed_s < 10


def test_websockets_open_loop_keeps_the_rate(websockets_port):
    result = load(websockets_port, "/ws", connections=4, rate=400, duration=1.0)
    assert_clean(result)
    assert 300 <= result.msgs_per_s <= 500


def test_starlette_text_and_binary():
    with served("starlette-raw", loop="asyncio") as port:
        assert_clean(load(port, "/ws", payload="small", connections=3))
        assert_clean(load(port, "/ws", payload="binary", connections=3))


@pytest.mark.parametrize("payload", ["small", "binary"])
def test_socketio_asgi_echo(socketio_port, payload):
    assert_clean(load(socketio_port, mode="socketio", payload=payload, connections=4))


def test_socketio_open_loop(socketio_port):
    result = load(socketio_port, mode="socketio", connections=2, rate=200, duration=1.0)
    assert_clean(result, min_messages=100)


def test_socketio_heartbeat_longer_than_the_ping_interval(socketio_port):
    # ping_interval=1 s: the server pings at least twice, the client must answer every time
    result = load(socketio_port, mode="socketio", connections=2, duration=2.5)
    assert_clean(result)


def test_socketio_msgpack_echo_matches_byte_for_byte():
    with served("socketio-asgi", serializer="msgpack") as port:
        assert_clean(load(port, mode="socketio", serializer="msgpack", connections=2))
        assert_clean(load(port, mode="socketio", serializer="msgpack", payload="binary"))


def test_socketio_eventlet_echo():
    with served("socketio-eventlet") as port:
        assert_clean(load(port, mode="socketio", connections=3, duration=1.0))


# --- misbehaving servers -------------------------------------------------------------------

Behave = Callable[[asyncio.StreamReader, asyncio.StreamWriter, bytes], Awaitable[None]]


@contextlib.contextmanager
def raw_server(behave: Behave) -> Iterator[int]:
    """An asyncio server in a thread that reads the request and hands the key to ``behave``."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    box: dict[str, Any] = {}
    started = threading.Event()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = await reader.readuntil(b"\r\n\r\n")
            key = b""
            for line in request.split(b"\r\n"):
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"sec-websocket-key":
                    key = value.strip()
            await behave(reader, writer, key)
        except (ConnectionError, asyncio.IncompleteReadError, TimeoutError):
            pass
        finally:
            writer.close()

    async def main() -> None:
        box["loop"] = asyncio.get_running_loop()
        box["stop"] = asyncio.Event()
        server = await asyncio.start_server(handle, sock=sock)
        started.set()
        async with server:
            await box["stop"].wait()

    thread = threading.Thread(target=asyncio.run, args=(main(),), daemon=True)
    thread.start()
    assert started.wait(10)
    try:
        yield sock.getsockname()[1]
    finally:
        box["loop"].call_soon_threadsafe(box["stop"].set)
        thread.join(10)
        sock.close()
        assert not thread.is_alive()


def accept(writer: asyncio.StreamWriter, key: bytes) -> None:
    writer.write(
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Accept: " + ws.accept_key(key.decode()).encode() + b"\r\n\r\n"
    )


def echo_then(count: int, then: bytes, alter_every: int = 0) -> Behave:
    """Echo ``count`` messages (every ``alter_every``-th reversed), then write ``then``."""

    async def behave(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, key: bytes):
        accept(writer, key)
        parser = ws.FrameParser(expect_masked=True)
        echoed = 0
        while echoed < count:
            data = await asyncio.wait_for(reader.read(65536), 5)
            if not data:
                return
            for opcode, payload in parser.feed(data):
                if opcode in (ws.OP_TEXT, ws.OP_BINARY) and echoed < count:
                    alter = alter_every and echoed % alter_every == 0
                    writer.write(ws.encode_frame(opcode, payload[::-1] if alter else payload))
                    echoed += 1
        writer.write(then)
        await writer.drain()
        while await asyncio.wait_for(reader.read(65536), 3):
            pass

    return behave


def expect_load_error(port: int, phrase: str, **kwargs: Any) -> str:
    start = time.monotonic()
    with pytest.raises(LoadError) as info:
        load(port, connect_timeout=2.0, duration=2.0, **kwargs)
    assert time.monotonic() - start < 8, "the error path hung"
    text = str(info.value)
    assert "\n" not in text
    assert phrase in text, text
    return text


def test_connection_refused():
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    expect_load_error(port, "Connection refused")


def test_handshake_rejected_with_403():
    async def forbid(reader, writer, key):
        writer.write(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
        await writer.drain()

    with raw_server(forbid) as port:
        expect_load_error(port, "403 Forbidden")


def test_handshake_with_a_wrong_accept_key():
    async def wrong(reader, writer, key):
        accept(writer, b"dGhlIHNhbXBsZSBub25jZQ==")
        await writer.drain()
        await asyncio.sleep(1)

    with raw_server(wrong) as port:
        expect_load_error(port, "wrong Sec-WebSocket-Accept")


def test_server_closing_every_connection_mid_run():
    close = ws.encode_frame(ws.OP_CLOSE, ws.close_payload(1001))
    with raw_server(echo_then(50, close)) as port:
        text = expect_load_error(port, "lost after", connections=2)
        assert "closed_by_server" in text


def test_reserved_bits_from_the_server():
    with raw_server(echo_then(0, b"\xc1\x02hi")) as port:
        text = expect_load_error(port, "reserved bits", connections=2)
        assert "before" in text


def test_oversize_frame_from_the_server():
    big = ws.encode_frame(ws.OP_TEXT, b"x" * 5000)
    with raw_server(echo_then(0, big)) as port:
        expect_load_error(
            port, "message of 5000 bytes exceeds the 4096-byte limit", max_message_size=4096
        )


def test_echo_mismatch_is_counted():
    with raw_server(echo_then(10**9, b"", alter_every=4)) as port:
        result = load(port, connections=1, duration=0.5)
    mismatched = result.errors["echo_mismatch"]
    assert mismatched > 0
    assert result.histogram["total"] == result.messages
    assert result.messages > mismatched  # 3 of 4 echoes were right, and only they were timed


# --- the echo server and the floor -----------------------------------------------------------


def test_echo_server_stops_when_told_and_measure_floor_is_sane():
    with echo_server(None, max_seconds=30) as port:
        result = load(port, connections=3, in_flight=4, duration=0.5)
    assert_clean(result, min_messages=100)
    floor = fc.measure_floor(iterations=5000, max_seconds=0.5)
    assert floor["pairs"] >= 256
    assert 0.1 < floor["us_per_pair"] < 1000


def test_fd_limit_error_is_clear():
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        pytest.skip("no hard fd limit")
    with pytest.raises(WsprofError, match="hard limit"):
        fast.ensure_fd_limit(hard + 10)
