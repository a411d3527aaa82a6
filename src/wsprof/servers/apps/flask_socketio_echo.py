"""Flask + Flask-SocketIO, served as Flask-SocketIO's docs serve it: ``socketio.run(app)``.

The handlers are the Flask-SocketIO form of the bundled ones: event ``echo``
is answered with ``echo`` and the same arguments (python-socketio writes
compact JSON, so the reply is byte-identical to the request, as on the
stand-in socketio stacks), and event ``ack`` returns its arguments as the
acknowledgement.

``socketio.run`` (Flask-SocketIO 5.x) binds the address itself and then
calls ``eventlet.wsgi.server(sock, app, log_output=False)`` on eventlet, or
``pywsgi.WSGIServer(sock, app, log=None).serve_forever()`` on gevent. We make
exactly those calls on the socket wsprof bound, because ``socketio.run``
cannot take a pre-bound socket and would leave the chosen port unknown. The
other deployment the docs describe, gunicorn with the eventlet or gevent
worker, is how a user's app is launched (wsprof's generic app launcher).

Both functions monkey-patch first, as the docs require, then import Flask.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Mapping
from typing import Any

from wsprof.servers.socketio_config import socketio_server_kwargs

Ready = Callable[[socket.socket], None]
Listen = Callable[[], socket.socket]


def create_app(async_mode: str, options: Mapping[str, str]) -> tuple[Any, Any]:
    """The Flask app and its ``SocketIO`` with the echo and ack handlers (after patching)."""
    from flask import Flask
    from flask_socketio import SocketIO, emit, join_room

    from wsprof.servers.handlers import BROADCAST_ROOM

    app = Flask(__name__)
    socketio = SocketIO(app, async_mode=async_mode, **socketio_server_kwargs(options))

    @socketio.on("echo")
    def echo(*args: Any) -> None:
        # Flask-SocketIO sends several arguments as one tuple, one as itself.
        emit("echo", args[0] if len(args) == 1 else args)

    @socketio.on("ack")
    def ack(*args: Any) -> tuple[Any, ...]:
        return args  # a returned tuple is the acknowledgement's argument list

    if options["handler"] == "broadcast":

        @socketio.on("connect")
        def connect(auth: Any = None) -> None:
            join_room(BROADCAST_ROOM)

        @socketio.on("broadcast")
        def broadcast(data: Any) -> None:
            emit("broadcast", data, to=BROADCAST_ROOM)

    return app, socketio


def run_eventlet(options: Mapping[str, str], listen: Listen, ready: Ready) -> None:
    """Stack ``flask-socketio-eventlet``: what ``socketio.run(app)`` runs on eventlet."""
    import eventlet

    eventlet.monkey_patch()

    import eventlet.wsgi

    app, _ = create_app("eventlet", options)
    sock = listen()  # a green socket: ``socket`` is patched now
    ready(sock)
    eventlet.wsgi.server(sock, app, log_output=False)


def run_gevent(options: Mapping[str, str], listen: Listen, ready: Ready) -> None:
    """Stack ``flask-socketio-gevent``: what ``socketio.run(app)`` runs on gevent.

    WebSockets come from simple-websocket (gevent-websocket is not installed),
    as on the ``socketio-gevent`` stand-in.
    """
    from gevent import monkey

    monkey.patch_all()

    from gevent import pywsgi

    app, _ = create_app("gevent", options)
    sock = listen()
    server = pywsgi.WSGIServer(sock, app, log=None)
    ready(sock)
    server.serve_forever()
