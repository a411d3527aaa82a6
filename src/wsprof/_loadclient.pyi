from collections.abc import Callable
from typing import Any

from wsprof._histogram import Histogram

ERROR_KINDS: tuple[str, ...]

class LoadRun:
    def __init__(
        self,
        *,
        host: str,
        port: int,
        path: str,
        connections: int,
        socketio: bool,
        send_frames: list[tuple[int, bytes]],
        expect_frames: list[tuple[int, bytes]],
        in_flight: int,
        rate: float,
        max_message_size: float,
        histogram: Histogram,
        msgpack: bool = False,
        reply: str = "echo",
        reply_prefix: bytes = b"",
        ack_prefix: bytes = b"",
        ack_parts: tuple[bytes, bytes] = (b"", b""),
    ) -> None: ...
    def run(
        self,
        *,
        warmup: float,
        duration: float,
        max_messages: int | None,
        connect_timeout: float,
        close_timeout: float = 2.0,
        on_window: Callable[[str], None] | None = None,
    ) -> dict[str, Any]: ...
