# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""The WebSocket frame layer's Python face: ``FrameParser`` and ``encode_frame`` in C.

Same behaviour, same ``ProtocolError`` and same error texts as
``wsprof.protocol.websocket``; the load client, the echo server and the floor
use the ``cdef inline`` functions of ``_frames.pxd`` directly.
"""
from cpython.bytes cimport PyBytes_FromStringAndSize, PyBytes_AS_STRING, PyBytes_GET_SIZE
from libc.stdint cimport uint8_t, uint64_t
from libc.string cimport memcpy

from wsprof._buffer cimport Buffer, buf_append, buf_consume, buf_free

from wsprof.protocol.websocket import MAX_MESSAGE_SIZE, ProtocolError, frame_error

__all__ = ["FrameParser", "ProtocolError", "encode_frame"]


def encode_frame(int opcode, payload, *, bint fin=True, mask=None) -> bytes:
    """One frame; clients pass a 4-byte ``mask``, ``mask=None`` is server style."""
    cdef bytes data = bytes(payload)
    cdef size_t n = PyBytes_GET_SIZE(data)
    cdef bytes mkey
    cdef const uint8_t* mptr = NULL
    cdef uint8_t header[MAX_HEADER]
    cdef size_t h
    cdef bytes out
    cdef uint8_t* o
    if not (OP_CONT <= opcode <= OP_BINARY or OP_CLOSE <= opcode <= OP_PONG):
        raise ValueError(f"unknown opcode 0x{opcode:x}")
    if opcode >= OP_CLOSE:
        if n > MAX_CONTROL_PAYLOAD:
            raise ValueError(f"control frame of {n} bytes exceeds the 125-byte limit")
        if not fin:
            raise ValueError("fragmented control frame")
    if mask is not None:
        mkey = bytes(mask)
        if PyBytes_GET_SIZE(mkey) != 4:
            raise ValueError("mask must be 4 bytes")
        mptr = <const uint8_t*>PyBytes_AS_STRING(mkey)
    h = frame_header(header, (0x80 if fin else 0) | opcode, n, mptr)
    out = PyBytes_FromStringAndSize(NULL, h + n)
    o = <uint8_t*>PyBytes_AS_STRING(out)
    memcpy(o, header, h)
    memcpy(o + h, PyBytes_AS_STRING(data), n)
    if mptr != NULL:
        apply_mask(o + h, n, mptr)
    return out


cdef class FrameParser:
    """Resumable frame parser with the behaviour of ``wsprof.protocol.websocket.FrameParser``."""

    cdef WsParser p
    cdef Buffer buf
    cdef object _error
    cdef public object max_message_size
    cdef public bint expect_masked

    def __init__(self, max_message_size: int = MAX_MESSAGE_SIZE, *,
                 bint expect_masked=False) -> None:
        self.max_message_size = max_message_size
        self.expect_masked = expect_masked
        parser_init(&self.p, <uint64_t>max_message_size, expect_masked)
        self._error = None

    def __dealloc__(self):
        buf_free(&self.buf)
        buf_free(&self.p.frag)

    @property
    def failed(self) -> bool:
        return self._error is not None

    def feed(self, data) -> list:
        """Parse ``data`` after what came before; return the messages it completed."""
        cdef const uint8_t[::1] view
        cdef size_t n, pos = 0, dlen
        cdef int op, rc
        cdef uint8_t* payload
        if self._error is not None:
            raise ProtocolError(self._error)
        if isinstance(data, (bytes, bytearray, memoryview)):
            view = data
        else:
            view = bytes(data)
        n = view.shape[0]
        if n and buf_append(&self.buf, &view[0], n) < 0:
            raise MemoryError()
        out = []
        while True:
            rc = ws_next(&self.p, self.buf.data, self.buf.len, &pos, &op, &payload, &dlen)
            if rc == 0:
                break
            if rc < 0:
                exc = frame_error(self.p.err, self.p.err_arg, self.p.max_size)
                self._error = str(exc)
                self.buf.len = 0
                raise exc
            out.append((op, PyBytes_FromStringAndSize(<char*>payload, dlen)))
        buf_consume(&self.buf, pos)
        return out
