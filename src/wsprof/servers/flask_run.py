"""Serve a Flask-SocketIO app as its docs deploy it: ``socketio.run(app, host, port)``.

``python -m wsprof.servers.flask_run module:attr --host H --port P``. The
attribute may be the ``SocketIO`` object or the Flask app (its SocketIO is
then ``app.extensions['socketio']``). The app module is imported first and
untouched: an eventlet/gevent app monkey-patches itself, as it does in production.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Any


def _resolve(target: str) -> tuple[Any, Any]:
    """(socketio, flask_app) for ``module:attr``; SystemExit with one line if neither."""
    module_name, _, attr = target.partition(":")
    module = importlib.import_module(module_name)
    obj: Any = module
    for part in attr.split("."):
        obj = getattr(obj, part)
    from flask import Flask
    from flask_socketio import SocketIO

    if isinstance(obj, Flask):
        socketio = obj.extensions.get("socketio")
        if socketio is None:
            raise SystemExit(f"wsprof-flask-run: {target} is a Flask app with no SocketIO")
        return socketio, obj
    if isinstance(obj, SocketIO):
        for value in vars(module).values():
            if isinstance(value, Flask) and value.extensions.get("socketio") is obj:
                return obj, value
        raise SystemExit(f"wsprof-flask-run: no Flask app in {module_name} uses {target}")
    raise SystemExit(f"wsprof-flask-run: {target} is neither a SocketIO nor a Flask app")


def main(argv: list[str] | None = None) -> int:
    """Import the app, then serve it until terminated."""
    parser = argparse.ArgumentParser(prog="python -m wsprof.servers.flask_run")
    parser.add_argument("app", help="module:attribute (a SocketIO object or a Flask app)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    sys.path.insert(0, ".")
    socketio, app = _resolve(args.app)
    socketio.run(app, host=args.host, port=args.port)
    return 0


if __name__ == "__main__":
    sys.exit(main())
