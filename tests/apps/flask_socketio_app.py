"""The Flask-SocketIO server of the Flask-vs-FastAPI article, on eventlet: it answers
event ``message`` with event ``response``, acks event ``ask``, and (to compare the
reply contracts on one server) echoes event ``echo``.

Run: ``python tests/apps/flask_socketio_app.py PORT``, then
``wsprof load ws://127.0.0.1:PORT/ --mode socketio --event message --reply-event response``
or ``... --mode socketio --event ask --ack``.
"""

from __future__ import annotations

import eventlet

eventlet.monkey_patch()

import sys  # noqa: E402
from typing import Any  # noqa: E402

from flask import Flask  # noqa: E402
from flask_socketio import SocketIO, emit  # noqa: E402

app = Flask(__name__)
socketio = SocketIO(app, async_mode="eventlet")


@socketio.on("message")
def handle_message(data: Any) -> None:
    emit("response", f"Echo: {data}")


@socketio.on("ask")
def handle_ask(data: Any) -> str:
    return f"Echo: {data}"


@socketio.on("echo")
def handle_echo(data: Any) -> None:
    emit("echo", data)


if __name__ == "__main__":
    socketio.run(app, host="127.0.0.1", port=int(sys.argv[1]) if len(sys.argv) > 1 else 5000)
