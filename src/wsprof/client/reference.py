"""The reference load client: pure Python asyncio over wsprof.protocol, no WebSocket library.

It is the readable twin of the Cython fast path: slower, but every step is
plain Python on top of the sans-I/O modules, so its results (and its bugs)
can be checked by reading. Each connection is an ``asyncio.Protocol``; bytes
go through ``FrameParser`` and the Engine.IO/Socket.IO codecs, echoes are
checked and matched FIFO per connection (a server answers one connection's
messages in order). It counts, times and reports what the fast client does:
the contract is in ``LoadResult``.

Closed loop: each connection keeps ``in_flight`` messages outstanding and
latency runs from the actual send. Open loop: each connection sends on a fixed
schedule and latency runs from the *intended* send time, so a client or server
that falls behind shows up as latency instead of being skipped (no coordinated
omission). asyncio's timers wake up to ~1 ms late (epoll's millisecond
timeout), and that lateness is counted too: use the fast client for
sub-millisecond open-loop latencies.
"""

from __future__ import annotations

import asyncio
import os
import random
import time
from collections import deque
from collections.abc import Callable
from typing import Any, cast

from wsprof.client.base import LoadConfig, LoadError, LoadResult, ensure_fd_limit, unanswered
from wsprof.client.histogram import PyHistogram
from wsprof.protocol import engineio, socketio
from wsprof.protocol.engineio import socketio_path
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
    parse_close_payload,
    parse_handshake_response,
)

CONNECT_CONCURRENCY = 64  # handshakes in progress at once while opening connections
CLOSE_WAIT_S = 2.0  # how long the close handshake may take for all connections together

_randbytes = random.Random().randbytes


class _Message:
    """What one connection sends per round trip and how it checks the reply contract."""

    def __init__(self, config: LoadConfig) -> None:
        payload = config.message_payload()
        self.mode = config.mode
        self.msgpack = config.serializer == "msgpack"
        self.ack = config.ack
        self.echo = config.reply_contract == "echo"
        self.args = [payload.value]
        self.event = config.event
        self.reply_event = config.expected_event
        self.frames: list[tuple[int, bytes]] = []
        if config.mode == "raw":
            raw = payload.raw_message()
            opcode = OP_TEXT if isinstance(raw, str) else OP_BINARY
            self.raw = raw.encode() if isinstance(raw, str) else raw
            self.raw_opcode = opcode
            self.frames = [(opcode, self.raw)]
        elif self.msgpack:
            self.frames = [(OP_BINARY, socketio.encode_event_msgpack(self.event, *self.args))]
        else:
            messages = socketio.encode_event(self.event, *self.args)
            self.frames = [
                (OP_TEXT, m.encode()) if isinstance(m, str) else (OP_BINARY, m) for m in messages
            ]
            # Ack ids go between the packet header and the JSON array.
            self._split = self.frames[0][1].index(b"[")

    def frames_for(self, ack_id: int | None) -> list[tuple[int, bytes]]:
        if ack_id is None:
            return self.frames
        text = self.frames[0][1]
        first = (OP_TEXT, text[: self._split] + str(ack_id).encode() + text[self._split :])
        return [first, *self.frames[1:]]

    def classify(self, packet: socketio.Packet) -> str:
        """ "reply", "mismatch", "ack" (when acks are the reply: its id is checked by the
        caller), or what else arrived: "event:NAME", "ack", "frame"."""
        if packet.type in (socketio.ACK, socketio.BINARY_ACK):
            return "ack"
        if packet.type in (socketio.EVENT, socketio.BINARY_EVENT) and packet.data:
            name = packet.data[0]
            if self.ack or name != self.reply_event:
                return f"event:{name}"
            if self.echo and packet.data[1:] != self.args:
                return "mismatch"
            return "reply"
        return "frame"


class _Connection(asyncio.Protocol):
    """One WebSocket (optionally Engine.IO/Socket.IO) connection of a load run."""

    def __init__(self, run: _Run) -> None:
        self.run = run
        self.config = run.config
        self.loop = run.loop
        self.key = new_key()
        self.stage = "TCP connect"
        self.handshake_buf = bytearray()
        self.parser = FrameParser(self.config.max_message_size)
        self.decoder = socketio.PacketDecoder()
        self.transport: asyncio.Transport | None = None
        self.ready: asyncio.Future[None] = self.loop.create_future()
        # A setup failure may land after its waiter gave up: mark it seen, not "never retrieved".
        self.ready.add_done_callback(lambda f: f.cancelled() or f.exception())
        self.closed: asyncio.Future[None] = self.loop.create_future()
        self.pending: deque[tuple[int, int | None]] = deque()  # (start ns, ack id)
        self.next_ack_id = 0
        self.alive = False  # open and usable for the load
        self.closing = False  # we sent our Close frame
        self.ended = False  # counted out of the run (closed, broken)

    # --- asyncio callbacks -------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        self.stage = "WebSocket handshake"
        path = self.config.path
        if self.config.mode == "socketio":
            path = socketio_path(path)
        self.transport.write(
            build_handshake_request(self.config.host, self.config.port, path, self.key)
        )

    def data_received(self, data: bytes) -> None:
        if self.stage == "WebSocket handshake":
            self.handshake_buf += data
            try:
                used = parse_handshake_response(bytes(self.handshake_buf), self.key)
            except HandshakeError as exc:
                self._setup_failed(f"WebSocket handshake with {self.run.where} failed: {exc}")
                return
            if used is None:
                return
            data = bytes(self.handshake_buf[used:])
            self.handshake_buf = bytearray()
            if self.config.mode == "socketio":
                self.stage = "Engine.IO open"
            else:
                self._set_ready()
            if not data:
                return
        try:
            messages = self.parser.feed(data)
        except ProtocolError as exc:
            self._protocol_error(exc)
            return
        for opcode, payload in messages:
            if self.ended and not self.closing:
                return
            try:
                self._on_message(opcode, payload)
            except ProtocolError as exc:
                self._protocol_error(exc)
                return

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.ready.done():
            self._setup_failed(f"{self.run.where} closed the connection during the {self.stage}")
        elif not self.closing and exc is None:
            self._end("closed_by_server", "the server closed the connection")
        elif not self.closing:
            self._end("connection_reset", str(exc))
        self.alive = False
        if not self.closed.done():
            self.closed.set_result(None)

    # --- messages ----------------------------------------------------------------------

    def _on_message(self, opcode: int, payload: bytes) -> None:
        if opcode == OP_PING:
            self._send_frame(OP_PONG, payload)
        elif opcode == OP_PONG:
            pass
        elif opcode == OP_CLOSE:
            self._on_close(payload)
        elif self.config.mode == "raw":
            self._on_raw(opcode, payload)
        elif opcode == OP_TEXT:
            self._on_engineio(payload.decode())
        elif self.run.message.msgpack:
            self._on_packet(socketio.decode_msgpack(payload))
        else:
            for packet in self.decoder.feed_binary(payload):
                self._on_packet(packet)

    def _on_raw(self, opcode: int, payload: bytes) -> None:
        if not self.pending:
            self.run.count("unexpected_message", f"a reply to no message (opcode {opcode})")
            return
        start, _ = self.pending.popleft()
        message = self.run.message
        ok = not message.echo or (opcode == message.raw_opcode and payload == message.raw)
        self.run.completed(self, start, ok)

    def _on_engineio(self, text: str) -> None:
        ptype, data = engineio.decode_text(text)
        if ptype == engineio.PING:
            self._send_frame(OP_TEXT, b"3" + data.encode())
        elif ptype == engineio.MESSAGE:
            if self.run.message.msgpack:
                raise socketio.SocketIOError("text Socket.IO packet from a msgpack server")
            for packet in self.decoder.feed_text(data):
                self._on_packet(packet)
        elif ptype == engineio.OPEN and self.stage == "Engine.IO open":
            engineio.parse_open(text)
            self.stage = "Socket.IO connect"
            if self.run.message.msgpack:
                self._send_frame(OP_BINARY, socketio.encode_connect_msgpack())
            else:
                self._send_frame(OP_TEXT, socketio.encode_connect().encode())
        elif ptype == engineio.CLOSE:
            self._server_closed("the server closed the Engine.IO session")
        elif ptype != engineio.NOOP:
            raise engineio.EngineIOError(f"unexpected Engine.IO packet {text[:40]!r}")

    def _on_packet(self, packet: socketio.Packet) -> None:
        if self.stage == "Socket.IO connect":
            if packet.type == socketio.CONNECT:
                self._set_ready()
            elif packet.type == socketio.CONNECT_ERROR:
                self._setup_failed(
                    f"Socket.IO server at {self.run.where} refused the connection: {packet.data}"
                )
            return
        if packet.type == socketio.DISCONNECT:
            self._server_closed("the server disconnected the Socket.IO namespace")
            return
        message = self.run.message
        kind = message.classify(packet)
        if kind == "ack" and not message.ack:
            self.run.unexpected("unexpected_ack", "ack", "an ack nobody asked for")
            return
        if kind.startswith("event:"):
            self.run.unexpected("unexpected_event", kind, f"an event {kind[6:]!r}")
            return
        if kind == "frame":
            self.run.unexpected("unexpected_message", "frame", f"Socket.IO packet {packet.type}")
            return
        if not self.pending:
            self.run.count(
                "unexpected_message", f"a reply to no message (Socket.IO packet type {packet.type})"
            )
            return
        start, _ = self.pending.popleft()
        ok = kind == "reply"
        if kind == "ack":
            # ids are sequential per connection: the outstanding ones are the newest
            ok = packet.id is not None and (
                self.next_ack_id - len(self.pending) - 1 <= packet.id < self.next_ack_id
            )
        self.run.completed(self, start, ok)

    def _on_close(self, payload: bytes) -> None:
        if self.closing:
            self._abort(graceful=True)
            return
        if not self.ready.done():
            code, reason = parse_close_payload(payload)
            self._setup_failed(
                f"{self.run.where} closed the WebSocket during the {self.stage} "
                f"(code {code}{': ' + reason if reason else ''})"
            )
            return
        code, reason = parse_close_payload(payload)
        self._server_closed(f"the server sent Close {code}{' ' + reason if reason else ''}")
        self._send_frame(OP_CLOSE, payload[:2])
        self.closing = True
        self._abort(graceful=True)

    def _server_closed(self, why: str) -> None:
        if not self.ready.done():
            self._setup_failed(f"{self.run.where}: {why} during the {self.stage}")
            return
        self._end("closed_by_server", why)

    # --- sending -----------------------------------------------------------------------

    def _send_frame(self, opcode: int, payload: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(encode_frame(opcode, payload, mask=_randbytes(4)))

    def send_message(self, start_ns: int | None = None) -> None:
        """Send one round trip's message; ``start_ns`` is its intended time (open loop)."""
        transport = self.transport
        if not self.alive or transport is None or transport.is_closing():
            return
        ack_id = None
        if self.run.message.ack:
            ack_id = self.next_ack_id
            self.next_ack_id += 1
        frames = self.run.message.frames_for(ack_id)
        data = b"".join(encode_frame(op, p, mask=_randbytes(4)) for op, p in frames)
        self.pending.append((time.perf_counter_ns() if start_ns is None else start_ns, ack_id))
        transport.write(data)

    def start_close(self) -> None:
        """Begin the close handshake (Socket.IO leaves its namespace first)."""
        if self.transport is None or self.transport.is_closing() or self.closing:
            return
        self.alive = False
        if self.config.mode == "socketio":
            if self.run.message.msgpack:
                self._send_frame(OP_BINARY, socketio.encode_msgpack(socketio.DISCONNECT))
            else:
                self._send_frame(OP_TEXT, socketio.encode_disconnect().encode())
        self._send_frame(OP_CLOSE, close_payload(1000))
        self.closing = True

    # --- state -------------------------------------------------------------------------

    def _set_ready(self) -> None:
        self.stage = "run"
        self.alive = True
        if not self.ready.done():
            self.ready.set_result(None)

    def _setup_failed(self, message: str) -> None:
        if not self.ready.done():
            self.ready.set_exception(LoadError(message))
        self._abort(graceful=False)

    def _protocol_error(self, exc: ProtocolError) -> None:
        if not self.ready.done():
            self._setup_failed(
                f"{self.run.where} broke the protocol before the load started: {exc}"
            )
            return
        if self.closing:  # after the window: nothing left to measure on this connection
            self._abort(graceful=False)
            return
        self._end("protocol_error", str(exc))
        self.closing = True
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(encode_frame(OP_CLOSE, close_payload(1002), mask=_randbytes(4)))
        self._abort(graceful=True)

    def _end(self, kind: str, why: str) -> None:
        if self.ended:
            return
        self.ended = True
        self.alive = False
        self.run.connection_ended(kind, why)

    def _abort(self, *, graceful: bool) -> None:
        if self.transport is None:
            return
        if graceful:
            self.transport.close()
        else:
            self.transport.abort()


class _Run:
    """The state of one load run shared by its connections."""

    def __init__(self, config: LoadConfig, loop: asyncio.AbstractEventLoop) -> None:
        self.config = config
        self.loop = loop
        self.where = f"{config.host}:{config.port}"
        self.message = _Message(config)
        self.seen: dict[str, int] = {}  # what arrived besides replies (base.unanswered)
        self.connections: list[_Connection] = []
        self.histogram = PyHistogram()
        self.errors: dict[str, int] = {}
        self.first_error: dict[str, str] = {}  # the first text of each error kind
        self.recording = False
        self.sending = False
        self.messages = 0
        self.done: asyncio.Future[None] = loop.create_future()
        self.lost = 0  # connections lost (closed, broken) before the close handshake
        self.lost_all = False  # every connection was lost before the window ended

    def count(self, kind: str, why: str) -> None:
        self.errors[kind] = self.errors.get(kind, 0) + 1
        self.first_error.setdefault(kind, why)

    def unexpected(self, kind: str, what: str, why: str) -> None:
        """Something that answers no request: an error of ``kind``, remembered as ``what``."""
        self.count(kind, why)
        self.seen[what] = self.seen.get(what, 0) + 1

    def detail(self) -> str:
        return "; ".join(f"{kind}: {why}" for kind, why in self.first_error.items())

    def completed(self, conn: _Connection, start_ns: int, ok: bool) -> None:
        """One round trip came back on ``conn``: a message if its reply passed the check."""
        if not ok:
            self.count("echo_mismatch", "a reply fails the reply check")
        elif self.recording:
            now = time.perf_counter_ns()
            self.histogram.record(max(0, now - start_ns))
            self.messages += 1
            limit = self.config.max_messages
            if limit is not None and self.messages >= limit:
                self.finish()
        if self.sending and self.config.rate is None:
            conn.send_message()

    def connection_ended(self, kind: str, why: str) -> None:
        self.count(kind, why)
        self.lost += 1
        if self.sending and self.lost >= len(self.connections):
            self.lost_all = True
            self.finish()

    def finish(self) -> None:
        """End the window: nothing more is sent or counted as a message."""
        self.sending = False
        self.recording = False
        if not self.done.done():
            self.done.set_result(None)

    async def connect_all(self) -> None:
        limit = asyncio.Semaphore(CONNECT_CONCURRENCY)

        async def one() -> None:
            async with limit:
                await self._connect_one()

        tasks = [asyncio.ensure_future(one()) for _ in range(self.config.connections)]
        try:
            await asyncio.gather(*tasks)
        except BaseException:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise
        if self.lost:
            raise LoadError(
                f"a connection to {self.where} was lost before the load started ({self.detail()})"
            )

    async def _connect_one(self) -> None:
        config = self.config
        conn = _Connection(self)
        self.connections.append(conn)
        try:
            await asyncio.wait_for(
                self.loop.create_connection(lambda: conn, config.host, config.port),
                config.connect_timeout,
            )
        except TimeoutError:
            raise LoadError(
                f"cannot connect to {self.where}: no answer within {config.connect_timeout:g} s"
            ) from None
        except OSError as exc:
            why = os.strerror(exc.errno) if exc.errno else str(exc)
            raise LoadError(f"cannot connect to {self.where}: {why}") from None
        try:
            await asyncio.wait_for(asyncio.shield(conn.ready), config.connect_timeout)
        except TimeoutError:
            conn._abort(graceful=False)
            raise LoadError(
                f"a connection to {self.where} was not ready after {config.connect_timeout:g} s "
                f"(no answer to the {conn.stage})"
            ) from None

    def start_sending(self) -> list[asyncio.Task[None]]:
        self.sending = True
        if self.config.rate is None:
            for conn in self.connections:
                for _ in range(self.config.in_flight):
                    conn.send_message()
            return []
        rate = self.config.rate
        n = len(self.connections)
        interval_ns = round(n * 1e9 / rate)
        base = time.perf_counter_ns()
        return [
            asyncio.ensure_future(self._schedule(conn, base + round(i * 1e9 / rate), interval_ns))
            for i, conn in enumerate(self.connections)
        ]

    async def _schedule(self, conn: _Connection, first_ns: int, interval_ns: int) -> None:
        """Open loop: send at first_ns + k·interval, catching up (never skipping) when late."""
        k = 0
        while self.sending and conn.alive:
            now = time.perf_counter_ns()
            due = first_ns + k * interval_ns
            if due > now:
                await asyncio.sleep((due - now) / 1e9)
                continue
            while due <= now and self.sending and conn.alive:
                conn.send_message(due)
                k += 1
                due = first_ns + k * interval_ns
            await asyncio.sleep(0)

    async def close_all(self) -> None:
        for conn in self.connections:
            conn.start_close()
        waits = [conn.closed for conn in self.connections if not conn.closed.done()]
        if waits:
            await asyncio.wait(waits, timeout=CLOSE_WAIT_S)
        for conn in self.connections:
            if not conn.closed.done():
                conn._abort(graceful=False)

    def abort_all(self) -> None:
        for conn in self.connections:
            conn._abort(graceful=False)


async def _run(config: LoadConfig) -> LoadResult:
    loop = asyncio.get_running_loop()
    ensure_fd_limit(config.connections)
    run = _Run(config, loop)
    try:
        await run.connect_all()
    except BaseException:
        run.abort_all()
        raise
    senders = run.start_sending()
    try:
        if config.warmup > 0:
            await asyncio.wait([run.done], timeout=config.warmup)
        config.window_mark("start")
        run.recording = True
        cpu0 = time.thread_time()  # the loop runs in this thread, and only the loop
        t0 = time.perf_counter()
        if not run.done.done():
            await asyncio.wait([run.done], timeout=config.duration)
        elapsed = time.perf_counter() - t0
        cpu = time.thread_time() - cpu0
        config.window_mark("end")
        run.finish()
    finally:
        for task in senders:
            task.cancel()
        await asyncio.gather(*senders, return_exceptions=True)
        await run.close_all()
    if run.lost_all:
        when = f"after {run.messages} messages" if run.messages else "before any message"
        raise LoadError(f"every connection to {run.where} was lost {when} ({run.detail()})")
    if run.messages == 0:
        raise unanswered(config, run.where, run.errors, run.seen)
    return LoadResult(
        client="reference",
        messages=run.messages,
        elapsed_s=elapsed,
        client_cpu_s=cpu,
        histogram=run.histogram.to_dict(),
        errors=run.errors,
        workers=1,
        worker_busy_max=cpu / elapsed if elapsed > 0 else 0.0,
    )


def run(config: LoadConfig, *, use_uvloop: bool = False) -> LoadResult:
    """Drive ``config.url`` and return the measured window."""
    factory: Callable[[], Any] | None = None
    if use_uvloop:
        import uvloop

        factory = uvloop.new_event_loop
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(_run(config))
