"""The green-thread stacks: python-socketio ``Server`` on eventlet and on gevent.

Each function monkey-patches first, then imports python-socketio, the way a
Flask-SocketIO deployment does. The patching lives inside the functions so
that importing this module patches nothing.
"""

from __future__ import annotations

import socket
import sys
from collections.abc import Callable, Mapping

from wsprof.servers.socketio_config import socketio_server_kwargs

Ready = Callable[[socket.socket], None]
Listen = Callable[[], socket.socket]

#: eventlet.wsgi's default of 1024 concurrent connections would cap load tests.
MAX_GREEN_CONNECTIONS = 100_000


def run_socketio_eventlet(options: Mapping[str, str], listen: Listen, ready: Ready) -> None:
    """Stack ``socketio-eventlet``: ``socketio.Server(async_mode="eventlet")`` on eventlet.wsgi."""
    import eventlet

    eventlet.monkey_patch()

    import eventlet.wsgi
    import socketio

    from wsprof.servers.handlers import register_sync

    sio = socketio.Server(async_mode="eventlet", **socketio_server_kwargs(options))
    register_sync(sio, options["handler"])
    app = socketio.WSGIApp(sio)
    sock = listen()  # socket is patched now, so this is a green socket
    ready(sock)
    eventlet.wsgi.server(sock, app, log_output=False, max_size=MAX_GREEN_CONNECTIONS)


def run_socketio_gevent(options: Mapping[str, str], listen: Listen, ready: Ready) -> None:
    """Stack ``socketio-gevent``: ``socketio.Server(async_mode="gevent")`` on gevent pywsgi.

    python-engineio 4.15 serves gevent WebSockets through simple-websocket
    (which finds the raw socket in pywsgi's environ) unless gevent-websocket
    is installed, in which case it expects gevent-websocket's own handler.
    wsprof uses simple-websocket and refuses to run if gevent-websocket is
    present, so that this stack means the same thing everywhere.

    Known behaviour of this combination (measured, not a wsprof bug): after
    the WebSocket closing handshake the server does not close the TCP
    connection (simple-websocket works on a dup of the socket, and pywsgi
    then waits on the original for a next keep-alive request), so a client
    that waits for the server's FIN, as RFC 6455 asks, waits its full close
    timeout. Message handling is unaffected.
    """
    from gevent import monkey

    monkey.patch_all()

    from engineio.async_drivers import gevent as engineio_gevent
    from gevent.pywsgi import WSGIServer

    if getattr(engineio_gevent, "SimpleWebSocketWSGI", None) is None:
        raise RuntimeError(
            "gevent-websocket is installed, so python-engineio would require its handler; "
            "wsprof's socketio-gevent stack runs on simple-websocket: uninstall gevent-websocket"
        )

    import socketio

    from wsprof.servers.handlers import register_sync

    sio = socketio.Server(async_mode="gevent", **socketio_server_kwargs(options))
    register_sync(sio, options["handler"])
    app = socketio.WSGIApp(sio)
    sock = listen()
    server = WSGIServer(sock, app, log=None, error_log=sys.stderr)
    ready(sock)
    server.serve_forever()
