class Setup:
    def __init__(
        self,
        *,
        host: str,
        port: int,
        path: str,
        connections: int,
        socketio: bool,
        msgpack: bool,
        send_frames: list[tuple[int, bytes]],
    ) -> None: ...
