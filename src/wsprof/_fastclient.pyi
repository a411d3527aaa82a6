from collections.abc import Callable
from typing import Any

from wsprof._histogram import Histogram
from wsprof.protocol.websocket import ProtocolError as ProtocolError

OP_CONT: int
OP_TEXT: int
OP_BINARY: int
OP_CLOSE: int
OP_PING: int
OP_PONG: int
ERROR_KINDS: tuple[str, ...]

def encode_frame(
    opcode: int, payload: bytes, *, fin: bool = True, mask: bytes | None = None
) -> bytes: ...

class FrameParser:
    max_message_size: int
    expect_masked: bool
    def __init__(
        self, max_message_size: int = 16 * 1024 * 1024, *, expect_masked: bool = False
    ) -> None: ...
    @property
    def failed(self) -> bool: ...
    def feed(self, data: bytes) -> list[tuple[int, bytes]]: ...

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

def serve_echo(listen_fd: int, stop_fd: int, max_seconds: float, max_fds: int = 65536) -> int: ...
def measure_floor(
    payload_len: int = 128, iterations: int = 200000, max_seconds: float = 2.0
) -> dict[str, float]: ...
