"""The Socket.IO event handlers every socketio stack runs: the ``application`` layer.

They live in one module, apart from the server glue, so that a profile can
charge exactly these frames to the application and every stack runs the same
user code: ``"echo"`` emits the same arguments back to the sender, ``"ack"``
returns them as the acknowledgement. With ``handler = "broadcast"`` every
connection also joins one room on connect and event ``"broadcast"`` is emitted
to that whole room (the sender included). Bytes anywhere in the arguments travel
as binary attachments (or msgpack bin) and come back unchanged.
"""

from __future__ import annotations

from typing import Any


def _as_socketio_data(args: tuple[Any, ...]) -> Any:
    """python-socketio sends a tuple as several arguments and anything else as one."""
    return args[0] if len(args) == 1 else args


#: The one room every connection joins under ``handler = "broadcast"``.
BROADCAST_ROOM = "wsprof-broadcast"


def register_async(sio: Any, handler: str = "echo") -> None:
    """Attach the echo/ack (and, for ``handler="broadcast"``, broadcast) handlers to a
    ``socketio.AsyncServer``."""

    async def echo(sid: str, *args: Any) -> None:
        await sio.emit("echo", _as_socketio_data(args), to=sid)

    async def ack(sid: str, *args: Any) -> Any:
        return _as_socketio_data(args)

    sio.on("echo", echo)
    sio.on("ack", ack)
    if handler == "broadcast":

        async def connect(sid: str, environ: Any, auth: Any = None) -> None:
            await sio.enter_room(sid, BROADCAST_ROOM)

        async def broadcast(sid: str, data: Any) -> None:
            await sio.emit("broadcast", data, room=BROADCAST_ROOM)

        sio.on("connect", connect)
        sio.on("broadcast", broadcast)


def register_sync(sio: Any, handler: str = "echo") -> None:
    """Attach the same handlers to a ``socketio.Server`` (eventlet, gevent)."""

    def echo(sid: str, *args: Any) -> None:
        sio.emit("echo", _as_socketio_data(args), to=sid)

    def ack(sid: str, *args: Any) -> Any:
        return _as_socketio_data(args)

    sio.on("echo", echo)
    sio.on("ack", ack)
    if handler == "broadcast":

        def connect(sid: str, environ: Any, auth: Any = None) -> None:
            sio.enter_room(sid, BROADCAST_ROOM)

        def broadcast(sid: str, data: Any) -> None:
            sio.emit("broadcast", data, room=BROADCAST_ROOM)

        sio.on("connect", connect)
        sio.on("broadcast", broadcast)
