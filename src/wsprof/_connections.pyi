from collections.abc import Callable
from typing import Any

from wsprof._histogram import Histogram

ERROR_KINDS: tuple[str, ...]

class ConnectionsRun:
    pending: int
    ready: int
    closing: int
    failed: int
    def __init__(
        self, *, host: str, port: int, path: str, slots: int, socketio: bool, msgpack: bool
    ) -> None: ...
    def abort(self) -> None: ...
    def errors(self) -> dict[str, int]: ...
    def first_errors(self) -> dict[str, str]: ...
    def run_idle(
        self,
        *,
        connections: int,
        open_concurrency: int,
        duration: float,
        open_timeout: float,
        close_timeout: float,
        on_window: Callable[[str], None] | None = None,
    ) -> dict[str, Any]: ...
    def run_connect(
        self,
        *,
        concurrency: int,
        warmup: float,
        duration: float,
        connect_timeout: float,
        close_timeout: float,
        histogram: Histogram,
        on_window: Callable[[str], None] | None = None,
    ) -> dict[str, Any]: ...
