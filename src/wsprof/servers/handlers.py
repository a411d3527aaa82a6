"""The Socket.IO event handlers every socketio stack runs: the ``application`` layer.

They live in one module, apart from the server glue, so that a profile can
charge exactly these frames to the application and every stack runs the same
user code: ``"echo"`` emits the same arguments back to the sender, ``"ack"``
returns them as the acknowledgement. Bytes anywhere in the arguments travel
as binary attachments (or msgpack bin) and come back unchanged.
"""

from __future__ import annotations

from typing import Any


def _as_socketio_data(args: tuple[Any, ...]) -> Any:
    """python-socketio sends a tuple as several arguments and anything else as one."""
    return args[0] if len(args) == 1 else args


def register_async(sio: Any) -> None:
    """Attach the echo/ack handlers to a ``socketio.AsyncServer``."""

    async def echo(sid: str, *args: Any) -> None:
        await sio.emit("echo", _as_socketio_data(args), to=sid)

    async def ack(sid: str, *args: Any) -> Any:
        return _as_socketio_data(args)

    sio.on("echo", echo)
    sio.on("ack", ack)


def register_sync(sio: Any) -> None:
    """Attach the same handlers to a ``socketio.Server`` (eventlet, gevent)."""

    def echo(sid: str, *args: Any) -> None:
        sio.emit("echo", _as_socketio_data(args), to=sid)

    def ack(sid: str, *args: Any) -> Any:
        return _as_socketio_data(args)

    sio.on("echo", echo)
    sio.on("ack", ack)
