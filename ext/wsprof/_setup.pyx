# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Connection set-up for the fast load client: Python steps that each connection takes once.

TCP connect, the HTTP upgrade and, for Socket.IO, the Engine.IO open packet and the
namespace connect. They run inside the load loop's epoll loop (so thousands of
connections set up concurrently and a server ping is answered meanwhile), but they
are Python: they run once per connection, never per message. Every protocol byte
comes from wsprof.protocol. A step that fails raises LoadError: a connection that
cannot be set up fails the run.
"""
from cpython.bytes cimport PyBytes_FromStringAndSize
from libc.errno cimport errno, EINPROGRESS
from libc.stdint cimport uint32_t
from libc.string cimport strerror

from wsprof._buffer cimport buf_consume
from wsprof._conn cimport (
    CS_CONNECTING, CS_HANDSHAKE, CS_READY, CS_SIO_CONNECT, CS_SIO_OPEN, view,
)
from wsprof._frames cimport OP_CLOSE, OP_TEXT
from wsprof._session cimport MAX_PREFIXES
from wsprof._posix cimport (
    epoll_ctl, epoll_event, getsockopt, memmem, EPOLL_CTL_ADD, EPOLLOUT, SO_ERROR, SOL_SOCKET,
)

import os
import socket

from wsprof.client.base import LoadError
from wsprof.protocol.engineio import parse_open
from wsprof.protocol.socketio import check_connect_reply, session_bytes
from wsprof.protocol.websocket import (
    HandshakeError,
    ProtocolError,
    build_handshake_request,
    close_payload,
    encode_frame,
    new_key,
    parse_handshake_response,
)

# The most a server may send before ending its upgrade response's header block.
cdef size_t MAX_RESPONSE_HEAD = 65536


cdef class Setup:
    """Where to connect and every byte to say there (masked frames); one per LoadRun."""

    def __init__(self, *, str host, int port, str path, int connections, bint socketio,
                 bint msgpack, list send_frames) -> None:
        cdef int i
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        self.family, self.addr = infos[0][0], infos[0][4]
        self.host_port = f"{host}:{port}"
        self.host = host
        self.port = port
        self.path = path
        self.socketio = socketio
        self.msgpack = msgpack
        self.keys = [None] * connections
        # Masking: one random key per run, applied once to the pre-built frames.
        # The server unmasks every byte whatever the key is (XOR cost does not
        # depend on its value), so this leaves the server's cost unchanged; the
        # unpredictable-per-frame rule guards proxies against attacker-chosen
        # payloads, which a load generator sending its own fixed data is not.
        key = os.urandom(4)
        while key == b"\0\0\0\0":
            key = os.urandom(4)
        self.mask_key = key
        self.unit = b"".join(encode_frame(op, data, mask=key) for op, data in send_frames)
        self.goodbye = encode_frame(OP_CLOSE, close_payload(1000), mask=key)
        if socketio:
            self.session = session_bytes(msgpack)
            self.pong = encode_frame(OP_TEXT, self.session.pong, mask=key)
            self.connect = encode_frame(*self.session.connect, mask=key)
            self.goodbye = encode_frame(*self.session.disconnect, mask=key) + self.goodbye
            if len(self.session.ended) > MAX_PREFIXES:
                raise ValueError("too many session-ending prefixes")
            self.sio.ping = view(self.session.ping)
            self.sio.pong = view(self.pong)
            self.sio.nended = len(self.session.ended)
            for i in range(self.sio.nended):
                self.sio.ended[i] = view(self.session.ended[i])
            self.sio.event = view(self.session.event)
            self.sio.binary_event = view(self.session.binary_event)

    cdef int connect_tcp(self, Conn* c, int epfd, int idx) except -1:
        """Start a non-blocking connect; epoll says when it is done."""
        cdef epoll_event ev
        sock = socket.socket(self.family, socket.SOCK_STREAM)
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        err = sock.connect_ex(self.addr)
        if err not in (0, EINPROGRESS):
            sock.close()
            raise LoadError(f"cannot connect to {self.host_port}: {os.strerror(err)}")
        c.fd = sock.detach()
        c.state = CS_CONNECTING
        c.events = EPOLLOUT
        ev.events = EPOLLOUT
        ev.data.u32 = <uint32_t>idx
        if epoll_ctl(epfd, EPOLL_CTL_ADD, c.fd, &ev) < 0:
            raise OSError(errno, "epoll_ctl failed")
        return 0

    cdef bytes upgrade_request(self, Conn* c, int idx):
        """The connect finished: the HTTP upgrade request to send."""
        cdef int err = 0
        cdef unsigned int elen = sizeof(int)
        getsockopt(c.fd, SOL_SOCKET, SO_ERROR, &err, &elen)
        if err:
            raise LoadError(f"cannot connect to {self.host_port}: {strerror(err).decode()}")
        c.state = CS_HANDSHAKE
        key = new_key()
        self.keys[idx] = key
        return build_handshake_request(self.host, self.port, self.path, key)

    cdef int upgrade_response(self, Conn* c, int idx) except -1:
        """Check the upgrade response in ``c.rbuf``; 0 while its header block is incomplete."""
        cdef size_t used
        if memmem(c.rbuf.data, c.rbuf.len, b"\r\n\r\n", 4) == NULL:
            if c.rbuf.len > MAX_RESPONSE_HEAD:
                raise LoadError(
                    f"handshake response header block exceeds {MAX_RESPONSE_HEAD} bytes")
            return 0
        try:
            used = parse_handshake_response(
                PyBytes_FromStringAndSize(<char*>c.rbuf.data, c.rbuf.len), self.keys[idx])
        except HandshakeError as exc:
            raise LoadError(f"{self.host_port}{self.path}: {exc}") from None
        buf_consume(&c.rbuf, used)
        c.state = CS_SIO_OPEN if self.socketio else CS_READY
        return 1

    cdef bytes message(self, Conn* c, int op, bytes data):
        """A Socket.IO set-up message: the Engine.IO open packet or the namespace connect
        reply (or a ping). Returns the frame to send, if any."""
        if op == OP_TEXT and data == self.session.ping:
            return self.pong
        message = data.decode() if op == OP_TEXT else data
        try:
            if c.state == CS_SIO_CONNECT:
                check_connect_reply(message, msgpack=self.msgpack)
                c.state = CS_READY
                return None
            if op != OP_TEXT:
                raise LoadError("expected the Engine.IO open packet, got a binary message")
            parse_open(message)
        except (ProtocolError, UnicodeDecodeError) as exc:
            raise LoadError(str(exc)) from None
        c.state = CS_SIO_CONNECT
        return self.connect
