from collections.abc import Callable
from typing import Any

from wsprof._histogram import Histogram

class BroadcastRun:
    def __init__(
        self,
        *,
        endpoints: list[tuple[str, int, str]],
        recipients: int,
        senders: int,
        socketio: bool,
        template: bytes,
        id_offset: int,
        prefix: bytes,
        in_flight: int,
        rate: float,
        max_message_size: float,
        histogram: Histogram,
        cross: Histogram,
    ) -> None: ...
    def run(
        self,
        *,
        warmup: float,
        duration: float,
        drain: float,
        connect_timeout: float,
        close_timeout: float = ...,
        on_window: Callable[[str], None] | None = ...,
    ) -> dict[str, Any]: ...
