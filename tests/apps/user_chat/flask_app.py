"""A Flask-SocketIO app as its docs write one: ``message`` is answered by ``response``.

``echo`` is answered by ``echo`` with the same data, so the default contract works too.
"""

from __future__ import annotations

from flask import Flask
from flask_socketio import SocketIO, emit

app = Flask(__name__)
socketio = SocketIO(app)


@socketio.on("message")
def message(data: object) -> None:
    emit("response", f"Echo: {data}")


@socketio.on("echo")
def echo(data: object) -> None:
    emit("echo", data)
