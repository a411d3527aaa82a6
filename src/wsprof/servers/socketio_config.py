"""python-socketio server arguments shared by every socketio stack.

Kept apart from the app modules and free of heavy imports so that the green
stacks can import it before they monkey-patch.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from wsprof.protocol.websocket import MAX_MESSAGE_SIZE


def socketio_server_kwargs(options: Mapping[str, str]) -> dict[str, Any]:
    """python-socketio ``Server``/``AsyncServer`` arguments shared by every socketio stack."""
    kwargs: dict[str, Any] = {
        "ping_interval": float(options["ping_interval"]),
        "ping_timeout": float(options["ping_timeout"]),
        "max_http_buffer_size": MAX_MESSAGE_SIZE,
        "logger": False,
        "engineio_logger": False,
        # Load generators may send an Origin header; a profiler has no CORS policy to keep.
        "cors_allowed_origins": "*",
    }
    serializer = options["serializer"]
    if serializer == "msgpack":
        kwargs["serializer"] = "msgpack"
    elif serializer == "orjson":
        from wsprof.servers import orjson_shim

        kwargs["json"] = orjson_shim
    if options.get("manager") == "redis":
        kwargs["client_manager"] = redis_client_manager(options)
    return kwargs


def redis_client_manager(options: Mapping[str, str]) -> Any:
    """python-socketio's Redis manager for ``options["redis_url"]``, of the server's kind.

    The asyncio stacks are exactly those with a ``loop`` option (stacks.py):
    they get ``AsyncRedisManager``; the green stacks get ``RedisManager``, whose
    blocking redis client runs on the sockets they have monkey-patched by now
    (python-socketio refuses to start it on unpatched sockets). Queue messages
    are (de)serialised with the server's own JSON module, as python-socketio does.
    """
    import socketio

    if "loop" in options:
        return socketio.AsyncRedisManager(options["redis_url"])
    return socketio.RedisManager(options["redis_url"])
