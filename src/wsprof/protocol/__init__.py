"""Sans-I/O protocol layer: RFC 6455 WebSocket (client side), Engine.IO v4, Socket.IO v5.

Pure Python, no I/O: bytes in, messages and bytes out. The reference load
client drives these modules; the Cython fast path mirrors ``websocket``.
"""

from wsprof.protocol.engineio import EngineIOError
from wsprof.protocol.socketio import SocketIOError
from wsprof.protocol.websocket import HandshakeError, ProtocolError

__all__ = ["EngineIOError", "HandshakeError", "ProtocolError", "SocketIOError"]
