"""The asyncio stacks: uvicorn + Starlette, uvicorn + python-socketio ASGI, websockets.

Each ``run_*`` function builds its app, then calls ``ready(sock)`` on an
already-listening socket and serves on it until SIGTERM. Heavy imports stay
inside the functions so that ``serve`` only loads what the chosen stack needs.
"""

from __future__ import annotations

import asyncio
import signal
import socket
from collections.abc import Callable, Mapping
from typing import Any

from wsprof.protocol.websocket import MAX_MESSAGE_SIZE
from wsprof.servers.socketio_config import socketio_server_kwargs

#: How long uvicorn / websockets wait for open connections to close on SIGTERM.
GRACEFUL_SHUTDOWN_SECONDS = 2.0

Ready = Callable[[socket.socket], None]
Listen = Callable[[], socket.socket]


def starlette_echo_app() -> Any:
    """A Starlette app with one WebSocket route, ``/ws``, echoing every message unchanged."""
    from starlette.applications import Starlette
    from starlette.routing import WebSocketRoute
    from starlette.websockets import WebSocket

    async def echo(websocket: WebSocket) -> None:
        await websocket.accept()
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                return
            text = message.get("text")
            if text is not None:
                await websocket.send_text(text)
            else:
                await websocket.send_bytes(message["bytes"])

    return Starlette(routes=[WebSocketRoute("/ws", echo)])


def starlette_broadcast_app() -> Any:
    """The ``handler = "broadcast"`` route: every message goes to every open connection."""
    from starlette.applications import Starlette
    from starlette.routing import WebSocketRoute
    from starlette.websockets import WebSocket

    members: set[WebSocket] = set()

    async def broadcast(websocket: WebSocket) -> None:
        await websocket.accept()
        members.add(websocket)
        try:
            while True:
                message = await websocket.receive()
                if message["type"] == "websocket.disconnect":
                    return
                text = message.get("text")
                for member in list(members):
                    try:
                        if text is not None:
                            await member.send_text(text)
                        else:
                            await member.send_bytes(message["bytes"])
                    except Exception:
                        # a member that left mid-broadcast misses it, as in production
                        members.discard(member)
        finally:
            members.discard(websocket)

    return Starlette(routes=[WebSocketRoute("/ws", broadcast)])


def socketio_asgi_app(options: Mapping[str, str]) -> Any:
    """python-socketio ``AsyncServer(async_mode="asgi")`` wrapped in ``socketio.ASGIApp``."""
    import socketio

    from wsprof.servers.handlers import register_async

    sio = socketio.AsyncServer(async_mode="asgi", **socketio_server_kwargs(options))
    register_async(sio, options["handler"])
    return socketio.ASGIApp(sio)


def run_uvicorn(app: Any, options: Mapping[str, str], listen: Listen, ready: Ready) -> None:
    """Serve ``app`` with uvicorn on our own listening socket (so port 0 never races)."""
    import uvicorn

    config = uvicorn.Config(
        app,
        loop=options["loop"],
        ws=options["ws"],
        ws_max_size=MAX_MESSAGE_SIZE,
        lifespan="off",
        log_config=None,
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=int(GRACEFUL_SHUTDOWN_SECONDS),
    )
    server = uvicorn.Server(config)
    sock = listen()
    ready(sock)
    server.run(sockets=[sock])


def run_starlette_raw(options: Mapping[str, str], listen: Listen, ready: Ready) -> None:
    """Stack ``starlette-raw``."""
    app = starlette_broadcast_app() if options["handler"] == "broadcast" else starlette_echo_app()
    run_uvicorn(app, options, listen, ready)


def run_socketio_asgi(options: Mapping[str, str], listen: Listen, ready: Ready) -> None:
    """Stack ``socketio-asgi``."""
    run_uvicorn(socketio_asgi_app(options), options, listen, ready)


def _loop_factory(loop: str) -> Callable[[], asyncio.AbstractEventLoop]:
    if loop == "uvloop":
        import uvloop

        return uvloop.new_event_loop
    return asyncio.new_event_loop


def run_websockets_raw(options: Mapping[str, str], listen: Listen, ready: Ready) -> None:
    """Stack ``websockets-raw``: the websockets library's own asyncio server at ``/ws``."""
    from websockets.asyncio.server import ServerConnection, broadcast, serve
    from websockets.http11 import Request, Response

    members: set[ServerConnection] = set()

    async def echo(connection: ServerConnection) -> None:
        async for message in connection:
            await connection.send(message)

    async def fan_out(connection: ServerConnection) -> None:
        # handler = "broadcast": websockets' own broadcast() to every open connection
        members.add(connection)
        try:
            async for message in connection:
                broadcast(members, message)
        finally:
            members.discard(connection)

    def only_ws_path(connection: ServerConnection, request: Request) -> Response | None:
        if request.path.partition("?")[0] != "/ws":
            return connection.respond(404, "wsprof echo lives at /ws\n")
        return None

    async def main() -> None:
        stop = asyncio.get_running_loop().create_future()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set_result, None)
        sock = listen()
        async with serve(
            fan_out if options["handler"] == "broadcast" else echo,
            sock=sock,
            max_size=MAX_MESSAGE_SIZE,
            process_request=only_ws_path,
            close_timeout=GRACEFUL_SHUTDOWN_SECONDS,
        ):
            ready(sock)
            await stop

    with asyncio.Runner(loop_factory=_loop_factory(options["loop"])) as runner:
        runner.run(main())
