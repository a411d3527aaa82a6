# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""The fast-path load client: one epoll loop in C driving 1..10,000 WebSocket connections.

The client must be so cheap that a scenario measures the server, never itself.
Per message it does what the kernel makes unavoidable (one ``send`` and one
``recv``, shared by every message that fits in them) plus a few hundred
nanoseconds of C: frame parse, a ``memcmp`` against the expected echo, one
clock read per ``recv`` and a histogram increment. No Python object is made per
message; Python runs only at setup (sockets, handshakes, the Engine.IO open
packet, the namespace connect) and for rare events (errors).

This module also holds the frame layer that mirrors
``wsprof.protocol.websocket`` (``FrameParser``, ``encode_frame``, the same
``ProtocolError``), the cheap echo server ``serve_echo`` used by
``wsprof client-bench``, and ``measure_floor``, the kernel's price of one
loopback send plus one recv.
"""
cimport cython
from cpython.bytes cimport PyBytes_FromStringAndSize, PyBytes_AS_STRING, PyBytes_GET_SIZE
from libc.errno cimport errno, EAGAIN, EINTR, EINPROGRESS
from libc.stdint cimport int64_t, uint8_t, uint32_t, uint64_t
from libc.stdlib cimport calloc, free, realloc
from libc.string cimport memcmp, memcpy, memmove, strerror
from posix.time cimport clock_gettime, timespec
from posix.unistd cimport close, read

from wsprof._clock cimport now_ns
from wsprof._histogram cimport Histogram

import json
import os
import socket

from wsprof.client.base import LoadError
from wsprof.protocol.engineio import parse_open
from wsprof.protocol.websocket import (
    HandshakeError,
    ProtocolError,
    accept_key,
    build_handshake_request,
    close_payload,
    new_key,
    parse_handshake_response,
)


cdef extern from "string.h" nogil:
    void* memmem(const void* haystack, size_t hlen, const void* needle, size_t nlen)

cdef extern from "time.h" nogil:
    enum: CLOCK_THREAD_CPUTIME_ID
    enum: CLOCK_MONOTONIC_C "CLOCK_MONOTONIC"

cdef extern from "sys/socket.h" nogil:
    ssize_t c_send "send"(int fd, const void* buf, size_t n, int flags)
    ssize_t c_recv "recv"(int fd, void* buf, size_t n, int flags)
    int getsockopt(int fd, int level, int name, void* val, unsigned int* vlen)
    int accept4(int fd, void* addr, void* alen, int flags)
    enum: MSG_NOSIGNAL, SOL_SOCKET, SO_ERROR, SOCK_NONBLOCK, SOCK_CLOEXEC

cdef extern from "netinet/in.h" nogil:
    enum: IPPROTO_TCP

cdef extern from "netinet/tcp.h" nogil:
    enum: TCP_NODELAY

cdef extern from "sys/socket.h" nogil:
    int setsockopt(int fd, int level, int name, const void* val, unsigned int vlen)

cdef extern from "sys/epoll.h" nogil:
    ctypedef union epoll_data_t:
        void* ptr
        int fd
        uint32_t u32
        uint64_t u64
    struct epoll_event:
        uint32_t events
        epoll_data_t data
    int epoll_create1(int flags)
    int epoll_ctl(int epfd, int op, int fd, epoll_event* event)
    int epoll_wait(int epfd, epoll_event* events, int maxevents, int timeout)
    enum: EPOLLIN, EPOLLOUT, EPOLLERR, EPOLLHUP, EPOLL_CTL_ADD, EPOLL_CTL_MOD, EPOLL_CTL_DEL
    enum: EPOLL_CLOEXEC

cdef extern from "sys/timerfd.h" nogil:
    struct itimerspec:
        timespec it_interval
        timespec it_value
    int timerfd_create(int clockid, int flags)
    int timerfd_settime(int fd, int flags, const itimerspec* new, itimerspec* old)
    enum: TFD_NONBLOCK, TFD_CLOEXEC, TFD_TIMER_ABSTIME


OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA

# ---------------------------------------------------------------------------
# Frame layer (mirrors wsprof.protocol.websocket, same checks in the same order)
# ---------------------------------------------------------------------------

cdef enum:
    E_NONE, E_RSV, E_FRAG_CTRL, E_OPCODE, E_MASKED, E_UNMASKED, E_CONT, E_NEWDATA
    E_HIGHBIT, E_CTRL_LEN, E_TOO_BIG, E_UTF8, E_NOMEM

cdef struct WsParser:
    uint64_t max_size
    int expect_masked
    int err
    uint64_t err_arg
    int frag_op          # opcode of the message being reassembled, -1 if none
    uint8_t* frag
    size_t frag_len
    size_t frag_cap


cdef inline void apply_mask(uint8_t* data, size_t n, const uint8_t* key) noexcept nogil:
    """XOR in place, eight bytes at a time (the key repeats every 4 bytes)."""
    cdef uint64_t k8, w
    cdef uint32_t k4
    cdef size_t i = 0
    memcpy(&k4, key, 4)
    k8 = (<uint64_t>k4 << 32) | k4
    while i + 8 <= n:
        memcpy(&w, data + i, 8)
        w ^= k8
        memcpy(data + i, &w, 8)
        i += 8
    while i < n:
        data[i] ^= key[i & 3]
        i += 1


cdef bint utf8_valid(const uint8_t* s, size_t n) noexcept nogil:
    """Strict UTF-8, as Python's decoder: no overlongs, surrogates or code points past U+10FFFF."""
    cdef size_t i = 0
    cdef uint64_t w
    cdef uint8_t c, c1
    while i < n:
        if i + 8 <= n:
            memcpy(&w, s + i, 8)
            if (w & 0x8080808080808080ULL) == 0:
                i += 8
                continue
        c = s[i]
        if c < 0x80:
            i += 1
        elif c < 0xC2:
            return False
        elif c < 0xE0:
            if i + 1 >= n or (s[i + 1] & 0xC0) != 0x80:
                return False
            i += 2
        elif c < 0xF0:
            if i + 2 >= n:
                return False
            c1 = s[i + 1]
            if (c1 & 0xC0) != 0x80 or (s[i + 2] & 0xC0) != 0x80:
                return False
            if (c == 0xE0 and c1 < 0xA0) or (c == 0xED and c1 > 0x9F):
                return False
            i += 3
        elif c < 0xF5:
            if i + 3 >= n:
                return False
            c1 = s[i + 1]
            if (c1 & 0xC0) != 0x80 or (s[i + 2] & 0xC0) != 0x80 or (s[i + 3] & 0xC0) != 0x80:
                return False
            if (c == 0xF0 and c1 < 0x90) or (c == 0xF4 and c1 > 0x8F):
                return False
            i += 4
        else:
            return False
    return True


cdef inline int parse_fail(WsParser* p, int err, uint64_t arg) noexcept nogil:
    p.err = err
    p.err_arg = arg
    return -1


cdef int ws_next(WsParser* p, uint8_t* buf, size_t n, size_t* pos,
                 int* op, uint8_t** data, size_t* dlen) noexcept nogil:
    """Find the next complete message in ``buf[pos:n]``.

    Returns 1 with (op, data, dlen) set and ``pos`` past it, 0 when more bytes
    are needed, -1 on a protocol error (``p.err``). ``data`` points into ``buf``
    (unmasked in place) or into the reassembly buffer, valid until the next call.
    """
    cdef size_t i = pos[0]
    cdef size_t hlen, need
    cdef uint64_t length
    cdef int opcode, fin, masked, k
    cdef uint8_t b0, b1
    cdef uint8_t* payload
    cdef uint8_t* grown
    while n - i >= 2:
        b0 = buf[i]
        b1 = buf[i + 1]
        if b0 & 0x70:
            return parse_fail(p, E_RSV, 0)
        opcode = b0 & 0x0F
        fin = b0 & 0x80
        if opcode >= 8:
            if opcode > 10:
                return parse_fail(p, E_OPCODE, opcode)
            if not fin:
                return parse_fail(p, E_FRAG_CTRL, 0)
        elif opcode > 2:
            return parse_fail(p, E_OPCODE, opcode)
        masked = b1 & 0x80
        if masked and not p.expect_masked:
            return parse_fail(p, E_MASKED, 0)
        if not masked and p.expect_masked:
            return parse_fail(p, E_UNMASKED, 0)
        if opcode == 0:
            if p.frag_op < 0:
                return parse_fail(p, E_CONT, 0)
        elif opcode < 8 and p.frag_op >= 0:
            return parse_fail(p, E_NEWDATA, 0)
        length = b1 & 0x7F
        hlen = 2
        if length == 126:
            if n - i < 4:
                break
            length = (<uint64_t>buf[i + 2] << 8) | buf[i + 3]
            hlen = 4
        elif length == 127:
            if n - i < 10:
                break
            length = 0
            for k in range(8):
                length = (length << 8) | buf[i + 2 + k]
            hlen = 10
            if length >> 63:
                return parse_fail(p, E_HIGHBIT, 0)
        if opcode >= 8:
            if length > 125:
                return parse_fail(p, E_CTRL_LEN, length)
        elif p.frag_len + length > p.max_size:
            return parse_fail(p, E_TOO_BIG, p.frag_len + length)
        if masked:
            hlen += 4
        if n - i < hlen or n - i - hlen < length:
            break
        payload = buf + i + hlen
        if masked:
            apply_mask(payload, <size_t>length, buf + i + hlen - 4)
        i += hlen + <size_t>length
        if opcode >= 8 or (opcode != 0 and fin):
            if opcode == 1 and not utf8_valid(payload, <size_t>length):
                return parse_fail(p, E_UTF8, 0)
            pos[0] = i
            op[0] = opcode
            data[0] = payload
            dlen[0] = <size_t>length
            return 1
        if opcode != 0:
            p.frag_op = opcode
        need = p.frag_len + <size_t>length
        if need > p.frag_cap:
            grown = <uint8_t*>realloc(p.frag, need * 2 + 64)
            if grown == NULL:
                return parse_fail(p, E_NOMEM, need)
            p.frag = grown
            p.frag_cap = need * 2 + 64
        memcpy(p.frag + p.frag_len, payload, <size_t>length)
        p.frag_len = need
        if fin:
            opcode = p.frag_op
            p.frag_op = -1
            p.frag_len = 0
            if opcode == 1 and not utf8_valid(p.frag, need):
                return parse_fail(p, E_UTF8, 0)
            pos[0] = i
            op[0] = opcode
            data[0] = p.frag
            dlen[0] = need
            return 1
    pos[0] = i
    return 0


cdef str parse_error_text(WsParser* p):
    cdef int e = p.err
    if e == E_RSV:
        return "frame with reserved bits set"
    if e == E_FRAG_CTRL:
        return "fragmented control frame"
    if e == E_OPCODE:
        return f"unknown opcode 0x{p.err_arg:x}"
    if e == E_MASKED:
        return "masked frame from server"
    if e == E_UNMASKED:
        return "unmasked frame from client"
    if e == E_CONT:
        return "continuation without a start frame"
    if e == E_NEWDATA:
        return "new data frame during a fragmented message"
    if e == E_HIGHBIT:
        return "frame length with the high bit set"
    if e == E_CTRL_LEN:
        return f"control frame of {p.err_arg} bytes exceeds the 125-byte limit"
    if e == E_TOO_BIG:
        return f"message of {p.err_arg} bytes exceeds the {p.max_size}-byte limit"
    if e == E_UTF8:
        return "invalid UTF-8 in text message"
    return f"out of memory reassembling a {p.err_arg}-byte message"


cdef size_t frame_header(uint8_t* out, int b0, size_t n, const uint8_t* mask) noexcept nogil:
    """Write a frame header (with the mask key if any) and return its length."""
    cdef size_t h = 2
    cdef int mbit = 0x80 if mask != NULL else 0
    cdef int k
    out[0] = <uint8_t>b0
    if n < 126:
        out[1] = <uint8_t>(mbit | n)
    elif n < 65536:
        out[1] = <uint8_t>(mbit | 126)
        out[2] = <uint8_t>(n >> 8)
        out[3] = <uint8_t>(n & 0xFF)
        h = 4
    else:
        out[1] = <uint8_t>(mbit | 127)
        for k in range(8):
            out[2 + k] = <uint8_t>((<uint64_t>n >> (56 - 8 * k)) & 0xFF)
        h = 10
    if mask != NULL:
        memcpy(out + h, mask, 4)
        h += 4
    return h


def encode_frame(int opcode, payload, *, bint fin=True, mask=None) -> bytes:
    """One frame; clients pass a 4-byte ``mask``, ``mask=None`` is server style."""
    cdef bytes data = bytes(payload)
    cdef size_t n = PyBytes_GET_SIZE(data)
    cdef bytes mkey
    cdef const uint8_t* mptr = NULL
    cdef uint8_t header[14]
    cdef size_t h
    cdef bytes out
    cdef uint8_t* o
    if not (0 <= opcode <= 2 or 8 <= opcode <= 10):
        raise ValueError(f"unknown opcode 0x{opcode:x}")
    if opcode >= 8:
        if n > 125:
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
    cdef uint8_t* buf
    cdef size_t blen
    cdef size_t bcap
    cdef object _error
    cdef public object max_message_size
    cdef public bint expect_masked

    def __cinit__(self):
        self.p.frag_op = -1

    def __init__(self, max_message_size: int = 16 * 1024 * 1024, *, bint expect_masked=False) -> None:
        self.max_message_size = max_message_size
        self.expect_masked = expect_masked
        self.p.max_size = <uint64_t>max_message_size
        self.p.expect_masked = expect_masked
        self._error = None

    def __dealloc__(self):
        free(self.buf)
        free(self.p.frag)

    @property
    def failed(self) -> bool:
        return self._error is not None

    def feed(self, data) -> list:
        """Parse ``data`` after what came before; return the messages it completed."""
        cdef const uint8_t[::1] view
        cdef size_t n, pos = 0, dlen
        cdef int op, rc
        cdef uint8_t* payload
        cdef uint8_t* grown
        if self._error is not None:
            raise ProtocolError(self._error)
        if isinstance(data, (bytes, bytearray, memoryview)):
            view = data
        else:
            view = bytes(data)
        n = view.shape[0]
        if self.blen + n > self.bcap:
            grown = <uint8_t*>realloc(self.buf, (self.blen + n) * 2 + 64)
            if grown == NULL:
                raise MemoryError()
            self.buf = grown
            self.bcap = (self.blen + n) * 2 + 64
        if n:
            memcpy(self.buf + self.blen, &view[0], n)
        self.blen += n
        out = []
        while True:
            rc = ws_next(&self.p, self.buf, self.blen, &pos, &op, &payload, &dlen)
            if rc == 0:
                break
            if rc < 0:
                self._error = parse_error_text(&self.p)
                self.blen = 0
                raise ProtocolError(self._error)
            out.append((op, PyBytes_FromStringAndSize(<char*>payload, dlen)))
        if pos:
            memmove(self.buf, self.buf + pos, self.blen - pos)
            self.blen -= pos
        return out


# ---------------------------------------------------------------------------
# The load loop
# ---------------------------------------------------------------------------

cdef enum:
    CS_IDLE, CS_CONNECTING, CS_HANDSHAKE, CS_SIO_OPEN, CS_SIO_CONNECT, CS_READY, CS_CLOSING, CS_DEAD

cdef enum:
    PH_CONNECT, PH_WARMUP, PH_MEASURE, PH_DONE

# Error kinds, counted in C; names in ERROR_KINDS.
cdef enum:
    K_CLOSED_BY_SERVER, K_RESET, K_PROTOCOL, K_MISMATCH, K_UNEXPECTED, K_SEND_BACKLOG
    K_BACKLOG_FULL, K_CLOSE_TIMEOUT, K_COUNT

ERROR_KINDS = (
    "closed_by_server", "connection_reset", "protocol_error", "echo_mismatch",
    "unexpected_message", "send_backlog", "schedule_backlog", "close_timeout",
)

cdef struct Conn:
    int fd
    int state
    uint32_t events
    uint8_t* rbuf
    size_t rlen
    size_t rcap
    uint8_t* wbuf
    size_t woff
    size_t wlen
    size_t wcap
    uint64_t* ring        # send (closed loop) or intended (open loop) times, FIFO
    uint32_t rhead
    uint32_t rcount
    uint32_t ringcap
    uint32_t to_send
    int match_idx         # Socket.IO binary event: header matched, attachment awaited
    int skip_bin          # attachments of an unmatched binary event still to skip
    int dirty
    WsParser p

cdef enum:
    SCRATCH = 262144
    MAX_EVENTS = 1024
    MAX_PENDING_CONNECTS = 256
    WBUF_LIMIT = 64 * 1024 * 1024
    RING_LIMIT = 1 << 20

cdef uint32_t TIMER_TOKEN = 0xFFFFFFFF


cdef inline uint64_t thread_cpu_ns() noexcept nogil:
    cdef timespec ts
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts)
    return <uint64_t>ts.tv_sec * 1000000000ULL + <uint64_t>ts.tv_nsec


@cython.final
cdef class LoadRun:
    """One process's share of a load: every connection, one epoll loop, one histogram."""

    cdef Conn* conns
    cdef int n
    cdef int epfd
    cdef int timerfd
    cdef int socketio
    cdef int phase
    cdef int open_loop
    cdef uint32_t in_flight
    cdef int next_connect
    cdef int pending
    cdef int ready
    cdef int alive
    cdef int closing
    cdef uint32_t rr
    cdef uint8_t scratch[SCRATCH]
    # one message unit (1 or 2 masked frames) repeated `copies` times
    cdef uint8_t* unit
    cdef size_t unit_len
    cdef uint32_t copies
    # what the echo must be: up to 2 (opcode, bytes) frames
    cdef int nexp
    cdef int exp_op[2]
    cdef const uint8_t* exp_data[2]
    cdef size_t exp_len[2]
    cdef uint8_t pong3[7]       # masked text frame "3" (Engine.IO pong)
    cdef uint8_t mask_key[4]
    cdef Histogram hist
    cdef uint64_t measured
    cdef uint64_t max_messages
    cdef uint64_t interval_ns
    cdef uint64_t next_send_ns
    cdef uint64_t t_window_start
    cdef uint64_t t_window_end
    cdef uint64_t cpu_start
    cdef uint64_t cpu_end
    cdef uint64_t counts[K_COUNT]
    cdef int* dirty_list
    cdef int ndirty
    cdef uint64_t max_size
    # Python-side setup state
    cdef object addr
    cdef object family
    cdef str host_port
    cdef str host
    cdef int port
    cdef bytes key_obj
    cdef str path
    cdef list keys
    cdef bytes unit_obj
    cdef list exp_objs
    cdef bytes sio_connect_frame
    cdef int sio_connect_op
    cdef bint msgpack
    cdef dict first_error
    cdef object fatal
    cdef object on_window

    def __cinit__(self):
        self.epfd = -1
        self.timerfd = -1

    def __init__(self, *, str host, int port, str path, int connections, bint socketio,
                 list send_frames, list expect_frames, int in_flight, double rate,
                 double max_message_size, Histogram histogram, bint msgpack=False) -> None:
        cdef int i
        cdef bytes frame
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        self.family, self.addr = infos[0][0], infos[0][4]
        self.host_port = f"{host}:{port}"
        self.host = host
        self.port = port
        self.path = path
        self.n = connections
        self.socketio = socketio
        self.msgpack = msgpack
        self.open_loop = rate > 0
        self.in_flight = in_flight
        self.interval_ns = <uint64_t>(1e9 / rate) if rate > 0 else 0
        self.hist = histogram
        self.max_size = <uint64_t>max_message_size
        self.first_error = {}
        self.keys = [None] * connections
        self.conns = <Conn*>calloc(connections, sizeof(Conn))
        self.dirty_list = <int*>calloc(connections, sizeof(int))
        if self.conns == NULL or self.dirty_list == NULL:
            raise MemoryError()
        for i in range(connections):
            self.conns[i].fd = -1
            self.conns[i].p.frag_op = -1
            self.conns[i].p.max_size = self.max_size
        # Masking: one random key per run, applied once to the pre-built frames.
        # The server unmasks every byte whatever the key is (XOR cost does not
        # depend on its value), so this leaves the server's cost unchanged; the
        # unpredictable-per-frame rule guards proxies against attacker-chosen
        # payloads, which a load generator sending its own fixed data is not.
        key = os.urandom(4)
        while key == b"\0\0\0\0":
            key = os.urandom(4)
        memcpy(self.mask_key, <char*>key, 4)
        self.key_obj = key
        one = b"".join(encode_frame(op, data, mask=key) for op, data in send_frames)
        self.copies = max(in_flight, 64 if self.open_loop else 1)
        self.unit_obj = one * self.copies
        self.unit = <uint8_t*>PyBytes_AS_STRING(self.unit_obj)
        self.unit_len = len(one)
        self.exp_objs = [bytes(data) for _, data in expect_frames]
        self.nexp = len(expect_frames)
        if not 1 <= self.nexp <= 2:
            raise ValueError("expect_frames must hold one or two frames")
        for i in range(self.nexp):
            self.exp_op[i] = expect_frames[i][0]
            self.exp_data[i] = <const uint8_t*>PyBytes_AS_STRING(self.exp_objs[i])
            self.exp_len[i] = PyBytes_GET_SIZE(self.exp_objs[i])
        frame = encode_frame(OP_TEXT, b"3", mask=key)
        memcpy(self.pong3, <char*>frame, 7)
        if msgpack:
            import msgpack as _msgpack

            self.sio_connect_frame = encode_frame(
                OP_BINARY, _msgpack.packb({"type": 0, "nsp": "/"}), mask=key)
        else:
            self.sio_connect_frame = encode_frame(OP_TEXT, b"40", mask=key)

    def __dealloc__(self):
        cdef int i
        if self.conns != NULL:
            for i in range(self.n):
                if self.conns[i].fd >= 0:
                    close(self.conns[i].fd)
                free(self.conns[i].rbuf)
                free(self.conns[i].wbuf)
                free(self.conns[i].ring)
                free(self.conns[i].p.frag)
            free(self.conns)
        free(self.dirty_list)
        if self.epfd >= 0:
            close(self.epfd)
        if self.timerfd >= 0:
            close(self.timerfd)

    # -- error bookkeeping (rare path) ------------------------------------

    cdef int lose(self, int idx, int kind, str why) except -1:
        """Drop a connection after an error; the run goes on with the others."""
        cdef Conn* c = &self.conns[idx]
        if c.state == CS_DEAD:
            return 0
        if c.state < CS_READY:
            self.fatal = LoadError(f"connection {idx} to {self.host_port} failed during setup: {why}")
        self.counts[kind] += 1
        name = ERROR_KINDS[kind]
        if name not in self.first_error:
            self.first_error[name] = why
        self.drop(idx)
        return 0

    cdef void drop(self, int idx) noexcept:
        cdef Conn* c = &self.conns[idx]
        if c.fd >= 0:
            close(c.fd)   # also removes it from the epoll set
            c.fd = -1
        if c.state == CS_CLOSING:
            self.closing -= 1
        if c.state >= CS_READY and c.state != CS_DEAD:
            self.alive -= 1
        c.state = CS_DEAD
        c.wlen = 0
        c.rlen = 0

    # -- writing ------------------------------------------------------------

    cdef int set_events(self, int idx, uint32_t events) noexcept:
        cdef Conn* c = &self.conns[idx]
        cdef epoll_event ev
        if c.events == events:
            return 0
        ev.events = events
        ev.data.u32 = <uint32_t>idx
        c.events = events
        return epoll_ctl(self.epfd, EPOLL_CTL_MOD, c.fd, &ev)

    cdef int write(self, int idx, const uint8_t* data, size_t n) except -1:
        """Send now if nothing is queued; queue what the kernel did not take. 1: connection gone."""
        cdef Conn* c = &self.conns[idx]
        cdef ssize_t r = 0
        cdef size_t need
        cdef uint8_t* grown
        if c.state == CS_DEAD:
            return 1
        if c.wlen == c.woff:
            c.wlen = c.woff = 0
            r = c_send(c.fd, data, n, MSG_NOSIGNAL)
            if r == <ssize_t>n:
                return 0
            if r < 0:
                if errno != EAGAIN and errno != EINTR:
                    self.lose(idx, K_RESET, f"send failed: {strerror(errno).decode()}")
                    return 1
                r = 0
        need = c.wlen + n - <size_t>r
        if need > WBUF_LIMIT:
            self.lose(idx, K_SEND_BACKLOG, f"more than {WBUF_LIMIT} bytes queued: the server stopped reading")
            return 1
        if need > c.wcap:
            grown = <uint8_t*>realloc(c.wbuf, need * 2)
            if grown == NULL:
                raise MemoryError()
            c.wbuf = grown
            c.wcap = need * 2
        memcpy(c.wbuf + c.wlen, data + r, n - <size_t>r)
        c.wlen = need
        self.set_events(idx, EPOLLIN | EPOLLOUT)
        return 0

    cdef int on_writable(self, int idx) except -1:
        cdef Conn* c = &self.conns[idx]
        cdef ssize_t r
        cdef int err = 0
        cdef unsigned int elen = sizeof(int)
        if c.state == CS_CONNECTING:
            getsockopt(c.fd, SOL_SOCKET, SO_ERROR, &err, &elen)
            if err:
                raise LoadError(f"cannot connect to {self.host_port}: {strerror(err).decode()}")
            c.state = CS_HANDSHAKE
            self.pending -= 1
            self.set_events(idx, EPOLLIN)
            key = new_key()
            self.keys[idx] = key
            req = build_handshake_request(self.host, self.port, self.path, key)
            return self.write(idx, <const uint8_t*>PyBytes_AS_STRING(req), len(req))
        if c.wlen > c.woff:
            r = c_send(c.fd, c.wbuf + c.woff, c.wlen - c.woff, MSG_NOSIGNAL)
            if r < 0:
                if errno == EAGAIN or errno == EINTR:
                    return 0
                return self.lose(idx, K_RESET, f"send failed: {strerror(errno).decode()}")
            c.woff += r
        if c.wlen == c.woff:
            c.wlen = c.woff = 0
            self.set_events(idx, EPOLLIN)
        return 0

    cdef int send_messages(self, int idx, uint32_t count, uint64_t stamp) except -1:
        """Write ``count`` message units in as few sends as possible (write coalescing)."""
        cdef Conn* c = &self.conns[idx]
        cdef uint32_t k
        if not self.open_loop:
            for k in range(count):
                c.ring[(c.rhead + c.rcount) % c.ringcap] = stamp
                c.rcount += 1
        while count > 0:
            k = count if count < self.copies else self.copies
            if self.write(idx, self.unit, k * self.unit_len) != 0:
                return 1
            count -= k
        return 0

    # -- reading ------------------------------------------------------------

    cdef int complete(self, int idx, uint64_t now, bint ok) except -1:
        """One response: time it against the oldest outstanding send, ask for a replacement."""
        cdef Conn* c = &self.conns[idx]
        cdef uint64_t sent
        if c.rcount == 0:
            self.counts[K_UNEXPECTED] += 1
            return 0
        sent = c.ring[c.rhead]
        c.rhead = (c.rhead + 1) % c.ringcap
        c.rcount -= 1
        if not ok:
            self.counts[K_MISMATCH] += 1
        elif self.phase == PH_MEASURE:
            self.hist.record_ns(now - sent if now > sent else 0)
            self.measured += 1
            if self.measured >= self.max_messages:
                self.end_window(now)
        if not self.open_loop and (self.phase == PH_WARMUP or self.phase == PH_MEASURE):
            c.to_send += 1
        return 0

    cdef int mark_window(self, str mark) except -1:
        if self.on_window is not None:
            self.on_window(mark)
        return 0

    cdef void end_window(self, uint64_t now) noexcept:
        self.t_window_end = now
        self.cpu_end = thread_cpu_ns()
        self.phase = PH_DONE

    cdef int on_message(self, int idx, int op, uint8_t* data, size_t n, uint64_t now) except -1:
        """Returns 1 when the connection is gone."""
        cdef Conn* c = &self.conns[idx]
        cdef int m
        if op == OP_PING:
            return self.pong(idx, data, n)
        if op == OP_PONG:
            return 0
        if op == OP_CLOSE:
            if c.state == CS_CLOSING:
                self.drop(idx)
                return 1
            self.lose(idx, K_CLOSED_BY_SERVER, "the server sent a Close frame")
            return 1
        if c.state == CS_CLOSING:
            return 0
        if c.state < CS_READY:
            return self.setup_message(idx, op, PyBytes_FromStringAndSize(<char*>data, n))
        m = c.match_idx
        if op == self.exp_op[m] and n == self.exp_len[m] and memcmp(data, self.exp_data[m], n) == 0:
            if m + 1 == self.nexp:
                c.match_idx = 0
                return self.complete(idx, now, True)
            c.match_idx = m + 1
            return 0
        if m > 0:
            # the header matched but the attachment did not
            c.match_idx = 0
            return self.complete(idx, now, False)
        if not self.socketio:
            return self.complete(idx, now, False)
        return self.socketio_other(idx, op, data, n, now)

    cdef int socketio_other(self, int idx, int op, uint8_t* data, size_t n, uint64_t now) except -1:
        """Engine.IO pings, disconnects, and events that are not our echo."""
        cdef Conn* c = &self.conns[idx]
        cdef size_t i
        cdef int nattach = 0
        if op == OP_TEXT:
            if n == 1 and data[0] == b'2':
                return self.write(idx, self.pong3, 7)
            if n >= 1 and data[0] == b'1' or n >= 2 and data[0] == b'4' and data[1] == b'1':
                self.lose(idx, K_CLOSED_BY_SERVER, "the server closed the Socket.IO session")
                return 1
            if n >= 2 and data[0] == b'4' and (data[1] == b'2' or data[1] == b'5'):
                if data[1] == b'5':
                    i = 2
                    while i < n and b'0' <= data[i] <= b'9':
                        nattach = nattach * 10 + (data[i] - b'0')
                        i += 1
                    c.skip_bin = nattach
                return self.complete(idx, now, False)
            self.counts[K_UNEXPECTED] += 1
            return 0
        if c.skip_bin > 0:
            c.skip_bin -= 1
            return 0
        if self.msgpack:
            return self.complete(idx, now, False)
        self.counts[K_UNEXPECTED] += 1
        return 0

    cdef int pong(self, int idx, const uint8_t* data, size_t n) except -1:
        cdef uint8_t out[14 + 125]
        cdef size_t h = frame_header(out, 0x80 | OP_PONG, n, self.mask_key)
        memcpy(out + h, data, n)
        apply_mask(out + h, n, self.mask_key)
        return self.write(idx, out, h + n)

    cdef int setup_message(self, int idx, int op, bytes data) except -1:
        """Engine.IO open packet and namespace connect: once per connection, in Python."""
        cdef Conn* c = &self.conns[idx]
        if op == OP_TEXT and data == b"2":
            return self.write(idx, self.pong3, 7)
        if c.state == CS_SIO_OPEN:
            if op != OP_TEXT:
                raise LoadError(f"expected the Engine.IO open packet, got a binary message")
            try:
                parse_open(data.decode())
            except ProtocolError as exc:
                raise LoadError(str(exc)) from None
            c.state = CS_SIO_CONNECT
            return self.write(idx, <const uint8_t*>PyBytes_AS_STRING(self.sio_connect_frame),
                              len(self.sio_connect_frame))
        if self.msgpack and op == OP_BINARY:
            import msgpack as _msgpack

            packet = _msgpack.unpackb(data)
            ptype = packet.get("type") if isinstance(packet, dict) else None
            if ptype == 0:
                return self.now_ready(idx)
            if ptype == 4:
                raise LoadError(f"the server refused the namespace connect: {packet.get('data')}")
        elif op == OP_TEXT and data.startswith(b"40"):
            return self.now_ready(idx)
        elif op == OP_TEXT and data.startswith(b"44"):
            raise LoadError(f"the server refused the namespace connect: {data[2:].decode()}")
        raise LoadError(f"unexpected message during the Socket.IO connect: {data[:60]!r}")

    cdef int now_ready(self, int idx) except -1:
        cdef Conn* c = &self.conns[idx]
        c.state = CS_READY
        self.ready += 1
        self.alive += 1
        c.ringcap = self.in_flight if not self.open_loop else 16
        c.ring = <uint64_t*>calloc(c.ringcap, sizeof(uint64_t))
        if c.ring == NULL:
            raise MemoryError()
        return 0

    cdef int handshake(self, int idx) except -1:
        cdef Conn* c = &self.conns[idx]
        cdef size_t used
        if memmem(c.rbuf, c.rlen, b"\r\n\r\n", 4) == NULL:
            if c.rlen > 65536:
                raise LoadError("handshake response header block exceeds 65536 bytes")
            return 0
        try:
            used = parse_handshake_response(PyBytes_FromStringAndSize(<char*>c.rbuf, c.rlen),
                                            self.keys[idx])
        except HandshakeError as exc:
            raise LoadError(f"{self.host_port}{self.path}: {exc}") from None
        memmove(c.rbuf, c.rbuf + used, c.rlen - used)
        c.rlen -= used
        if self.socketio:
            c.state = CS_SIO_OPEN
        else:
            self.now_ready(idx)
        return 1

    cdef int on_readable(self, int idx) except -1:
        cdef Conn* c = &self.conns[idx]
        cdef uint8_t* buf
        cdef size_t blen, pos = 0, dlen, left
        cdef ssize_t r
        cdef int op, rc
        cdef uint8_t* data
        cdef uint8_t* grown
        cdef uint64_t now
        if c.rlen == 0 and c.state >= CS_SIO_OPEN:
            r = c_recv(c.fd, self.scratch, SCRATCH, 0)
            buf = self.scratch
            blen = r if r > 0 else 0
        else:
            if c.rcap - c.rlen < 65536:
                grown = <uint8_t*>realloc(c.rbuf, c.rcap * 2 + 65536)
                if grown == NULL:
                    raise MemoryError()
                c.rbuf = grown
                c.rcap = c.rcap * 2 + 65536
            r = c_recv(c.fd, c.rbuf + c.rlen, c.rcap - c.rlen, 0)
            buf = c.rbuf
            blen = c.rlen + (r if r > 0 else 0)
        if r <= 0:
            if r < 0 and (errno == EAGAIN or errno == EINTR):
                return 0
            if c.state == CS_CLOSING:
                self.drop(idx)
            elif r == 0:
                self.lose(idx, K_CLOSED_BY_SERVER, "the server closed the connection")
            else:
                self.lose(idx, K_RESET, f"recv failed: {strerror(errno).decode()}")
            return 0
        now = now_ns()
        if c.state == CS_HANDSHAKE:
            c.rlen = blen
            if self.handshake(idx) == 0:
                return 0
            buf = c.rbuf
            blen = c.rlen
        while True:
            rc = ws_next(&c.p, buf, blen, &pos, &op, &data, &dlen)
            if rc == 0:
                break
            if rc < 0:
                self.lose(idx, K_PROTOCOL, f"protocol error: {parse_error_text(&c.p)}")
                return 0
            if self.on_message(idx, op, data, dlen, now) != 0 or c.state == CS_DEAD:
                return 0
        left = blen - pos
        if buf == self.scratch:
            if left:
                if left > c.rcap:
                    grown = <uint8_t*>realloc(c.rbuf, left + 65536)
                    if grown == NULL:
                        raise MemoryError()
                    c.rbuf = grown
                    c.rcap = left + 65536
                memcpy(c.rbuf, buf + pos, left)
        elif pos:
            memmove(c.rbuf, c.rbuf + pos, left)
        c.rlen = left
        if c.to_send:
            rc = c.to_send
            c.to_send = 0
            self.send_messages(idx, rc, now)
        return 0

    # -- connecting -----------------------------------------------------------

    cdef int start_connect(self, int idx) except -1:
        cdef Conn* c = &self.conns[idx]
        cdef epoll_event ev
        cdef int one = 1
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
        if epoll_ctl(self.epfd, EPOLL_CTL_ADD, c.fd, &ev) < 0:
            raise OSError(errno, "epoll_ctl failed")
        self.pending += 1
        return 0

    cdef int dispatch(self, epoll_event* ev) except -1:
        cdef int idx = <int>ev.data.u32
        cdef Conn* c
        if ev.data.u32 == TIMER_TOKEN:
            return self.on_timer()
        c = &self.conns[idx]
        if c.state == CS_DEAD:
            return 0
        if ev.events & (EPOLLOUT | EPOLLERR) and (c.state == CS_CONNECTING or c.wlen > c.woff):
            self.on_writable(idx)
            if c.state == CS_DEAD:
                return 0
        if ev.events & (EPOLLIN | EPOLLHUP | EPOLLERR) and c.state != CS_CONNECTING:
            self.on_readable(idx)
        return 0

    # -- open loop -----------------------------------------------------------

    cdef int arm_timer(self, uint64_t at) noexcept:
        cdef itimerspec spec
        spec.it_interval.tv_sec = 0
        spec.it_interval.tv_nsec = 0
        spec.it_value.tv_sec = at // 1000000000ULL
        spec.it_value.tv_nsec = at % 1000000000ULL
        return timerfd_settime(self.timerfd, TFD_TIMER_ABSTIME, &spec, NULL)

    cdef int on_timer(self) except -1:
        """Queue every message whose intended send time has come, then send them coalesced."""
        cdef uint64_t expirations, now
        cdef int idx, j
        cdef Conn* c
        cdef uint64_t* grown
        cdef uint32_t k
        read(self.timerfd, &expirations, 8)
        if self.phase != PH_WARMUP and self.phase != PH_MEASURE:
            return 0
        now = now_ns()
        self.ndirty = 0
        while self.next_send_ns <= now and self.alive > 0:
            while True:
                idx = self.rr % self.n
                self.rr += 1
                if self.conns[idx].state == CS_READY:
                    break
            c = &self.conns[idx]
            if c.rcount == c.ringcap:
                if c.ringcap >= RING_LIMIT:
                    self.counts[K_BACKLOG_FULL] += 1
                    self.next_send_ns += self.interval_ns
                    continue
                grown = <uint64_t*>calloc(c.ringcap * 2, sizeof(uint64_t))
                if grown == NULL:
                    raise MemoryError()
                for k in range(c.rcount):
                    grown[k] = c.ring[(c.rhead + k) % c.ringcap]
                free(c.ring)
                c.ring = grown
                c.rhead = 0
                c.ringcap *= 2
            c.ring[(c.rhead + c.rcount) % c.ringcap] = self.next_send_ns
            c.rcount += 1
            c.to_send += 1
            if not c.dirty:
                c.dirty = 1
                self.dirty_list[self.ndirty] = idx
                self.ndirty += 1
            self.next_send_ns += self.interval_ns
        for j in range(self.ndirty):
            idx = self.dirty_list[j]
            c = &self.conns[idx]
            c.dirty = 0
            if c.state == CS_READY and c.to_send:
                k = c.to_send
                c.to_send = 0
                self.send_messages(idx, k, 0)
        self.arm_timer(self.next_send_ns)
        return 0

    # -- the run ------------------------------------------------------------

    cdef int wait_once(self, epoll_event* events, int timeout_ms) except -1:
        cdef int nev, i
        # Other Python threads (an in-process test server) may run while we wait.
        with nogil:
            nev = epoll_wait(self.epfd, events, MAX_EVENTS, timeout_ms)
        if nev < 0:
            if errno == EINTR:
                return 0
            raise OSError(errno, "epoll_wait failed")
        for i in range(nev):
            self.dispatch(&events[i])
            if self.fatal is not None:
                raise self.fatal
        return nev

    def run(self, *, double warmup, double duration, max_messages, double connect_timeout,
            double close_timeout = 2.0, on_window = None) -> dict:
        """Connect everything, warm up, measure, close; return the window's figures.

        ``on_window`` (optional) is called with "start" and "end" at the edges of
        the measurement window, so a caller can read the server's CPU clock for
        exactly that window.
        """
        cdef epoll_event events[MAX_EVENTS]
        cdef epoll_event ev
        cdef uint64_t now, deadline, t_load, t_end, t_next
        cdef int i, timeout_ms
        cdef uint32_t k
        self.max_messages = <uint64_t>max_messages if max_messages is not None else 0xFFFFFFFFFFFFFFFFULL
        self.epfd = epoll_create1(EPOLL_CLOEXEC)
        if self.epfd < 0:
            raise OSError(errno, "epoll_create1 failed")
        # Connect and set up every connection before the load starts.
        self.phase = PH_CONNECT
        deadline = now_ns() + <uint64_t>(connect_timeout * 1e9)
        while self.ready < self.n:
            while self.pending < MAX_PENDING_CONNECTS and self.next_connect < self.n:
                self.start_connect(self.next_connect)
                self.next_connect += 1
            now = now_ns()
            if now >= deadline:
                raise LoadError(
                    f"{self.n - self.ready} of {self.n} connections to {self.host_port} were "
                    f"not ready after {connect_timeout:g} s"
                )
            self.wait_once(events, min(50, <int>((deadline - now) // 1000000) + 1))
            if self.alive < self.ready:
                detail = "; ".join(f"{k}: {v}" for k, v in self.first_error.items())
                raise LoadError(f"a connection to {self.host_port} was lost before the load started ({detail})")
        # The load: closed loop primes every connection with in_flight messages.
        t_load = now_ns()
        self.t_window_start = t_load + <uint64_t>(warmup * 1e9)
        t_end = self.t_window_start + <uint64_t>(duration * 1e9)
        self.phase = PH_WARMUP
        self.on_window = on_window
        if warmup <= 0:
            self.phase = PH_MEASURE
            self.mark_window("start")
            self.cpu_start = thread_cpu_ns()
        if self.open_loop:
            self.timerfd = timerfd_create(CLOCK_MONOTONIC_C, TFD_NONBLOCK | TFD_CLOEXEC)
            ev.events = EPOLLIN
            ev.data.u32 = TIMER_TOKEN
            epoll_ctl(self.epfd, EPOLL_CTL_ADD, self.timerfd, &ev)
            self.next_send_ns = t_load
            self.arm_timer(t_load)
        else:
            for i in range(self.n):
                if self.conns[i].state == CS_READY:
                    self.send_messages(i, self.in_flight, t_load)
        while self.phase != PH_DONE:
            now = now_ns()
            if self.phase == PH_WARMUP and now >= self.t_window_start:
                self.phase = PH_MEASURE
                self.mark_window("start")
                now = now_ns()
                self.t_window_start = now
                t_end = now + <uint64_t>(duration * 1e9)
                self.cpu_start = thread_cpu_ns()
            if self.phase == PH_MEASURE and now >= t_end:
                self.end_window(now)
                break
            if self.alive == 0:
                break
            t_next = self.t_window_start if self.phase == PH_WARMUP else t_end
            timeout_ms = <int>((t_next - now) // 1000000) + 1
            self.wait_once(events, timeout_ms if timeout_ms < 1000 else 1000)
        ended_early = self.phase != PH_DONE
        if ended_early:
            self.end_window(now_ns())
        self.mark_window("end")
        self.close_all(close_timeout, events)
        errors = {ERROR_KINDS[i]: int(self.counts[i]) for i in range(K_COUNT) if self.counts[i]}
        if ended_early:
            detail = "; ".join(f"{k}: {v}" for k, v in self.first_error.items())
            when = "before any message" if self.measured == 0 else f"after {self.measured} messages"
            raise LoadError(f"every connection to {self.host_port} was lost {when} ({detail})")
        elapsed = (self.t_window_end - self.t_window_start) / 1e9 if self.cpu_start else 0.0
        return {
            "messages": int(self.measured),
            "elapsed_s": elapsed,
            "cpu_s": (self.cpu_end - self.cpu_start) / 1e9,
            "errors": errors,
            "first_error": dict(self.first_error),
        }

    cdef int close_all(self, double timeout, epoll_event* events) except -1:
        """Send Close to every live connection and wait, bounded, for the server's Close."""
        cdef int i
        cdef Conn* c
        cdef uint64_t deadline
        cdef uint64_t outstanding
        # Let the echoes still in flight arrive first, so no server logs a send on a closed socket.
        deadline = now_ns() + <uint64_t>(timeout * 1e9 / 2)
        while now_ns() < deadline:
            outstanding = 0
            for i in range(self.n):
                if self.conns[i].state == CS_READY:
                    outstanding += self.conns[i].rcount + self.conns[i].match_idx
            if outstanding == 0:
                break
            self.wait_once(events, 20)
        close_frame = encode_frame(OP_CLOSE, close_payload(1000), mask=self.key_obj)
        if self.socketio and self.msgpack:
            import msgpack as _msgpack

            disconnect = _msgpack.packb({"type": 1, "nsp": "/"})
            close_frame = encode_frame(OP_BINARY, disconnect, mask=self.key_obj) + close_frame
        elif self.socketio:
            close_frame = encode_frame(OP_TEXT, b"41", mask=self.key_obj) + close_frame
        for i in range(self.n):
            c = &self.conns[i]
            if c.state == CS_READY:
                c.to_send = 0
                if self.write(i, <const uint8_t*>PyBytes_AS_STRING(close_frame), len(close_frame)) == 0:
                    c.state = CS_CLOSING
                    self.closing += 1
        deadline = now_ns() + <uint64_t>(timeout * 1e9)
        while self.closing > 0 and now_ns() < deadline:
            self.wait_once(events, 20)
        for i in range(self.n):
            c = &self.conns[i]
            if c.state == CS_CLOSING:
                self.counts[K_CLOSE_TIMEOUT] += 1
            if c.fd >= 0:
                close(c.fd)
                c.fd = -1
            c.state = CS_DEAD
        return 0


# ---------------------------------------------------------------------------
# The cheap echo server (for client-bench) and the kernel floor
# ---------------------------------------------------------------------------

cdef struct EchoConn:
    int fd
    int upgraded
    int closing
    uint8_t* rbuf
    size_t rlen
    size_t rcap
    uint8_t* wbuf
    size_t wlen
    size_t wcap
    WsParser p


cdef class _EchoServer:
    cdef EchoConn* conns
    cdef int cap
    cdef int epfd
    cdef uint8_t* out
    cdef size_t out_cap
    cdef uint64_t messages

    def __cinit__(self, int cap):
        self.cap = cap
        self.conns = <EchoConn*>calloc(cap, sizeof(EchoConn))
        self.out_cap = SCRATCH * 2
        self.out = <uint8_t*>calloc(self.out_cap, 1)
        self.epfd = -1
        if self.conns == NULL or self.out == NULL:
            raise MemoryError()

    def __dealloc__(self):
        cdef int i
        for i in range(self.cap):
            if self.conns[i].fd > 0:
                close(self.conns[i].fd)
            free(self.conns[i].rbuf)
            free(self.conns[i].wbuf)
            free(self.conns[i].p.frag)
        free(self.conns)
        free(self.out)
        if self.epfd >= 0:
            close(self.epfd)

    cdef void drop(self, int fd) noexcept:
        cdef EchoConn* c = &self.conns[fd]
        close(fd)
        c.fd = 0
        c.rlen = c.wlen = 0
        c.upgraded = c.closing = 0
        c.p.frag_op = -1
        c.p.frag_len = 0

    cdef int flush(self, int fd, const uint8_t* data, size_t n) noexcept:
        cdef EchoConn* c = &self.conns[fd]
        cdef ssize_t r = 0
        cdef epoll_event ev
        cdef uint8_t* grown
        if c.wlen == 0:
            r = c_send(fd, data, n, MSG_NOSIGNAL)
            if r < 0:
                if errno != EAGAIN:
                    self.drop(fd)
                    return -1
                r = 0
            if <size_t>r == n:
                return 0
        if c.wlen + n - r > c.wcap:
            grown = <uint8_t*>realloc(c.wbuf, (c.wlen + n - r) * 2)
            if grown == NULL:
                self.drop(fd)
                return -1
            c.wbuf = grown
            c.wcap = (c.wlen + n - r) * 2
        memcpy(c.wbuf + c.wlen, data + r, n - r)
        c.wlen += n - r
        ev.events = EPOLLIN | EPOLLOUT
        ev.data.fd = fd
        epoll_ctl(self.epfd, EPOLL_CTL_MOD, fd, &ev)
        return 0

    cdef int echo(self, int fd) except -1:
        """Read what is there, echo every complete message unmasked in one send."""
        cdef EchoConn* c = &self.conns[fd]
        cdef ssize_t r
        cdef size_t pos = 0, dlen, o = 0, h, end
        cdef int op, rc = 0
        cdef uint8_t* data
        cdef uint8_t* grown
        if c.rcap - c.rlen < 65536:
            grown = <uint8_t*>realloc(c.rbuf, c.rcap * 2 + 65536)
            if grown == NULL:
                raise MemoryError()
            c.rbuf = grown
            c.rcap = c.rcap * 2 + 65536
        r = c_recv(fd, c.rbuf + c.rlen, c.rcap - c.rlen, 0)
        if r <= 0:
            if r < 0 and (errno == EAGAIN or errno == EINTR):
                return 0
            self.drop(fd)
            return 0
        c.rlen += r
        if not c.upgraded:
            if memmem(c.rbuf, c.rlen, b"\r\n\r\n", 4) == NULL:
                if c.rlen > 65536:
                    self.drop(fd)
                return 0
            head = PyBytes_FromStringAndSize(<char*>c.rbuf, c.rlen)
            end = <size_t>(head.find(b"\r\n\r\n") + 4)
            key = None
            for line in head[:end].split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"sec-websocket-key":
                    key = value.strip().decode("latin-1")
            if key is None:
                resp = b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n"
                self.flush(fd, <const uint8_t*><char*>resp, len(resp))
                self.drop(fd)
                return 0
            resp = (
                "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Accept: {accept_key(key)}\r\n\r\n"
            ).encode()
            if self.flush(fd, <const uint8_t*><char*>resp, len(resp)) < 0:
                return 0
            c.upgraded = 1
            memmove(c.rbuf, c.rbuf + end, c.rlen - end)
            c.rlen -= end
        while True:
            rc = ws_next(&c.p, c.rbuf, c.rlen, &pos, &op, &data, &dlen)
            if rc <= 0:
                break
            if op == OP_PONG:
                continue
            if o + dlen + 14 > self.out_cap:
                grown = <uint8_t*>realloc(self.out, (o + dlen + 14) * 2)
                if grown == NULL:
                    raise MemoryError()
                self.out = grown
                self.out_cap = (o + dlen + 14) * 2
            h = frame_header(self.out + o, 0x80 | (OP_PONG if op == OP_PING else op), dlen, NULL)
            memcpy(self.out + o + h, data, dlen)
            o += h + dlen
            self.messages += op < 8
            if op == OP_CLOSE:
                c.closing = 1
                break
        if o and self.flush(fd, self.out, o) < 0:
            return 0
        if rc < 0 or c.closing:
            self.drop(fd)
            return 0
        memmove(c.rbuf, c.rbuf + pos, c.rlen - pos)
        c.rlen -= pos
        return 0

    def serve(self, int listen_fd, int stop_fd, double max_seconds) -> int:
        """Serve until ``stop_fd`` is readable or at EOF, or ``max_seconds`` have passed."""
        cdef epoll_event events[MAX_EVENTS]
        cdef epoll_event ev
        cdef int nev, i, fd, one = 1
        cdef uint64_t deadline = now_ns() + <uint64_t>(max_seconds * 1e9)
        cdef ssize_t r
        cdef EchoConn* c
        self.epfd = epoll_create1(EPOLL_CLOEXEC)
        ev.events = EPOLLIN
        ev.data.fd = listen_fd
        epoll_ctl(self.epfd, EPOLL_CTL_ADD, listen_fd, &ev)
        ev.data.fd = stop_fd
        epoll_ctl(self.epfd, EPOLL_CTL_ADD, stop_fd, &ev)
        while now_ns() < deadline:
            nev = epoll_wait(self.epfd, events, MAX_EVENTS, 200)
            for i in range(nev):
                fd = events[i].data.fd
                if fd == stop_fd:
                    return self.messages
                if fd == listen_fd:
                    while True:
                        fd = accept4(listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC)
                        if fd < 0:
                            break
                        if fd >= self.cap:
                            close(fd)
                            continue
                        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(int))
                        self.conns[fd].fd = fd
                        self.conns[fd].p.frag_op = -1
                        self.conns[fd].p.expect_masked = 1
                        self.conns[fd].p.max_size = 64 * 1024 * 1024
                        ev.events = EPOLLIN
                        ev.data.fd = fd
                        epoll_ctl(self.epfd, EPOLL_CTL_ADD, fd, &ev)
                    continue
                c = &self.conns[fd]
                if c.fd <= 0:
                    continue
                if events[i].events & EPOLLOUT and c.wlen:
                    r = c_send(fd, c.wbuf, c.wlen, MSG_NOSIGNAL)
                    if r > 0:
                        memmove(c.wbuf, c.wbuf + r, c.wlen - r)
                        c.wlen -= r
                    elif errno != EAGAIN:
                        self.drop(fd)
                        continue
                    if c.wlen == 0:
                        ev.events = EPOLLIN
                        ev.data.fd = fd
                        epoll_ctl(self.epfd, EPOLL_CTL_MOD, fd, &ev)
                if events[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR):
                    self.echo(fd)
        return self.messages


def serve_echo(int listen_fd, int stop_fd, double max_seconds, int max_fds = 65536) -> int:
    """Echo WebSocket messages on ``listen_fd`` (non-blocking, listening) until told to stop.

    The server side of client-bench: it unmasks in C and echoes each message as
    one unmasked frame, every reply of a read in one send, so that its own cost
    stays near the kernel floor. It stops when ``stop_fd`` becomes readable
    (the parent closed the pipe or died) or after ``max_seconds``.
    Returns the number of data messages echoed.
    """
    return _EchoServer(max_fds).serve(listen_fd, stop_fd, max_seconds)


def measure_floor(int payload_len=128, int iterations=200000, double max_seconds=2.0) -> dict:
    """CPU cost of one loopback TCP ``send`` of a small frame plus the ``recv`` that reads it.

    "The floor" is what the kernel charges for the two syscalls every unbatched
    message pays on each side of an echo: the sender's ``send`` (which on
    loopback also runs the TCP receive path into the peer's socket) and the
    receiver's ``recv``. It is measured on one thread over a connected pair of
    127.0.0.1 TCP sockets with TCP_NODELAY: send ``payload_len`` bytes plus a
    2-byte frame header, then recv them, repeated; CPU time (thread CPU clock)
    divided by the pairs done. No sleep or wakeup is included, so it is a true
    lower bound: a client that needs one send and one recv per message cannot
    go below it except by putting several messages in one call.
    """
    cdef uint8_t* buf
    cdef uint8_t* rb
    cdef size_t n = payload_len + 2
    cdef int a, b, i, done = 0
    cdef ssize_t r, got
    cdef uint64_t c0, c1, t0, deadline
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    left = socket.create_connection(listener.getsockname())
    right, _ = listener.accept()
    listener.close()
    try:
        for s in (left, right):
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        a = left.fileno()
        b = right.fileno()
        buf = <uint8_t*>calloc(n, 1)
        rb = <uint8_t*>calloc(n, 1)
        if buf == NULL or rb == NULL:
            raise MemoryError()
        frame_header(buf, 0x80 | OP_TEXT, payload_len, NULL)
        try:
            with nogil:
                for i in range(2000):
                    c_send(a, buf, n, 0)
                    got = 0
                    while got < <ssize_t>n:
                        r = c_recv(b, rb + got, n - got, 0)
                        if r <= 0:
                            break
                        got += r
                t0 = now_ns()
                deadline = t0 + <uint64_t>(max_seconds * 1e9)
                c0 = thread_cpu_ns()
                while done < iterations:
                    for i in range(256):
                        c_send(a, buf, n, 0)
                        got = 0
                        while got < <ssize_t>n:
                            r = c_recv(b, rb + got, n - got, 0)
                            if r <= 0:
                                break
                            got += r
                    done += 256
                    if now_ns() >= deadline:
                        break
                c1 = thread_cpu_ns()
                t0 = now_ns() - t0
        finally:
            free(buf)
            free(rb)
    finally:
        left.close()
        right.close()
    return {
        "us_per_pair": (c1 - c0) / 1000.0 / done,
        "pairs": done,
        "cpu_s": (c1 - c0) / 1e9,
        "wall_s": t0 / 1e9,
        "payload_bytes": payload_len,
    }
