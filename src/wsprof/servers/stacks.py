"""The catalogue of server stacks and their options, with no heavy imports.

Both the launcher (in the measuring process) and ``serve`` (in the server
process) validate against this one table, so a bad option is rejected before
a process is spawned and a served process never runs with an unchecked value.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from wsprof.errors import WsprofError

#: python-socketio's own defaults, kept so that "default" means what users run.
DEFAULT_PING_INTERVAL = "25"
DEFAULT_PING_TIMEOUT = "20"


class StackOptionError(WsprofError, ValueError):
    """An unknown stack or a bad option value; a ValueError so callers can catch either."""


@dataclass(frozen=True)
class Option:
    """One ``key=value`` option: its default and either a choice list or a checker."""

    default: str
    choices: tuple[str, ...] = ()
    check: Callable[[str], str | None] | None = None
    help: str = ""

    def describe(self) -> str:
        """Short text for listings: the allowed values and the default."""
        allowed = ", ".join(self.choices) if self.choices else self.help
        return f"{allowed} (default {self.default})"


@dataclass(frozen=True)
class Stack:
    """A server stack: how clients talk to it and which options it takes."""

    name: str
    mode: str  # "raw" or "socketio"
    description: str
    options: Mapping[str, Option] = field(default_factory=dict)


def _positive_seconds(value: str) -> str | None:
    try:
        seconds = float(value)
    except ValueError:
        return "must be a number of seconds"
    if not math.isfinite(seconds) or seconds <= 0:
        return "must be a positive, finite number of seconds"
    return None


def _whole_seconds(value: str) -> str | None:
    # engineio 4.15 advertises int(ping_interval) * 1000 ms in its open packet, so
    # a fractional interval would be announced wrongly to clients (0.5 s -> 0 ms).
    if not value.isdigit() or int(value) < 1:
        return "must be a whole number of seconds >= 1 (engineio truncates fractions)"
    return None


LOOP = Option("uvloop", ("asyncio", "uvloop"))
UVICORN_WS = Option("websockets", ("websockets", "websockets-sansio", "wsproto"))
SERIALIZER = Option("json", ("json", "orjson", "msgpack"))
PING_INTERVAL = Option(DEFAULT_PING_INTERVAL, check=_whole_seconds, help="whole seconds >= 1")
PING_TIMEOUT = Option(DEFAULT_PING_TIMEOUT, check=_positive_seconds, help="seconds > 0")
#: What the app does with a message: send it back, or send it to every connection.
HANDLER = Option("echo", ("echo", "broadcast"))
ASGI_SERVER = Option("uvicorn", ("uvicorn", "hypercorn"))
#: More workers than this on one machine measures the scheduler, not the server.
MAX_WORKERS = 64


def _worker_count(value: str) -> str | None:
    if not value.isdigit() or not 1 <= int(value) <= MAX_WORKERS:
        return f"must be a whole number of worker processes from 1 to {MAX_WORKERS}"
    return None


WORKERS = Option("1", check=_worker_count, help=f"1 to {MAX_WORKERS} processes")


# --- the Socket.IO client manager: in-process, or python-socketio's Redis manager ---
REDIS_URL_SCHEMES = ("redis://", "rediss://", "unix://")


def _redis_url(value: str) -> str | None:
    if value and not value.startswith(REDIS_URL_SCHEMES):
        return f"must be a URL starting with {', '.join(REDIS_URL_SCHEMES)}"
    return None


MANAGER = Option("memory", ("memory", "redis"))
REDIS_URL = Option("", check=_redis_url, help="redis://HOST:PORT/DB, needed with manager=redis")
SOCKETIO_MANAGER = {"manager": MANAGER, "redis_url": REDIS_URL}


def _check_manager(stack: str, resolved: Mapping[str, str]) -> None:
    """``manager = "redis"`` needs the broker's URL (the runner passes the one it started)."""
    if resolved.get("manager") == "redis" and not resolved.get("redis_url"):
        raise StackOptionError(
            f"stack {stack!r}: option 'manager' = 'redis' needs redis_url=redis://HOST:PORT/0"
        )


GREEN_SOCKETIO = {
    "handler": HANDLER,
    "serializer": SERIALIZER,
    "ping_interval": PING_INTERVAL,
    "ping_timeout": PING_TIMEOUT,
    **SOCKETIO_MANAGER,
}

STACKS: dict[str, Stack] = {
    stack.name: stack
    for stack in (
        Stack(
            "starlette-raw",
            "raw",
            "uvicorn + Starlette WebSocket route, echo",
            {"loop": LOOP, "ws": UVICORN_WS, "handler": HANDLER},
        ),
        Stack(
            "websockets-raw",
            "raw",
            "websockets' own asyncio server, echo",
            {"loop": LOOP, "handler": HANDLER},
        ),
        Stack(
            "socketio-asgi",
            "socketio",
            "uvicorn + python-socketio AsyncServer (ASGI)",
            {
                "handler": HANDLER,
                "loop": LOOP,
                "ws": UVICORN_WS,
                "serializer": SERIALIZER,
                "ping_interval": PING_INTERVAL,
                "ping_timeout": PING_TIMEOUT,
                **SOCKETIO_MANAGER,
            },
        ),
        Stack(
            "socketio-eventlet",
            "socketio",
            "python-socketio Server on eventlet.wsgi (the Flask-SocketIO model)",
            {
                "handler": HANDLER,
                "serializer": SERIALIZER,
                "ping_interval": PING_INTERVAL,
                "ping_timeout": PING_TIMEOUT,
                **SOCKETIO_MANAGER,
            },
        ),
        Stack(
            "socketio-gevent",
            "socketio",
            "python-socketio Server on gevent pywsgi + simple-websocket",
            {
                "handler": HANDLER,
                "serializer": SERIALIZER,
                "ping_interval": PING_INTERVAL,
                "ping_timeout": PING_TIMEOUT,
                **SOCKETIO_MANAGER,
            },
        ),
        Stack(
            "fastapi",
            "raw",
            "FastAPI WebSocket route on uvicorn (uvicorn --workers N with workers=N), echo",
            {"loop": LOOP, "ws": UVICORN_WS, "workers": WORKERS, "handler": HANDLER},
        ),
        Stack(
            "flask-socketio-eventlet",
            "socketio",
            "Flask + Flask-SocketIO on eventlet, as socketio.run(app) serves it",
            GREEN_SOCKETIO,
        ),
        Stack(
            "flask-socketio-gevent",
            "socketio",
            "Flask + Flask-SocketIO on gevent pywsgi, as socketio.run(app) serves it",
            GREEN_SOCKETIO,
        ),
        Stack(
            "quart-socketio",
            "socketio",
            "Quart behind python-socketio's ASGIApp, on uvicorn or hypercorn (whose WebSocket is always wsproto: ws applies to uvicorn only)",
            {
                "handler": HANDLER,
                "server": ASGI_SERVER,
                "loop": LOOP,
                "ws": UVICORN_WS,
                "serializer": SERIALIZER,
                "ping_interval": PING_INTERVAL,
                "ping_timeout": PING_TIMEOUT,
                **SOCKETIO_MANAGER,
            },
        ),
    )
}


def stack_names() -> list[str]:
    """Names of all stacks, in catalogue order (the order listings show)."""
    return list(STACKS)


def get_stack(name: str) -> Stack:
    """Look a stack up, naming the valid ones when the name is wrong."""
    try:
        return STACKS[name]
    except KeyError:
        raise StackOptionError(f"unknown stack {name!r} (valid: {', '.join(STACKS)})") from None


def validate_options(stack: str, options: Mapping[str, str]) -> dict[str, str]:
    """Check ``options`` against the stack's table and fill in the defaults.

    Values stay strings: they travel on a command line to the served process.
    """
    spec = get_stack(stack)
    unknown = sorted(set(options) - set(spec.options))
    if unknown:
        valid = ", ".join(spec.options) or "none"
        raise StackOptionError(f"stack {stack!r}: unknown option {unknown[0]!r} (valid: {valid})")
    resolved: dict[str, str] = {}
    for key, option in spec.options.items():
        value = str(options.get(key, option.default))
        if option.choices and value not in option.choices:
            raise StackOptionError(
                f"stack {stack!r}: option {key!r} must be one of "
                f"{', '.join(option.choices)}, not {value!r}"
            )
        if option.check is not None:
            problem = option.check(value)
            if problem:
                raise StackOptionError(f"stack {stack!r}: option {key!r} {problem}, not {value!r}")
        resolved[key] = value
    _check_manager(stack, resolved)
    return resolved


def parse_option_pairs(pairs: list[str]) -> dict[str, str]:
    """Turn ``["key=value", ...]`` (the ``--opt`` flags) into a mapping."""
    options: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise StackOptionError(f"option {pair!r} is not of the form key=value")
        options[key.strip()] = value.strip()
    return options
