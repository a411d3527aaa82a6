"""The reference client end to end on 127.0.0.1, against real servers started here.

Each server runs its own event loop in a thread, on a socket bound to port 0
before the thread starts (so connections simply queue until it serves). Besides
the real stacks (websockets, uvicorn + Starlette, python-socketio under
uvicorn), tiny asyncio servers misbehave on purpose: refuse the handshake,
answer a wrong accept key, close mid-run, send broken or oversize frames.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest
import socketio
import uvicorn
from starlette.applications import Starlette
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect
from websockets.asyncio.server import serve as ws_serve
from websockets.exceptions import ConnectionClosed

from wsprof.client import reference
from wsprof.client.base import LoadConfig, LoadError
from wsprof.protocol.websocket import (
    OP_BINARY,
    OP_CLOSE,
    OP_PING,
    OP_PONG,
    OP_TEXT,
    FrameParser,
    accept_key,
    close_payload,
    encode_frame,
)

ServerMain = Callable[[socket.socket, asyncio.Event], Awaitable[None]]


@contextlib.contextmanager
def server_thread(main: ServerMain) -> Iterator[int]:
    """Run ``main(sock, stop)`` in a thread with its own loop; yield the port."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(256)
    port = sock.getsockname()[1]
    started = threading.Event()
    box: dict[str, Any] = {}

    async def runner() -> None:
        box["loop"] = asyncio.get_running_loop()
        box["stop"] = stop = asyncio.Event()
        started.set()
        await main(sock, stop)

    thread = threading.Thread(target=asyncio.run, args=(runner(),), daemon=True)
    thread.start()
    assert started.wait(10)
    try:
        yield port
    finally:
        box["loop"].call_soon_threadsafe(box["stop"].set)
        thread.join(15)
        sock.close()
        assert not thread.is_alive(), "server thread did not stop"


def config(port: int, path: str = "/", **kwargs: Any) -> LoadConfig:
    kwargs.setdefault("duration", 1.0)
    kwargs.setdefault("connect_timeout", 3.0)
    return LoadConfig(f"ws://127.0.0.1:{port}{path}", **kwargs)


# --- real servers -------------------------------------------------------------------------


async def websockets_echo(sock: socket.socket, stop: asyncio.Event) -> None:
    async def echo(ws: Any) -> None:
        with contextlib.suppress(ConnectionClosed):
            async for message in ws:
                await ws.send(message)

    async with ws_serve(echo, sock=sock, max_size=None, compression=None):
        await stop.wait()


async def _uvicorn(app: Any, sock: socket.socket, stop: asyncio.Event) -> None:
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            log_level="error",
            lifespan="off",
            ws="websockets-sansio",
            timeout_graceful_shutdown=2,
        )
    )
    task = asyncio.ensure_future(server.serve(sockets=[sock]))
    await stop.wait()
    server.should_exit = True
    await asyncio.wait_for(task, 10)


async def starlette_echo(sock: socket.socket, stop: asyncio.Event) -> None:
    async def echo(websocket: WebSocket) -> None:
        await websocket.accept()
        with contextlib.suppress(WebSocketDisconnect):
            while True:
                message = await websocket.receive()
                if message["type"] == "websocket.disconnect":
                    return
                if message.get("bytes") is not None:
                    await websocket.send_bytes(message["bytes"])
                else:
                    await websocket.send_text(message["text"])

    await _uvicorn(Starlette(routes=[WebSocketRoute("/ws", echo)]), sock, stop)


def socketio_server(events: list[tuple[str, float]] | None = None, **options: Any) -> ServerMain:
    """python-socketio AsyncServer under uvicorn with an echo and an ack handler."""

    async def main(sock: socket.socket, stop: asyncio.Event) -> None:
        sio = socketio.AsyncServer(async_mode="asgi", **options)

        @sio.event
        async def disconnect(sid: str, reason: Any = None) -> None:
            if events is not None:
                events.append(("disconnect", time.monotonic()))

        @sio.on("echo")
        async def echo(sid: str, data: Any) -> None:
            await sio.emit("echo", data, to=sid)

        @sio.on("ack")
        async def ack(sid: str, data: Any) -> Any:
            return data

        await _uvicorn(socketio.ASGIApp(sio), sock, stop)

    return main


def socketio_rejecting_server() -> ServerMain:
    async def main(sock: socket.socket, stop: asyncio.Event) -> None:
        sio = socketio.AsyncServer(async_mode="asgi")

        @sio.event
        async def connect(sid: str, environ: Any, auth: Any) -> None:
            raise socketio.exceptions.ConnectionRefusedError("no entry")

        await _uvicorn(socketio.ASGIApp(sio), sock, stop)

    return main


def assert_clean(result: Any, min_messages: int = 10) -> None:
    assert result.errors == {}
    assert result.messages >= min_messages
    assert result.client == "reference"
    assert result.histogram["total"] == result.messages
    assert result.elapsed_s > 0
    assert result.client_cpu_s > 0
    assert 0 < result.worker_busy_max <= 1.5
    latency = result.latency_us()
    assert 0 < latency["p50"] <= latency["p99"] <= latency["max"]


@pytest.mark.parametrize("payload", ["small", "binary", "large"])
def test_websockets_echo_closed_loop(payload):
    with server_thread(websockets_echo) as port:
        result = reference.run(config(port, payload=payload, connections=2, in_flight=2))
    assert_clean(result)


def test_websockets_echo_max_messages_and_warmup():
    with server_thread(websockets_echo) as port:
        result = reference.run(config(port, duration=10, max_messages=300, warmup=0.2))
    assert_clean(result)
    assert 300 <= result.messages <= 301
    assert result.elapsed_s < 5


def test_websockets_echo_open_loop_keeps_the_rate():
    with server_thread(websockets_echo) as port:
        result = reference.run(config(port, rate=400, connections=4, duration=1.0))
    assert_clean(result)
    # A constant schedule: never more than rate x duration round trips; fewer only
    # when the last ones are still in flight on a loaded machine.
    assert 0.5 * 400 <= result.messages <= 1.05 * 400


def test_starlette_echo_text_and_binary():
    with server_thread(starlette_echo) as port:
        text = reference.run(config(port, "/ws", connections=3, in_flight=2))
        binary = reference.run(config(port, "/ws", payload="binary", rate=200))
    assert_clean(text)
    assert_clean(binary)


def test_starlette_uvloop():
    with server_thread(starlette_echo) as port:
        result = reference.run(config(port, "/ws", duration=0.5), use_uvloop=True)
    assert_clean(result)


@pytest.mark.parametrize(
    ("payload", "serializer"),
    [("small", "json"), ("binary", "json"), ("medium", "msgpack"), ("binary", "msgpack")],
)
def test_socketio_echo(payload, serializer):
    options = {"serializer": serializer} if serializer != "json" else {}
    with server_thread(socketio_server(**options)) as port:
        closed = reference.run(
            config(port, mode="socketio", payload=payload, serializer=serializer, connections=2)
        )
        opened = reference.run(
            config(port, mode="socketio", payload=payload, serializer=serializer, rate=150)
        )
    assert_clean(closed)
    assert_clean(opened, min_messages=100)


@pytest.mark.parametrize("payload", ["small", "binary"])
def test_socketio_acks(payload):
    with server_thread(socketio_server()) as port:
        result = reference.run(
            config(port, mode="socketio", payload=payload, in_flight=3, duration=0.7), ack=True
        )
    assert_clean(result)


def test_socketio_heartbeat_answered_during_the_run():
    # With a 1 s interval and 1 s timeout the server drops a client that leaves a
    # ping unanswered at about t = 2 s; over 2.5 s the client must answer twice.
    events: list[tuple[str, float]] = []
    with server_thread(socketio_server(events, ping_interval=1, ping_timeout=1)) as port:
        result = reference.run(config(port, mode="socketio", rate=100, duration=2.5))
        finished = time.monotonic()
        assert [t for _, t in events if t < finished - 0.2] == []
    assert_clean(result, min_messages=200)
    assert result.elapsed_s >= 2.4


def test_socketio_connect_refused_by_the_server():
    with (
        server_thread(socketio_rejecting_server()) as port,
        pytest.raises(LoadError, match=r"refused the connection: .*no entry"),
    ):
        reference.run(config(port, mode="socketio"))


def test_socketio_default_path():
    assert reference.socketio_path("/") == "/socket.io/?EIO=4&transport=websocket"
    assert reference.socketio_path("/io/?t=1") == "/io/?t=1&EIO=4&transport=websocket"
    assert reference.socketio_path("/x/?EIO=4&transport=websocket") == (
        "/x/?EIO=4&transport=websocket"
    )


# --- misbehaving servers ------------------------------------------------------------------


def raw_server(
    behave: Callable[[asyncio.StreamReader, asyncio.StreamWriter, bytes], Awaitable[None]],
) -> ServerMain:
    """A server that reads the request and hands the key to ``behave``."""

    async def main(sock: socket.socket, stop: asyncio.Event) -> None:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                request = await reader.readuntil(b"\r\n\r\n")
                key = b""
                for line in request.split(b"\r\n"):
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"sec-websocket-key":
                        key = value.strip()
                await behave(reader, writer, key)
            except (ConnectionError, asyncio.IncompleteReadError):
                pass
            finally:
                writer.close()

        server = await asyncio.start_server(handle, sock=sock)
        async with server:
            await stop.wait()

    return main


def accept(writer: asyncio.StreamWriter, key: bytes) -> None:
    writer.write(
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Accept: " + accept_key(key.decode()).encode() + b"\r\n\r\n"
    )


def echo_then(count: int, then: bytes) -> Callable[..., Awaitable[None]]:
    """Echo ``count`` messages, then write ``then`` and wait for the client to go."""

    async def behave(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, key: bytes):
        accept(writer, key)
        parser = FrameParser(expect_masked=True)
        echoed = 0
        while echoed < count:
            data = await asyncio.wait_for(reader.read(65536), 5)
            if not data:
                return
            for opcode, payload in parser.feed(data):
                if opcode in (OP_TEXT, OP_BINARY) and echoed < count:
                    writer.write(encode_frame(opcode, payload))
                    echoed += 1
        writer.write(then)
        await writer.drain()
        with contextlib.suppress(TimeoutError):
            while await asyncio.wait_for(reader.read(65536), 3):
                pass

    return behave


def closed_port() -> int:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    return port


def test_connection_refused():
    port = closed_port()
    with pytest.raises(
        LoadError, match=rf"^cannot connect to 127\.0\.0\.1:{port}: connection refused$"
    ):
        reference.run(config(port))


def test_handshake_rejected_with_403():
    async def forbid(reader, writer, key):
        writer.write(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")

    with server_thread(raw_server(forbid)) as port, pytest.raises(LoadError, match="403 Forbidden"):
        reference.run(config(port))


def test_handshake_with_a_wrong_accept_key():
    async def wrong(reader, writer, key):
        accept(writer, b"not-the-key")
        await asyncio.sleep(1)

    with (
        server_thread(raw_server(wrong)) as port,
        pytest.raises(LoadError, match="wrong Sec-WebSocket-Accept"),
    ):
        reference.run(config(port))


def test_handshake_never_answered_times_out():
    async def mute(reader, writer, key):
        await asyncio.sleep(3)

    started = time.monotonic()
    with (
        server_thread(raw_server(mute)) as port,
        pytest.raises(LoadError, match=r"no answer to the WebSocket handshake within 0\.5 s"),
    ):
        reference.run(config(port, connect_timeout=0.5))
    assert time.monotonic() - started < 3


def test_server_closing_every_connection_mid_run():
    going_away = encode_frame(OP_CLOSE, close_payload(1001, "going away"))
    with server_thread(raw_server(echo_then(25, going_away))) as port:
        result = reference.run(config(port, connections=2, duration=10))
    assert result.errors == {"closed_by_server": 2}
    assert 1 <= result.messages <= 50
    assert result.elapsed_s < 5  # no connection left: the run ended early


def test_server_closing_before_any_echo():
    with (
        server_thread(raw_server(echo_then(0, encode_frame(OP_CLOSE, b"")))) as port,
        pytest.raises(LoadError, match=r"no round trip completed .*closed_by_server=1"),
    ):
        reference.run(config(port, duration=5))


def test_malformed_frames_from_the_server():
    with (
        server_thread(raw_server(echo_then(0, b"\xc1\x02hi"))) as port,
        pytest.raises(LoadError, match=r"protocol_error=1.*frame with reserved bits set"),
    ):
        reference.run(config(port, duration=5))


def test_malformed_frames_after_some_echoes_are_counted():
    with server_thread(raw_server(echo_then(10, b"\x83\x00"))) as port:
        result = reference.run(config(port, duration=5))
    assert result.errors == {"protocol_error": 1}
    assert 1 <= result.messages <= 10


def test_oversize_message_from_the_server():
    # The header alone announces 17 MB; the client must refuse before buffering it.
    header = b"\x82\x7f" + (17_000_000).to_bytes(8, "big")
    with (
        server_thread(raw_server(echo_then(0, header))) as port,
        pytest.raises(
            LoadError, match=r"message of 17000000 bytes exceeds the 16777216-byte limit"
        ),
    ):
        reference.run(config(port, duration=5))


def test_oversize_with_a_configured_limit():
    with (
        server_thread(raw_server(echo_then(0, encode_frame(OP_BINARY, bytes(5000))))) as port,
        pytest.raises(LoadError, match=r"exceeds the 4096-byte limit"),
    ):
        reference.run(config(port, duration=5, max_message_size=4096))


def test_echo_mismatch_is_counted():
    async def corrupt(reader, writer, key):
        accept(writer, key)
        parser = FrameParser(expect_masked=True)
        with contextlib.suppress(TimeoutError):
            while data := await asyncio.wait_for(reader.read(65536), 3):
                for opcode, payload in parser.feed(data):
                    if opcode == OP_TEXT:
                        writer.write(encode_frame(OP_TEXT, payload[::-1]))
                    elif opcode == OP_CLOSE:
                        writer.write(encode_frame(OP_CLOSE, payload))
                        return

    with server_thread(raw_server(corrupt)) as port:
        result = reference.run(config(port, max_messages=50))
    assert result.messages == 50
    assert result.errors == {"echo_mismatch": 50}


def test_websocket_pings_are_answered_mid_run():
    pongs: list[bytes] = []

    async def pinging_echo(reader, writer, key):
        accept(writer, key)
        parser = FrameParser(expect_masked=True)
        sent = 0
        with contextlib.suppress(TimeoutError):
            while data := await asyncio.wait_for(reader.read(65536), 3):
                for opcode, payload in parser.feed(data):
                    if opcode == OP_TEXT:
                        writer.write(encode_frame(OP_TEXT, payload))
                        sent += 1
                        if sent % 20 == 0:
                            writer.write(encode_frame(OP_PING, str(sent).encode()))
                    elif opcode == OP_PONG:
                        pongs.append(payload)
                    elif opcode == OP_CLOSE:
                        writer.write(encode_frame(OP_CLOSE, payload))
                        return

    with server_thread(raw_server(pinging_echo)) as port:
        result = reference.run(config(port, max_messages=100))
    assert_clean(result, min_messages=100)
    assert pongs[:4] == [b"20", b"40", b"60", b"80"]
