"""The reference broadcast client: plain asyncio and wsprof.protocol, the contract's readable form.

It obeys the contract of wsprof.client.broadcast exactly as the fast client does;
it is slower (Python per delivery), so its throughput figures describe itself
long before they describe a server: it exists to cross-check the fast client.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from typing import Any, cast

from wsprof.client.base import LoadError, ensure_fd_limit, parse_url
from wsprof.client.broadcast_base import (
    BroadcastConfig,
    BroadcastResult,
    finish,
)
from wsprof.client.histogram import PyHistogram
from wsprof.protocol import socketio
from wsprof.protocol.broadcast import EVENT, BroadcastBodyError, encode_body, parse_body
from wsprof.protocol.engineio import parse_open, socketio_path
from wsprof.protocol.websocket import (
    OP_BINARY,
    OP_CLOSE,
    OP_PING,
    OP_PONG,
    OP_TEXT,
    FrameParser,
    HandshakeError,
    ProtocolError,
    build_handshake_request,
    close_payload,
    encode_frame,
    new_key,
    parse_handshake_response,
)

#: Handshakes in progress at once while connecting.
OPEN_CONCURRENCY = 100
WARMUP, MEASURE, DRAIN = "warmup", "measure", "drain"
NEVER = 1 << 62


class _Conn(asyncio.Protocol):
    """One connection: a recipient, and a sender when ``index < senders``."""

    def __init__(self, run: _Run, index: int) -> None:
        self.run, self.index = run, index
        self.server = index % len(run.config.urls)
        host, port, path = parse_url(run.config.urls[self.server])
        self.where = f"{host}:{port}"
        self.path = socketio_path(path) if run.socketio else path
        self.host, self.port = host, port
        self.key = new_key()
        self.stage = "handshake"
        self.head = bytearray()
        self.parser = FrameParser()
        self.decoder = socketio.PacketDecoder()
        self.received: set[int] = set()
        self.transport: asyncio.Transport | None = None
        self.ready: asyncio.Future[None] = run.loop.create_future()
        self.ready.add_done_callback(lambda f: f.cancelled() or f.exception())
        self.closed: asyncio.Future[None] = run.loop.create_future()
        self.closing = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self.transport.write(build_handshake_request(self.host, self.port, self.path, self.key))

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.ready.done():
            self.ready.set_exception(
                LoadError(f"{self.where} closed connection {self.index} during its {self.stage}")
            )
        elif not self.closing:
            self.run.count("closed_by_server" if exc is None else "connection_reset")
        self.stage = "dead"
        if not self.closed.done():
            self.closed.set_result(None)

    def data_received(self, data: bytes) -> None:
        if self.stage == "handshake":
            self.head += data
            try:
                used = parse_handshake_response(bytes(self.head), self.key)
            except HandshakeError as exc:
                self.fail(f"WebSocket handshake with {self.where} failed: {exc}")
                return
            if used is None:
                return
            data = bytes(self.head[used:])
            self.stage = "Engine.IO open" if self.run.socketio else "ready"
            if not self.run.socketio:
                self.ready.set_result(None)
        try:
            messages = self.parser.feed(data)
        except ProtocolError:
            self.run.count("protocol_error")
            self.abort()
            return
        now = time.monotonic_ns()
        for opcode, payload in messages:
            if self.stage == "dead":
                return
            self.on_message(opcode, payload, now)

    def on_message(self, opcode: int, payload: bytes, now: int) -> None:
        if opcode == OP_PING:
            self.send(OP_PONG, payload)
        elif opcode == OP_CLOSE:
            if not self.closing:
                self.run.count("closed_by_server")
            self.abort()
        elif opcode == OP_PONG:
            return
        elif not self.run.socketio:
            self.on_body(payload, now)
        elif self.stage != "ready":
            self.on_setup(opcode, payload)
        elif opcode == OP_TEXT:
            self.on_engineio(payload.decode(errors="replace"), now)
        elif self.run.msgpack:
            self.on_packet(socketio.decode_msgpack(payload), now)
        else:
            self.run.unexpected("unexpected_message", "binary message")

    def on_setup(self, opcode: int, payload: bytes) -> None:
        message: str | bytes = payload.decode() if opcode == OP_TEXT else payload
        try:
            if message == "2":
                self.send(OP_TEXT, b"3")
            elif self.stage == "Engine.IO open":
                parse_open(cast(str, message))
                self.stage = "Socket.IO connect"
                self.send(*self.run.session.connect)
            else:
                socketio.check_connect_reply(message, msgpack=self.run.msgpack)
                self.stage = "ready"
                self.ready.set_result(None)
        except (ProtocolError, TypeError) as exc:
            self.fail(f"Socket.IO set-up with {self.where} failed: {exc}")

    def on_engineio(self, text: str, now: int) -> None:
        if text == "2":
            self.send(OP_TEXT, b"3")
            return
        if not text.startswith("4"):
            if text.startswith("1"):
                self.run.count("closed_by_server")
                self.abort()
            else:
                self.run.unexpected("unexpected_message", f"Engine.IO {text[:1]!r}")
            return
        try:
            packets = self.decoder.feed_text(text[1:])
        except ProtocolError:
            self.run.unexpected("malformed_body", "malformed Socket.IO packet")
            return
        for packet in packets:
            self.on_packet(packet, now)

    def on_packet(self, packet: socketio.Packet, now: int) -> None:
        if packet.type == socketio.DISCONNECT:
            self.run.count("closed_by_server")
            self.abort()
            return
        data = packet.data if isinstance(packet.data, list) else []
        if packet.type != socketio.EVENT or not data:
            self.run.unexpected("unexpected_message", f"Socket.IO packet type {packet.type}")
        elif data[0] != EVENT:
            self.run.unexpected("unexpected_event", f"event:{data[0]}")
        elif len(data) != 2 or not isinstance(data[1], str):
            self.run.unexpected("malformed_body", "broadcast event without one string")
        else:
            self.on_body(data[1].encode(), now)

    def on_body(self, body: bytes, now: int) -> None:
        try:
            bid = parse_body(body)
        except BroadcastBodyError:
            self.run.unexpected("malformed_body", "malformed broadcast body")
            return
        self.run.delivered(self, bid, now)

    def send(self, opcode: int, payload: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(encode_frame(opcode, payload, mask=os.urandom(4)))

    def fail(self, why: str) -> None:
        if not self.ready.done():
            self.ready.set_exception(LoadError(why))
        self.abort()

    def abort(self) -> None:
        self.closing = True
        if self.transport is not None:
            self.transport.close()


class _Run:
    def __init__(self, config: BroadcastConfig, loop: asyncio.AbstractEventLoop) -> None:
        self.config, self.loop = config, loop
        self.socketio = config.mode == "socketio"
        self.msgpack = self.socketio and config.serializer == "msgpack"
        self.session = socketio.session_bytes(self.msgpack)
        self.errors: dict[str, int] = {}
        self.seen: dict[str, int] = {}
        self.conns: list[_Conn] = []
        self.phase = WARMUP
        self.sent_ns: list[int] = []  # per id: send (closed) or intended (open) time
        self.sender_of: list[int] = []
        self.remaining: list[int] = []
        self.first_id = self.last_id = NEVER  # the window's ids: [first_id, last_id)
        self.deliveries = self.duplicates = 0
        self.window_left = 0  # window broadcasts not yet at every recipient (set at its end)
        self.hist, self.cross = PyHistogram(), PyHistogram()
        self.window_done: asyncio.Event = asyncio.Event()

    def count(self, kind: str) -> None:
        self.errors[kind] = self.errors.get(kind, 0) + 1

    def unexpected(self, kind: str, what: str) -> None:
        self.count(kind)
        self.seen[what] = self.seen.get(what, 0) + 1

    def broadcast(self, sender: int, stamp: int) -> None:
        """Send the next id from connection ``sender``."""
        conn = self.conns[sender]
        bid = len(self.sent_ns)
        self.sent_ns.append(stamp)
        self.sender_of.append(sender)
        self.remaining.append(len(self.conns))
        body = encode_body(bid, self.config.payload_bytes)
        if self.msgpack:
            conn.send(OP_BINARY, socketio.encode_event_msgpack(EVENT, body))
        elif self.socketio:
            (text,) = socketio.encode_event(EVENT, body)
            conn.send(OP_TEXT, cast(str, text).encode())
        else:
            conn.send(OP_TEXT, body.encode())

    def delivered(self, conn: _Conn, bid: int, now: int) -> None:
        if bid >= len(self.sent_ns):
            self.unexpected("unknown_id", "ids never sent")
            return
        if bid in conn.received:
            self.duplicates += 1
            return
        conn.received.add(bid)
        sender = self.sender_of[bid]
        if self.first_id <= bid < self.last_id:
            self.deliveries += 1
            latency = max(0, now - self.sent_ns[bid])
            self.hist.record(latency)
            if conn.server != self.conns[sender].server:
                self.cross.record(latency)
        self.remaining[bid] -= 1
        if self.remaining[bid] == 0:
            if self.config.rate is None and self.phase != DRAIN:
                self.broadcast(sender, time.monotonic_ns())
            if self.phase == DRAIN and self.first_id <= bid < self.last_id:
                self.window_left -= 1
                if self.window_left == 0:
                    self.window_done.set()

    async def connect_all(self) -> None:
        gate = asyncio.Semaphore(OPEN_CONCURRENCY)

        async def one(conn: _Conn) -> None:
            async with gate:
                try:
                    await self.loop.create_connection(lambda: conn, conn.host, conn.port)
                except OSError as exc:
                    raise LoadError(f"cannot connect to {conn.where}: {exc.strerror}") from None
                await conn.ready

        self.conns = [_Conn(self, i) for i in range(self.config.recipients)]
        try:
            await asyncio.wait_for(
                asyncio.gather(*(one(c) for c in self.conns)), self.config.connect_timeout
            )
        except TimeoutError:
            ready = sum(c.ready.done() for c in self.conns)
            raise LoadError(
                f"{len(self.conns) - ready} of {len(self.conns)} connections were not ready "
                f"after {self.config.connect_timeout:g} s"
            ) from None

    async def open_loop(self, rate: float) -> None:
        interval = int(1e9 / rate)
        due = time.monotonic_ns()
        k = 0
        while self.phase != DRAIN:
            now = time.monotonic_ns()
            while due <= now:
                self.broadcast(k % self.config.senders, due)
                k += 1
                due += interval
            await asyncio.sleep((due - now) / 1e9)

    async def close_all(self) -> None:
        for conn in self.conns:
            if conn.stage == "ready":
                conn.closing = True
                if self.socketio:
                    conn.send(*self.session.disconnect)
                conn.send(OP_CLOSE, close_payload(1000))
        pending = [c.closed for c in self.conns if not c.closed.done()]
        if pending:
            _, late = await asyncio.wait(pending, timeout=self.config.close_timeout)
            self.errors["close_timeout"] = self.errors.get("close_timeout", 0) + len(late)
        for conn in self.conns:
            conn.abort()


async def _run(config: BroadcastConfig) -> BroadcastResult:
    run = _Run(config, asyncio.get_running_loop())
    scheduler: asyncio.Task[None] | None = None
    try:
        await run.connect_all()
        start = time.monotonic_ns()
        if config.warmup <= 0:
            config.window_mark("start")
            run.phase, run.first_id = MEASURE, 0
            t0, cpu0 = start, time.thread_time()
        if config.rate is not None:
            scheduler = asyncio.create_task(run.open_loop(config.rate))
        else:
            for sender in range(config.senders):
                for _ in range(config.in_flight):
                    run.broadcast(sender, start)
        if config.warmup > 0:
            await asyncio.sleep(config.warmup)
            config.window_mark("start")
            run.phase = MEASURE
            run.first_id = len(run.sent_ns)
            t0, cpu0 = time.monotonic_ns(), time.thread_time()
        await asyncio.sleep(config.duration)
        run.phase = DRAIN
        run.last_id = len(run.sent_ns)
        t1, cpu1 = time.monotonic_ns(), time.thread_time()
        config.window_mark("end")
        run.window_left = sum(1 for r in run.remaining[run.first_id : run.last_id] if r)
        if run.window_left:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(run.window_done.wait(), config.drain_s)
    finally:
        run.phase = DRAIN
        if scheduler is not None:
            scheduler.cancel()
        await run.close_all()
    out: dict[str, Any] = {
        "broadcasts": run.last_id - run.first_id,
        "deliveries": run.deliveries,
        "duplicates": run.duplicates,
        "elapsed_s": (t1 - t0) / 1e9,
        "cpu_s": cpu1 - cpu0,
        "errors": run.errors,
        "seen": run.seen,
    }
    return finish(config, out, run.hist, run.cross)


def run(config: BroadcastConfig) -> BroadcastResult:
    """Run ``config`` on a fresh asyncio loop in this thread."""
    ensure_fd_limit(config.recipients)
    return asyncio.run(_run(config))
