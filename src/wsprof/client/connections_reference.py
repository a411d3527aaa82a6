"""The idle and connect workloads in pure-Python asyncio: the readable twin of _connections.pyx.

Same steps, same counts, same error kinds (wsprof._connections.ERROR_KINDS): each
connection is an ``asyncio.Protocol`` over wsprof.protocol; an idle one answers
Engine.IO pings as they arrive; a connect is timed from the TCP connect to the
namespace connect's reply and then closed by a Close the server completes (the
server closes TCP first, so TIME_WAIT never pins a client port; a server that has
not closed within CLOSE_WAIT_S gets a reset, counted as close_timeout).
"""

from __future__ import annotations

import asyncio
import os
import socket
import struct
import time
from typing import cast

from wsprof.client.base import LoadError
from wsprof.client.connections_base import (
    CLOSE_TIMEOUT_S,
    OPEN_TIMEOUT_S,
    ConnectConfig,
    ConnectResult,
    IdleConfig,
    IdleResult,
    client_bound,
    endpoint,
    idle_close_timeout,
    limit_error,
    nothing_opened,
)
from wsprof.client.histogram import PyHistogram
from wsprof.protocol.engineio import parse_open
from wsprof.protocol.socketio import check_connect_reply, session_bytes
from wsprof.protocol.websocket import (
    MAX_MESSAGE_SIZE,
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

CLOSE_WAIT_S = 1.0
LATE_S = 1.0
TICK_S = 0.05  # the loop's heartbeat: a ping's lateness is bounded by the time since a tick


class _Run:
    """What every connection of one run shares: where, the bytes, the counts."""

    def __init__(self, url: str, mode: str, serializer: str) -> None:
        self.url = url
        self.host, self.port, self.path = endpoint(url, mode)
        self.socketio = mode == "socketio"
        self.msgpack = serializer == "msgpack"
        self.session = session_bytes(self.msgpack)
        self.mask = os.urandom(4)
        self.goodbye = encode_frame(OP_CLOSE, close_payload(1000), mask=self.mask)
        if self.socketio:
            self.goodbye = encode_frame(*self.session.disconnect, mask=self.mask) + self.goodbye
        self.errors: dict[str, int] = {}
        self.first: dict[str, str] = {}
        self.measuring = False
        self.sockets = 0  # open now (in set-up, open or closing)
        self.connecting = 0  # create_connection calls in progress (their sockets exist)
        self.at_limit: int | None = None  # sockets open when the OS first refused one
        self.heartbeats = 0
        self.late = 0
        self.last_tick = time.perf_counter()

    def count(self, kind: str, why: str) -> None:
        self.errors[kind] = self.errors.get(kind, 0) + 1
        self.first.setdefault(kind, why)

    def frame(self, opcode: int, payload: bytes) -> bytes:
        return encode_frame(opcode, payload, mask=self.mask)

    async def ticker(self) -> None:
        while True:
            self.last_tick = time.perf_counter()
            await asyncio.sleep(TICK_S)


class _Conn(asyncio.Protocol):
    """One connection: set-up, then pings answered, then a close the server completes."""

    def __init__(self, run: _Run) -> None:
        self.run = run
        loop = asyncio.get_running_loop()
        self.opened: asyncio.Future[None] = loop.create_future()
        self.closed: asyncio.Future[None] = loop.create_future()
        self.opened.add_done_callback(lambda f: f.cancelled() or f.exception())
        self.key = new_key()
        self.stage = "connect"  # connect, upgrade, eio_open, sio_connect, open, closing, gone
        self.head = bytearray()
        self.parser = FrameParser(MAX_MESSAGE_SIZE)
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self.run.sockets += 1
        self.stage = "upgrade"
        self.transport.write(
            build_handshake_request(self.run.host, self.run.port, self.run.path, self.key)
        )

    def data_received(self, data: bytes) -> None:
        if self.stage == "upgrade":
            self.head += data
            try:
                used = parse_handshake_response(bytes(self.head), self.key)
            except HandshakeError as exc:
                self.fail("handshake_failed", f"{self.run.url}: {exc}")
                return
            if used is None:
                return
            data = bytes(self.head[used:])
            self.stage = "eio_open" if self.run.socketio else "open"
            if self.stage == "open":
                self.opened.set_result(None)
        try:
            for opcode, payload in self.parser.feed(data):
                if self.stage == "gone":
                    return
                self.on_frame(opcode, payload)
        except ProtocolError as exc:
            self.fail("protocol_error", f"protocol error: {exc}")

    def on_frame(self, opcode: int, payload: bytes) -> None:
        run = self.run
        if opcode == OP_PING:
            self.send(run.frame(OP_PONG, payload))
        elif opcode == OP_PONG:
            pass
        elif opcode == OP_CLOSE:
            if self.stage != "closing":
                self.fail("closed_by_server", "the server sent a Close frame")
        elif self.stage in ("eio_open", "sio_connect"):
            self.setup_message(opcode, payload)
        elif self.stage != "open":
            pass
        elif run.socketio and opcode == OP_TEXT and payload == run.session.ping:
            if run.measuring:
                run.heartbeats += 1
                run.late += time.perf_counter() - run.last_tick > LATE_S + TICK_S
            self.send(run.frame(OP_TEXT, run.session.pong))
        elif run.socketio and opcode == OP_TEXT and payload.startswith(run.session.ended):
            self.fail("closed_by_server", "the server closed the Socket.IO session")
        else:
            run.count("unexpected_message", "a message on an idle connection")

    def setup_message(self, opcode: int, payload: bytes) -> None:
        run = self.run
        if opcode == OP_TEXT and payload == run.session.ping:
            self.send(run.frame(OP_TEXT, run.session.pong))
            return
        message = payload.decode() if opcode == OP_TEXT else payload
        try:
            if self.stage == "eio_open":
                if opcode != OP_TEXT:
                    raise ProtocolError("expected the Engine.IO open packet, got a binary message")
                parse_open(cast(str, message))
                self.stage = "sio_connect"
                self.send(run.frame(*run.session.connect))
                return
            check_connect_reply(message, msgpack=run.msgpack)
        except (ProtocolError, UnicodeDecodeError) as exc:
            self.fail("handshake_failed", str(exc))
            return
        self.stage = "open"
        self.opened.set_result(None)

    def send(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def start_close(self) -> None:
        if self.stage == "open":
            self.send(self.run.goodbye)
            self.stage = "closing"

    def fail(self, kind: str, why: str) -> None:
        if self.stage == "gone":
            return
        self.run.count(kind, why)
        if not self.opened.done():
            self.opened.set_exception(LoadError(why))
        self.reset()

    def reset(self) -> None:
        """Close with a reset (SO_LINGER 0), as the fast client does."""
        self.stage = "gone"
        if self.transport is not None:
            sock = self.transport.get_extra_info("socket")
            if sock is not None:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.transport.abort()
        if not self.closed.done():
            self.closed.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        self.run.sockets -= 1
        if self.stage == "closing":
            self.stage = "gone"
        elif self.stage != "gone":
            kind, why = (
                ("closed_by_server", "the server closed the connection")
                if exc is None
                else ("connection_reset", str(exc))
            )
            self.fail(kind, why)
        if not self.closed.done():
            self.closed.set_result(None)


async def _open(run: _Run) -> _Conn:
    """One connection through its whole set-up; LoadError when it failed (counted),
    OSError when the OS refused it at a limit."""
    conn = _Conn(run)
    loop = asyncio.get_running_loop()
    run.connecting += 1
    try:
        try:
            await asyncio.wait_for(
                loop.create_connection(lambda: conn, run.host, run.port), OPEN_TIMEOUT_S
            )
        finally:
            run.connecting -= 1
        await asyncio.wait_for(asyncio.shield(conn.opened), OPEN_TIMEOUT_S)
    except TimeoutError:
        conn.fail("timeout", f"not open after {OPEN_TIMEOUT_S:g} s")
        raise LoadError("timeout") from None
    except OSError as exc:
        if limit_error(exc, 0) is not None:
            if run.at_limit is None:
                run.at_limit = run.sockets + run.connecting  # this one has no socket
            raise
        why = os.strerror(exc.errno) if exc.errno else str(exc)
        run.count("connect_failed", f"cannot connect to {run.host}:{run.port}: {why}")
        raise LoadError(why) from None
    return conn


async def _close(conns: list[_Conn], timeout: float) -> None:
    for conn in conns:
        conn.start_close()
    waits = [conn.closed for conn in conns if not conn.closed.done()]
    if waits:
        await asyncio.wait(waits, timeout=timeout)
    for conn in conns:
        if not conn.closed.done():
            if conn.stage == "closing":
                conn.run.count("close_timeout", "the server did not close in time")
            conn.reset()


async def _idle(config: IdleConfig) -> IdleResult:
    run = _Run(config.url, config.mode, config.serializer)
    ticker = asyncio.ensure_future(run.ticker())
    limit = asyncio.Semaphore(config.open_concurrency)
    conns: list[_Conn] = []

    async def one() -> None:
        async with limit:
            conns.append(await _open(run))

    t0 = time.perf_counter()
    tasks = [asyncio.ensure_future(one()) for _ in range(config.connections)]
    outcomes = await asyncio.gather(*tasks, return_exceptions=True)
    try:
        for outcome in outcomes:
            if isinstance(outcome, OSError):
                raise limit_error(outcome, run.at_limit or 0) or outcome
            if isinstance(outcome, BaseException) and not isinstance(outcome, LoadError):
                raise outcome
        open_s = time.perf_counter() - t0
        if not any(conn.stage == "open" for conn in conns):
            raise nothing_opened(
                config.url,
                f"none of {config.connections:,} connections stayed open",
                run.errors,
                run.first,
            )
        if config.on_window is not None:
            config.on_window("start")
        run.measuring = True
        cpu0 = time.thread_time()
        t_start = time.perf_counter()
        await asyncio.sleep(config.duration)
        elapsed = time.perf_counter() - t_start
        cpu = time.thread_time() - cpu0
        run.measuring = False
        held = sum(conn.stage == "open" for conn in conns)
        errors = dict(run.errors)  # the close is not measured
        if config.on_window is not None:
            config.on_window("end")
    finally:
        ticker.cancel()
        await _close(conns, idle_close_timeout(config.connections))
    return IdleResult(
        connections=held,
        failed=config.connections - held,
        heartbeats=run.heartbeats,
        heartbeats_late=run.late,
        open_s=open_s,
        elapsed_s=elapsed,
        client_cpu_s=cpu,
        errors=errors,
    )


async def _connect(config: ConnectConfig) -> ConnectResult:
    run = _Run(config.url, config.mode, config.serializer)
    hist = PyHistogram()
    closing: set[asyncio.Task[None]] = set()
    state = {"connects": 0, "running": True}

    async def close_one(conn: _Conn) -> None:
        await _close([conn], CLOSE_WAIT_S)

    async def worker() -> None:
        while state["running"]:
            start = time.perf_counter_ns()
            try:
                conn = await _open(run)
            except LoadError:
                continue
            if run.measuring and state["running"]:
                hist.record(time.perf_counter_ns() - start)
                state["connects"] += 1
            task = asyncio.ensure_future(close_one(conn))
            closing.add(task)
            task.add_done_callback(closing.discard)

    workers = [asyncio.ensure_future(worker()) for _ in range(config.concurrency)]
    try:
        await asyncio.wait(workers, timeout=config.warmup)
        if config.on_window is not None:
            config.on_window("start")
        run.measuring = True
        cpu0 = time.thread_time()
        t_start = time.perf_counter()
        done, _ = await asyncio.wait(workers, timeout=config.duration)
        elapsed = time.perf_counter() - t_start
        cpu = time.thread_time() - cpu0
        run.measuring = False
        state["running"] = False
        if config.on_window is not None:
            config.on_window("end")
        for task in done:
            exc = task.exception()
            if isinstance(exc, OSError):
                raise limit_error(exc, run.at_limit or 0) or exc
            if exc is not None:
                raise exc
        await asyncio.wait(workers, timeout=OPEN_TIMEOUT_S)
    finally:
        state["running"] = False
        for task in workers:
            task.cancel()
        await asyncio.gather(*workers, return_exceptions=True)
        if closing:
            await asyncio.wait(list(closing), timeout=CLOSE_TIMEOUT_S)
    if state["connects"] == 0:
        raise nothing_opened(config.url, "no connect completed", run.errors, run.first)
    return ConnectResult(
        connects=state["connects"],
        elapsed_s=elapsed,
        client_cpu_s=cpu,
        client_bound=client_bound(cpu, elapsed),
        errors=run.errors,
        histogram=hist.to_dict(),
    )


def run_idle(config: IdleConfig) -> IdleResult:
    return asyncio.run(_idle(config))


def run_connect(config: ConnectConfig) -> ConnectResult:
    return asyncio.run(_connect(config))
