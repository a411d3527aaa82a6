"""Server glue the bundled framework apps share: hypercorn, and uvicorn with several workers.

Both serve on the socket wsprof bound (see ``wsprof.servers.serve``).
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Mapping
from typing import Any

from wsprof.protocol.websocket import MAX_MESSAGE_SIZE
from wsprof.servers.asgi_apps import GRACEFUL_SHUTDOWN_SECONDS, Listen, Ready


def run_hypercorn(app: Any, options: Mapping[str, str], listen: Listen, ready: Ready) -> None:
    """Serve ``app`` with hypercorn's asyncio worker until SIGTERM.

    ``hypercorn.asyncio.serve`` is hypercorn's documented programmatic entry;
    the loop (asyncio or uvloop) is ours to choose, as its ``worker_class`` does.
    """
    from hypercorn.asyncio import serve
    from hypercorn.config import Config

    sock = listen()
    config = Config()
    config.bind = [f"fd://{sock.fileno()}"]
    config.websocket_max_message_size = MAX_MESSAGE_SIZE
    config.graceful_timeout = GRACEFUL_SHUTDOWN_SECONDS
    config.accesslog = None
    config.loglevel = "WARNING"

    async def main() -> None:
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        ready(sock)
        await serve(app, config, shutdown_trigger=stop.wait)

    factory = asyncio.new_event_loop
    if options["loop"] == "uvloop":
        import uvloop

        factory = uvloop.new_event_loop
    with asyncio.Runner(loop_factory=factory) as runner:
        runner.run(main())


def run_uvicorn_workers(
    app: str, options: Mapping[str, str], workers: int, listen: Listen, ready: Ready
) -> None:
    """``uvicorn module:app --workers N`` on our socket: uvicorn's own supervisor and workers.

    ``app`` is an import string because uvicorn's workers are spawned
    processes that import it, as ``uvicorn.run`` requires for ``workers > 1``.
    """
    import uvicorn
    from uvicorn.supervisors import Multiprocess

    config = uvicorn.Config(
        app,
        workers=workers,
        loop=options["loop"],
        ws=options["ws"],
        ws_max_size=MAX_MESSAGE_SIZE,
        lifespan="off",
        log_config=None,
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=int(GRACEFUL_SHUTDOWN_SECONDS),
    )
    sock = listen()
    ready(sock)
    Multiprocess(config, sockets=[sock]).run()
