"""Run one server stack in this process: ``python -m wsprof.servers.serve --stack NAME``.

The contract with the launcher: bind the listening socket ourselves (port 0
lets the kernel pick a free port without a race), print exactly one line
``WSPROF-READY port=<N> pid=<PID>`` on stdout, then point stdout at stderr so
that no stray print can ever fill the pipe nobody reads any more. Everything
else goes to stderr. Exit codes: 2 bad arguments, 3 port could not be bound.

Only the chosen stack's modules are imported, and the green stacks
monkey-patch before anything else: this module imports nothing that creates
threads or locks the patching would miss.
"""

from __future__ import annotations

import argparse
import ctypes
import os
import signal
import socket
import sys
from collections.abc import Callable, Mapping

from wsprof.servers.counting import COUNT_FILE_ENV
from wsprof.servers.stacks import (
    STACKS,
    StackOptionError,
    parse_option_pairs,
    stack_names,
    validate_options,
)

READY_PREFIX = "WSPROF-READY"
EXIT_BAD_ARGS = 2
EXIT_BIND_FAILED = 3
#: The launcher sets this so a server whose parent died before prctl took effect exits.
PARENT_PID_ENV = "WSPROF_PARENT_PID"
LISTEN_BACKLOG = 4096
_PR_SET_PDEATHSIG = 1

Ready = Callable[[socket.socket], None]
Listen = Callable[[], socket.socket]
Runner = Callable[[Mapping[str, str], Listen, Ready], None]


class BindFailed(Exception):
    """The listening socket could not be bound; reported as exit code 3."""


def die_with_parent() -> None:
    """Ask the kernel to SIGTERM us when the launching thread dies, so no server is orphaned.

    Done here rather than in a ``preexec_fn`` so the launcher stays safe to
    use from threaded programs. The parent-pid check closes the window
    between fork and this call.
    """
    if not sys.platform.startswith("linux"):
        return
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
    expected = os.environ.get(PARENT_PID_ENV)
    if expected and expected.isdigit() and os.getppid() != int(expected):
        sys.stderr.write("wsprof-serve: launcher already gone, exiting\n")
        sys.exit(1)


def make_listen(host: str, port: int) -> Listen:
    """A function that binds and listens, called by a stack after it has (maybe) patched ``socket``."""

    def listen() -> socket.socket:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            sock.close()
            raise BindFailed(f"could not bind {host}:{port}: {exc.strerror or exc}") from exc
        sock.listen(LISTEN_BACKLOG)
        return sock

    return listen


def announce_ready(sock: socket.socket) -> None:
    """Print the one READY line, then send any later stdout output to stderr."""
    port = sock.getsockname()[1]
    sys.stdout.write(f"{READY_PREFIX} port={port} pid={os.getpid()}\n")
    sys.stdout.flush()
    os.dup2(2, 1)


def _framework_runner(stack: str) -> Runner | None:
    """The seeds' real frameworks (``wsprof.servers.apps``), imported only when chosen."""
    if stack in ("flask-socketio-eventlet", "flask-socketio-gevent"):
        from wsprof.servers.apps import flask_socketio_echo

        if stack == "flask-socketio-eventlet":
            return flask_socketio_echo.run_eventlet
        return flask_socketio_echo.run_gevent
    if stack == "fastapi":
        from wsprof.servers.apps import fastapi_echo

        return fastapi_echo.run
    if stack == "quart-socketio":
        from wsprof.servers.apps import quart_socketio_echo

        return quart_socketio_echo.run
    return None


def runner_for(stack: str) -> Runner:
    """Import only the chosen stack's module (green stacks must patch before other imports)."""
    framework = _framework_runner(stack)
    if framework is not None:
        return framework
    if stack in ("socketio-eventlet", "socketio-gevent"):
        from wsprof.servers import green_apps

        return {
            "socketio-eventlet": green_apps.run_socketio_eventlet,
            "socketio-gevent": green_apps.run_socketio_gevent,
        }[stack]
    from wsprof.servers import asgi_apps

    return {
        "starlette-raw": asgi_apps.run_starlette_raw,
        "websockets-raw": asgi_apps.run_websockets_raw,
        "socketio-asgi": asgi_apps.run_socketio_asgi,
    }[stack]


def counted_listen(listen: Listen) -> Listen:
    """``listen`` that first installs the per-message counters when ``WSPROF_COUNT_FILE`` is set.

    Every stack calls ``listen`` after its green monkey-patching and after building
    its app, and before serving: the one point where all the counted code exists.
    """
    if not os.environ.get(COUNT_FILE_ENV):
        return listen

    def listen_counted() -> socket.socket:
        from wsprof.servers import counting

        counting.install_from_env()
        return listen()

    return listen_counted


def _describe_stacks() -> str:
    lines = []
    for spec in STACKS.values():
        lines.append(f"{spec.name}: {spec.description}")
        for key, option in spec.options.items():
            lines.append(f"    {key}: {option.describe()}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit code."""
    parser = argparse.ArgumentParser(
        prog="python -m wsprof.servers.serve",
        description="Serve one wsprof server stack on 127.0.0.1.",
        epilog=_describe_stacks(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--stack", required=True, help=f"one of {', '.join(stack_names())}")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 lets the kernel choose")
    parser.add_argument("--opt", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args(argv)
    try:
        options = validate_options(args.stack, parse_option_pairs(args.opt))
    except StackOptionError as exc:
        sys.stderr.write(f"wsprof-serve: {exc}\n")
        return EXIT_BAD_ARGS
    die_with_parent()
    run = runner_for(args.stack)
    try:
        run(options, counted_listen(make_listen(args.host, args.port)), announce_ready)
    except BindFailed as exc:
        sys.stderr.write(f"wsprof-serve: {exc}\n")
        return EXIT_BIND_FAILED
    return 0


if __name__ == "__main__":
    sys.exit(main())
