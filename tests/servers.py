"""The servers the tests talk to, in one place.

Real stacks run in their own process through the launcher (``stack``), so a
client and its server never share a GIL. Misbehaving servers (403, a wrong
accept key, closing mid-run, broken, oversize or altered frames) are tiny
asyncio servers in a thread of the test process, on a socket bound to port 0
before the thread starts; the clients release the GIL while they wait.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
import socketio
import uvicorn

from wsprof.protocol import websocket as ws
from wsprof.servers.launcher import ServerProcess
from wsprof.servers.redis import RedisServer, RedisUnavailable

ServerMain = Callable[[socket.socket, asyncio.Event], Awaitable[None]]
Behave = Callable[[asyncio.StreamReader, asyncio.StreamWriter, bytes], Awaitable[None]]


@contextlib.contextmanager
def stack(name: str, **options: str) -> Iterator[ServerProcess]:
    """A wsprof server stack in its own process; always stopped."""
    with ServerProcess(name, options, startup_timeout=30) as server:
        yield server


@contextlib.contextmanager
def redis_broker() -> Iterator[RedisServer]:
    """wsprof's own redis-server; the test skips with the install line when there is none."""
    try:
        broker = RedisServer().start()
    except RedisUnavailable as exc:
        import pytest

        pytest.skip(str(exc))
    with broker:
        yield broker


@contextlib.contextmanager
def server_thread(main: ServerMain) -> Iterator[int]:
    """Run ``main(sock, stop)`` in a thread with its own event loop; yield the port."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(256)
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
        yield sock.getsockname()[1]
    finally:
        box["loop"].call_soon_threadsafe(box["stop"].set)
        thread.join(15)
        sock.close()
        assert not thread.is_alive(), "server thread did not stop"


@contextlib.contextmanager
def raw_server(behave: Behave) -> Iterator[int]:
    """A server that reads the upgrade request and hands the key to ``behave``."""

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
            except (ConnectionError, asyncio.IncompleteReadError, TimeoutError):
                pass
            finally:
                writer.close()

        server = await asyncio.start_server(handle, sock=sock)
        async with server:
            await stop.wait()

    with server_thread(main) as port:
        yield port


def accept(writer: asyncio.StreamWriter, key: bytes) -> None:
    writer.write(
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Accept: " + ws.accept_key(key.decode()).encode() + b"\r\n\r\n"
    )


def echo_then(count: int, then: bytes, alter_every: int = 0) -> Behave:
    """Echo ``count`` messages, then write ``then`` and wait for the client to go.

    Every ``alter_every``-th echo is reversed (a reply that fails the check). The
    server answers the client's Close, so a run that ends normally closes cleanly.
    """

    async def behave(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, key: bytes):
        accept(writer, key)
        parser = ws.FrameParser(expect_masked=True)
        echoed = 0
        while echoed < count:
            data = await asyncio.wait_for(reader.read(65536), 5)
            if not data:
                return
            for opcode, payload in parser.feed(data):
                if opcode == ws.OP_CLOSE:
                    writer.write(ws.encode_frame(ws.OP_CLOSE, payload))
                    return
                if opcode in (ws.OP_TEXT, ws.OP_BINARY) and echoed < count:
                    alter = alter_every and echoed % alter_every == 0
                    writer.write(ws.encode_frame(opcode, payload[::-1] if alter else payload))
                    echoed += 1
        writer.write(then)
        await writer.drain()
        with contextlib.suppress(TimeoutError):
            while await asyncio.wait_for(reader.read(65536), 3):
                pass

    return behave


def faulty_broadcast(drop_every: int, duplicate_every: int) -> Behave:
    """A raw broadcast server (every message to every connection) that wrongs its first
    connection: broadcast id ``i`` is not delivered to it when ``i % drop_every == 0`` and
    delivered twice when ``i % duplicate_every == 3``, so the counts are known exactly."""
    from wsprof.protocol.broadcast import parse_body

    members: list[asyncio.StreamWriter] = []

    async def behave(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, key: bytes):
        accept(writer, key)
        members.append(writer)
        parser = ws.FrameParser(expect_masked=True)
        try:
            while data := await asyncio.wait_for(reader.read(65536), 10):
                for opcode, payload in parser.feed(data):
                    if opcode == ws.OP_CLOSE:
                        writer.write(ws.encode_frame(ws.OP_CLOSE, payload))
                        return
                    bid = parse_body(payload)
                    frame = ws.encode_frame(opcode, payload)
                    for i, member in enumerate(list(members)):
                        copies = 1
                        if i == 0 and bid % drop_every == 0:
                            copies = 0
                        elif i == 0 and bid % duplicate_every == 3:
                            copies = 2
                        member.write(frame * copies)
        finally:
            members.remove(writer)

    return behave


def socketio_acker(shift_every: int) -> Behave:
    """A minimal Socket.IO server that acks every event; every ``shift_every``-th ack
    carries an id one past the event's (an id no request carries)."""

    async def behave(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, key: bytes):
        accept(writer, key)
        open_packet = '0{"sid":"s","upgrades":[],"pingInterval":25000,"pingTimeout":20000}'
        writer.write(ws.encode_frame(ws.OP_TEXT, open_packet.encode()))
        parser = ws.FrameParser(expect_masked=True)
        answered = 0
        while True:
            data = await asyncio.wait_for(reader.read(65536), 5)
            if not data:
                return
            for opcode, payload in parser.feed(data):
                if opcode == ws.OP_CLOSE:
                    writer.write(ws.encode_frame(ws.OP_CLOSE, payload))
                    return
                text = payload.decode()
                if text.startswith("40"):
                    writer.write(ws.encode_frame(ws.OP_TEXT, b'40{"sid":"n"}'))
                elif text.startswith("42"):
                    ack_id = int(text[2 : text.index("[")])
                    answered += 1
                    shift = 1 if answered % shift_every == 0 else 0
                    ack = f"43{ack_id + shift}[]".encode()
                    writer.write(ws.encode_frame(ws.OP_TEXT, ack))

    return behave


def pong_recorder(pongs: list[bytes]) -> Behave:
    """Echo every message, ping after every 20th echo, and keep the Pong payloads."""

    async def behave(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, key: bytes):
        accept(writer, key)
        parser = ws.FrameParser(expect_masked=True)
        echoed = 0
        with contextlib.suppress(TimeoutError):
            while data := await asyncio.wait_for(reader.read(65536), 3):
                for opcode, payload in parser.feed(data):
                    if opcode in (ws.OP_TEXT, ws.OP_BINARY):
                        writer.write(ws.encode_frame(opcode, payload))
                        echoed += 1
                        if echoed % 20 == 0:
                            writer.write(ws.encode_frame(ws.OP_PING, str(echoed).encode()))
                    elif opcode == ws.OP_PONG:
                        pongs.append(payload)
                    elif opcode == ws.OP_CLOSE:
                        writer.write(ws.encode_frame(ws.OP_CLOSE, payload))
                        return

    return behave


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


async def socketio_rejecting(sock: socket.socket, stop: asyncio.Event) -> None:
    """python-socketio that refuses every namespace connect with "no entry"."""
    sio = socketio.AsyncServer(async_mode="asgi")

    @sio.event
    async def connect(sid: str, environ: Any, auth: Any) -> None:
        raise socketio.exceptions.ConnectionRefusedError("no entry")

    await _uvicorn(socketio.ASGIApp(sio), sock, stop)


async def fastapi_prefixing(sock: socket.socket, stop: asyncio.Event) -> None:
    """tests/apps/fastapi_echo.py: route /ws answers every text with "Echo: " + text."""
    from apps.fastapi_echo import app

    await _uvicorn(app, sock, stop)


async def socketio_replying(sock: socket.socket, stop: asyncio.Event) -> None:
    """python-socketio that answers ``message`` with ``response``, acks ``ask``, and acks
    ``chatty`` after an unrelated ``note`` event: servers that do not echo."""
    sio = socketio.AsyncServer(async_mode="asgi")

    @sio.on("message")
    async def message(sid: str, data: Any) -> None:
        await sio.emit("response", f"Echo: {data}", to=sid)

    @sio.on("ask")
    async def ask(sid: str, data: Any) -> str:
        return f"Echo: {data}"

    @sio.on("chatty")
    async def chatty(sid: str, data: Any) -> str:
        await sio.emit("note", "hello", to=sid)
        return "ok"

    await _uvicorn(socketio.ASGIApp(sio), sock, stop)


@contextlib.contextmanager
def flask_socketio_app() -> Iterator[int]:
    """tests/apps/flask_socketio_app.py run as its docs run it (socketio.run on eventlet)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    app = Path(__file__).parent / "apps" / "flask_socketio_app.py"
    proc = subprocess.Popen(
        [sys.executable, str(app), str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
                break
            assert proc.poll() is None and time.monotonic() < deadline, "app did not start"
            time.sleep(0.1)
        yield port
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def closed_port() -> int:
    """A port on 127.0.0.1 that nothing listens on."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    return port


def gone(pid: int) -> bool:
    """The process has exited (a zombie waiting to be reaped counts as gone)."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def wait_gone(pids: list[int], timeout: float = 15.0) -> list[int]:
    """Wait up to ``timeout`` for every pid to exit; return the ones still running."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        alive = [pid for pid in pids if not gone(pid)]
        if not alive:
            return []
        time.sleep(0.05)
    return [pid for pid in pids if not gone(pid)]
