"""A FastAPI WebSocket route on uvicorn: the seed article's FastAPI server, made a true echo.

The article's handler answers ``"Echo: " + data``; this route sends the
message back unchanged (text as text, bytes as bytes) so that the load
clients' byte-for-byte check holds and the figures compare with the other
echo stacks. ``app`` is a module-level ASGI app, as FastAPI's docs write it,
so ``uvicorn wsprof.servers.apps.fastapi_echo:app`` serves the same thing.
"""

from __future__ import annotations

from collections.abc import Mapping

from fastapi import FastAPI, WebSocket

from wsprof.servers.apps.serving import run_uvicorn_workers
from wsprof.servers.asgi_apps import Listen, Ready, run_uvicorn

app = FastAPI()


@app.websocket("/ws")
async def echo(websocket: WebSocket) -> None:
    """Accept, then send every message back as it came until the client leaves."""
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


broadcast_app = FastAPI()
#: handler=broadcast: the open connections of this process (one room).
members: set[WebSocket] = set()


@broadcast_app.websocket("/ws")
async def broadcast(websocket: WebSocket) -> None:
    """Accept, then send every message to every open connection (the sender too)."""
    await websocket.accept()
    members.add(websocket)
    try:
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                return
            for member in list(members):
                try:
                    if message.get("text") is not None:
                        await member.send_text(message["text"])
                    else:
                        await member.send_bytes(message["bytes"])
                except Exception:
                    # a member that left mid-broadcast misses it, as in production
                    members.discard(member)
    finally:
        members.discard(websocket)


def run(options: Mapping[str, str], listen: Listen, ready: Ready) -> None:
    """Stack ``fastapi``: ``app`` on uvicorn, as ``uvicorn module:app [--workers N]`` serves it."""
    workers = int(options["workers"])
    if options["handler"] == "broadcast":
        if workers != 1:
            raise RuntimeError(
                "handler=broadcast needs workers=1: each uvicorn worker would be its own room"
            )
        run_uvicorn(broadcast_app, options, listen, ready)
    elif workers == 1:
        run_uvicorn(app, options, listen, ready)
    else:
        run_uvicorn_workers(f"{__name__}:app", options, workers, listen, ready)
