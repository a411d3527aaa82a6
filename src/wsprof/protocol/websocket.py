"""RFC 6455 WebSocket, client side, sans-I/O: bytes in, messages or bytes out.

Nothing here touches a socket, so the same code is measured in the
microbenchmarks, driven by the reference load client and checked byte for byte
in tests. The Cython frame layer (``wsprof._frames``) mirrors ``FrameParser``
and ``encode_frame`` with the same behaviour; both take their error texts from
``FRAME_ERRORS`` here, indexed by the same codes.
"""

from __future__ import annotations

import base64
import hashlib
import os

OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
DATA_OPCODES = frozenset((OP_CONT, OP_TEXT, OP_BINARY))
CONTROL_OPCODES = frozenset((OP_CLOSE, OP_PING, OP_PONG))
MAX_CONTROL_PAYLOAD = 125
MAX_HANDSHAKE_BYTES = 64 * 1024
#: The largest message a parser accepts unless told otherwise.
MAX_MESSAGE_SIZE = 16 * 1024 * 1024
GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


# Frame-layer error codes; ext/wsprof/_frames.pxd declares the same numbers as a cdef enum.
(
    E_RSV,
    E_FRAG_CTRL,
    E_OPCODE,
    E_MASKED,
    E_UNMASKED,
    E_CONT,
    E_NEWDATA,
    E_HIGHBIT,
    E_CTRL_LEN,
    E_TOO_BIG,
    E_UTF8,
    E_NOMEM,
) = range(1, 13)
FRAME_ERRORS = {
    E_RSV: "frame with reserved bits set",
    E_FRAG_CTRL: "fragmented control frame",
    E_OPCODE: "unknown opcode 0x{arg:x}",
    E_MASKED: "masked frame from server",
    E_UNMASKED: "unmasked frame from client",
    E_CONT: "continuation without a start frame",
    E_NEWDATA: "new data frame during a fragmented message",
    E_HIGHBIT: "frame length with the high bit set",
    E_CTRL_LEN: "control frame of {arg} bytes exceeds the 125-byte limit",
    E_TOO_BIG: "message of {arg} bytes exceeds the {limit}-byte limit",
    E_UTF8: "invalid UTF-8 in text message",
    E_NOMEM: "out of memory reassembling a {arg}-byte message",
}


class ProtocolError(Exception):
    """The peer broke the protocol; the message says exactly how."""


def frame_error(code: int, arg: int = 0, limit: int = 0) -> ProtocolError:
    """The ProtocolError for frame-layer error ``code`` (shared with the Cython parser)."""
    return ProtocolError(FRAME_ERRORS[code].format(arg=arg, limit=limit))


class HandshakeError(Exception):
    """The server did not accept the opening handshake."""


def new_key() -> str:
    """A fresh Sec-WebSocket-Key: base64 of 16 random bytes (RFC 6455 §4.1)."""
    return base64.b64encode(os.urandom(16)).decode("ascii")


def accept_key(key: str) -> str:
    """The Sec-WebSocket-Accept a server must answer to ``key`` (RFC 6455 §4.2.2)."""
    digest = hashlib.sha1((key + GUID).encode("ascii")).digest()
    return base64.b64encode(digest).decode("ascii")


def build_handshake_request(host: str, port: int, path: str, key: str) -> bytes:
    """The client's opening handshake: a minimal HTTP/1.1 Upgrade request."""
    return (
        f"GET {path} HTTP/1.1\r\n"
        f"Host: {host}:{port}\r\n"
        "Upgrade: websocket\r\n"
        "Connection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\n"
        "Sec-WebSocket-Version: 13\r\n"
        "\r\n"
    ).encode("ascii")


def parse_handshake_response(data: bytes, key: str) -> int | None:
    """Check the server's handshake response to the request made with ``key``.

    Returns None while the header block is incomplete, else the number of bytes
    it took (frames may follow in the same read). Raises HandshakeError when the
    server refused or answered with the wrong accept key.
    """
    end = data.find(b"\r\n\r\n")
    if end < 0:
        if len(data) > MAX_HANDSHAKE_BYTES:
            raise HandshakeError(
                f"handshake response header block exceeds {MAX_HANDSHAKE_BYTES} bytes"
            )
        return None
    lines = data[:end].decode("latin-1").split("\r\n")
    status_line = lines[0].strip()
    parts = status_line.split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/"):
        raise HandshakeError(f"not an HTTP response: {status_line[:80]!r}")
    if parts[1] != "101":
        raise HandshakeError(f"server rejected the WebSocket handshake: {status_line}")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    if headers.get("upgrade", "").lower() != "websocket":
        raise HandshakeError("handshake response lacks 'Upgrade: websocket'")
    if "upgrade" not in (t.strip().lower() for t in headers.get("connection", "").split(",")):
        raise HandshakeError("handshake response lacks 'Connection: Upgrade'")
    got = headers.get("sec-websocket-accept")
    if got is None:
        raise HandshakeError("handshake response lacks the Sec-WebSocket-Accept header")
    expected = accept_key(key)
    if got != expected:
        raise HandshakeError(f"wrong Sec-WebSocket-Accept {got!r} (expected {expected!r})")
    return end + 4


#: What a server answers to an upgrade request without a Sec-WebSocket-Key.
BAD_REQUEST_RESPONSE = b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n"


def request_key(head: bytes) -> str | None:
    """The Sec-WebSocket-Key of a client's request header block, None if it has none."""
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"sec-websocket-key":
            return value.strip().decode("latin-1")
    return None


def build_handshake_response(key: str) -> bytes:
    """A server's 101 answer to the request made with ``key``."""
    return (
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Accept: {accept_key(key)}\r\n\r\n"
    ).encode("ascii")


def apply_mask(data: bytes, mask: bytes) -> bytes:
    """XOR ``data`` with the repeated 4-byte ``mask``, as one big-integer XOR.

    A per-byte Python loop costs ~50 ns a byte; the integer trick runs in C.
    """
    n = len(data)
    if n == 0:
        return b""
    key = (mask * (n // 4 + 1))[:n]
    return (int.from_bytes(data, "big") ^ int.from_bytes(key, "big")).to_bytes(n, "big")


def encode_frame(
    opcode: int, payload: bytes, *, fin: bool = True, mask: bytes | None = None
) -> bytes:
    """One frame. Clients must pass a 4-byte ``mask``; ``mask=None`` is server style.

    Raises ValueError for frames no peer should ever be sent (unknown opcode,
    oversize or fragmented control frame, mask not 4 bytes).
    """
    if opcode not in DATA_OPCODES and opcode not in CONTROL_OPCODES:
        raise ValueError(f"unknown opcode 0x{opcode:x}")
    n = len(payload)
    if opcode in CONTROL_OPCODES:
        if n > MAX_CONTROL_PAYLOAD:
            raise ValueError(f"control frame of {n} bytes exceeds the 125-byte limit")
        if not fin:
            raise ValueError("fragmented control frame")
    b0 = (0x80 if fin else 0) | opcode
    mbit = 0x80 if mask is not None else 0
    if n < 126:
        header = bytes((b0, mbit | n))
    elif n < 65536:
        header = bytes((b0, mbit | 126)) + n.to_bytes(2, "big")
    else:
        header = bytes((b0, mbit | 127)) + n.to_bytes(8, "big")
    if mask is None:
        return header + bytes(payload)
    if len(mask) != 4:
        raise ValueError("mask must be 4 bytes")
    return header + mask + apply_mask(payload, mask)


class FrameParser:
    """Resumable frame parser: feed any slices of the stream, get whole messages.

    Data messages come back reassembled from their fragments, control frames
    as they arrive (even between fragments). Every limit is checked before the
    payload is buffered, and after a ProtocolError the parser stays failed:
    a connection that broke the protocol must not be read any further.
    """

    def __init__(
        self, max_message_size: int = MAX_MESSAGE_SIZE, *, expect_masked: bool = False
    ) -> None:
        self.max_message_size = max_message_size
        self.expect_masked = expect_masked
        self._buf = bytearray()
        self._frag_opcode: int | None = None  # opcode of the message being reassembled
        self._frag_parts: list[bytes] = []
        self._frag_size = 0
        self._error: str | None = None

    @property
    def failed(self) -> bool:
        return self._error is not None

    def feed(self, data: bytes) -> list[tuple[int, bytes]]:
        """Parse ``data`` after what came before; return the messages it completed."""
        if self._error is not None:
            raise ProtocolError(self._error)
        buf = self._buf
        buf += data
        try:
            out, consumed = self._parse(buf)
        except ProtocolError as exc:
            self._error = str(exc)
            buf.clear()
            raise
        if consumed:
            del buf[:consumed]
        return out

    def _parse(self, buf: bytearray) -> tuple[list[tuple[int, bytes]], int]:
        out: list[tuple[int, bytes]] = []
        pos = 0
        n = len(buf)
        while n - pos >= 2:
            b0 = buf[pos]
            b1 = buf[pos + 1]
            if b0 & 0x70:
                raise frame_error(E_RSV)
            opcode = b0 & 0x0F
            fin = b0 & 0x80
            if opcode in CONTROL_OPCODES:
                if not fin:
                    raise frame_error(E_FRAG_CTRL)
            elif opcode not in DATA_OPCODES:
                raise frame_error(E_OPCODE, opcode)
            masked = b1 & 0x80
            if masked and not self.expect_masked:
                raise frame_error(E_MASKED)
            if not masked and self.expect_masked:
                raise frame_error(E_UNMASKED)
            if opcode == OP_CONT:
                if self._frag_opcode is None:
                    raise frame_error(E_CONT)
            elif opcode in DATA_OPCODES and self._frag_opcode is not None:
                raise frame_error(E_NEWDATA)
            length = b1 & 0x7F
            hlen = 2
            if length == 126:
                if n - pos < 4:
                    break
                length = int.from_bytes(buf[pos + 2 : pos + 4], "big")
                hlen = 4
            elif length == 127:
                if n - pos < 10:
                    break
                length = int.from_bytes(buf[pos + 2 : pos + 10], "big")
                hlen = 10
                if length >> 63:
                    raise frame_error(E_HIGHBIT)
            if opcode in CONTROL_OPCODES:
                if length > MAX_CONTROL_PAYLOAD:
                    raise frame_error(E_CTRL_LEN, length)
            elif self._frag_size + length > self.max_message_size:
                raise frame_error(E_TOO_BIG, self._frag_size + length, self.max_message_size)
            if masked:
                hlen += 4
            end = pos + hlen + length
            if end > n:
                break
            payload = bytes(buf[pos + hlen : end])
            if masked:
                payload = apply_mask(payload, bytes(buf[pos + hlen - 4 : pos + hlen]))
            pos = end
            if opcode in CONTROL_OPCODES:
                out.append((opcode, payload))
                continue
            if opcode != OP_CONT:
                if fin:
                    out.append(_complete(opcode, payload))
                    continue
                self._frag_opcode = opcode
            self._frag_parts.append(payload)
            self._frag_size += length
            if fin:
                first = self._frag_opcode
                assert first is not None
                message = b"".join(self._frag_parts)
                self._frag_opcode = None
                self._frag_parts = []
                self._frag_size = 0
                out.append(_complete(first, message))
        return out, pos


def _complete(opcode: int, payload: bytes) -> tuple[int, bytes]:
    if opcode == OP_TEXT:
        try:
            payload.decode("utf-8")
        except UnicodeDecodeError:
            raise frame_error(E_UTF8) from None
    return opcode, payload


def close_payload(code: int = 1000, reason: str = "") -> bytes:
    """The payload of a Close frame: a 2-byte status code and a UTF-8 reason."""
    data = reason.encode("utf-8")
    if len(data) > MAX_CONTROL_PAYLOAD - 2:
        raise ValueError("close reason exceeds 123 bytes")
    if not 1000 <= code <= 4999:
        raise ValueError(f"invalid close code {code}")
    return code.to_bytes(2, "big") + data


def parse_close_payload(payload: bytes) -> tuple[int | None, str]:
    """(code, reason) of a received Close frame; (None, "") when it carried none."""
    if not payload:
        return None, ""
    if len(payload) == 1:
        raise ProtocolError("close frame with a 1-byte payload")
    try:
        reason = payload[2:].decode("utf-8")
    except UnicodeDecodeError:
        raise ProtocolError("invalid UTF-8 in close reason") from None
    return int.from_bytes(payload[:2], "big"), reason
