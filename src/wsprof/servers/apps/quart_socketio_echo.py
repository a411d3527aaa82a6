"""Quart with python-socketio's ASGI app, on uvicorn or hypercorn.

python-socketio's docs mount a Quart app behind ``socketio.ASGIApp(sio,
other_asgi_app=quart_app)``: Socket.IO traffic goes to python-socketio, the
rest to Quart. The Socket.IO handlers are the bundled ones
(``wsprof.servers.handlers``), so the application code equals the
``socketio-asgi`` stand-in's and the difference is Quart's ASGI wrapping
and the server.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from wsprof.servers.apps.serving import run_hypercorn
from wsprof.servers.asgi_apps import Listen, Ready, run_uvicorn
from wsprof.servers.handlers import register_async
from wsprof.servers.socketio_config import socketio_server_kwargs


def create_app(options: Mapping[str, str]) -> Any:
    """The ASGI app: python-socketio in front of a Quart app with one HTTP route."""
    import socketio
    from quart import Quart

    quart_app = Quart(__name__)

    @quart_app.route("/")
    async def index() -> str:
        return "wsprof quart-socketio: Socket.IO at /socket.io/\n"

    sio = socketio.AsyncServer(async_mode="asgi", **socketio_server_kwargs(options))
    register_async(sio, options["handler"])
    return socketio.ASGIApp(sio, other_asgi_app=quart_app)


def run(options: Mapping[str, str], listen: Listen, ready: Ready) -> None:
    """Stack ``quart-socketio``: on uvicorn, or on hypercorn with ``server=hypercorn``."""
    app = create_app(options)
    if options["server"] == "hypercorn":
        run_hypercorn(app, options, listen, ready)
    else:
        run_uvicorn(app, options, listen, ready)
