# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""The fast-path load client: one epoll loop in C driving 1..10,000 WebSocket connections.

The client must be so cheap that a scenario measures the server, never itself.
Per message it does what the kernel makes unavoidable (one ``send`` and one
``recv``, shared by every message that fits in them) plus a few hundred
nanoseconds of C: frame parse, a ``memcmp`` against the expected echo, one
clock read per ``recv`` and a histogram increment. No Python object is made per
message; Python runs only at setup (sockets, handshakes, the Engine.IO open
packet, the namespace connect), for rare events (errors) and to check for
signals every SIGNAL_CHECK_MS. Every protocol byte comes from wsprof.protocol.
"""
from cpython.bytes cimport PyBytes_FromStringAndSize, PyBytes_AS_STRING, PyBytes_GET_SIZE
from cpython.exc cimport PyErr_CheckSignals
from libc.errno cimport errno, EAGAIN, EINTR, EINPROGRESS
from libc.stdint cimport uint8_t, uint32_t, uint64_t
from libc.stdlib cimport calloc, free
from libc.string cimport memcmp, memcpy, strerror
from posix.time cimport CLOCK_MONOTONIC
from posix.unistd cimport close, read

from wsprof._buffer cimport buf_append, buf_consume, buf_free, buf_reserve
from wsprof._clock cimport now_ns, thread_cpu_ns
from wsprof._frames cimport (
    OP_CLOSE, OP_PING, OP_PONG, OP_TEXT, MAX_CONTROL_PAYLOAD, MAX_HEADER,
    apply_mask, frame_header, parser_init, ws_next,
)
from wsprof._conn cimport (
    CS_CONNECTING, CS_CLOSING, CS_DEAD, CS_HANDSHAKE, CS_READY, CS_SIO_CONNECT, CS_SIO_OPEN,
    SENT, SEND_BACKLOG, SEND_NOMEM, WBUF_LIMIT, conn_flush, conn_send, ring_pop, ring_push,
    set_events, starts_with,
)
from wsprof._histogram cimport Histogram
from wsprof._posix cimport (
    c_recv, epoll_create1, epoll_ctl, epoll_event, epoll_wait, getsockopt, memmem, timer_at,
    timerfd_create, EPOLL_CLOEXEC, EPOLL_CTL_ADD, EPOLLERR, EPOLLHUP, EPOLLIN, EPOLLOUT,
    MAX_EVENTS, SIGNAL_CHECK_MS, SO_ERROR, SOL_SOCKET, TFD_CLOEXEC, TFD_NONBLOCK,
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
    frame_error,
    new_key,
    parse_handshake_response,
)

ERROR_KINDS = (
    "closed_by_server", "connection_reset", "protocol_error", "echo_mismatch",
    "unexpected_message", "send_backlog", "schedule_backlog", "close_timeout",
)

cdef uint32_t TIMER_TOKEN = 0xFFFFFFFF


cdef class LoadRun:
    """One process's share of a load: every connection, one epoll loop, one histogram."""

    def __cinit__(self):
        self.epfd = -1
        self.timerfd = -1

    def __init__(self, *, str host, int port, str path, int connections, bint socketio,
                 list send_frames, list expect_frames, int in_flight, double rate,
                 double max_message_size, Histogram histogram, bint msgpack=False) -> None:
        cdef int i
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
        self.kept = []
        self.keys = [None] * connections
        self.conns = <Conn*>calloc(connections, sizeof(Conn))
        self.dirty_list = <int*>calloc(connections, sizeof(int))
        if self.conns == NULL or self.dirty_list == NULL:
            raise MemoryError()
        for i in range(connections):
            self.conns[i].fd = -1
            parser_init(&self.conns[i].p, self.max_size, False)
        # Masking: one random key per run, applied once to the pre-built frames.
        # The server unmasks every byte whatever the key is (XOR cost does not
        # depend on its value), so this leaves the server's cost unchanged; the
        # unpredictable-per-frame rule guards proxies against attacker-chosen
        # payloads, which a load generator sending its own fixed data is not.
        key = os.urandom(4)
        while key == b"\0\0\0\0":
            key = os.urandom(4)
        memcpy(self.mask_key, <char*>key, 4)
        one = b"".join(encode_frame(op, data, mask=key) for op, data in send_frames)
        self.copies = max(in_flight, 64 if self.open_loop else 1)
        self.unit = self.hold(one * self.copies)
        self.unit_len = len(one)
        self.nexp = len(expect_frames)
        if not 1 <= self.nexp <= 2:
            raise ValueError("expect_frames must hold one or two frames")
        for i in range(self.nexp):
            self.exp_op[i] = expect_frames[i][0]
            self.exp[i] = self.hold(bytes(expect_frames[i][1]))
        goodbye = encode_frame(OP_CLOSE, close_payload(1000), mask=key)
        if socketio:
            session = session_bytes(msgpack)
            self.sio_connect = self.hold(encode_frame(*session.connect, mask=key))
            self.sio_ping = self.hold(session.ping)
            self.sio_pong = self.hold(encode_frame(OP_TEXT, session.pong, mask=key))
            if len(session.ended) > MAX_PREFIXES:
                raise ValueError("too many session-ending prefixes")
            self.nended = len(session.ended)
            for i in range(self.nended):
                self.sio_ended[i] = self.hold(session.ended[i])
            self.sio_event = self.hold(session.event)
            self.sio_binary_event = self.hold(session.binary_event)
            goodbye = encode_frame(*session.disconnect, mask=key) + goodbye
        self.goodbye = self.hold(goodbye)

    def __dealloc__(self):
        cdef int i
        if self.conns != NULL:
            for i in range(self.n):
                if self.conns[i].fd >= 0:
                    close(self.conns[i].fd)
                buf_free(&self.conns[i].rbuf)
                buf_free(&self.conns[i].wbuf)
                buf_free(&self.conns[i].p.frag)
                free(self.conns[i].ring)
            free(self.conns)
        free(self.dirty_list)
        if self.epfd >= 0:
            close(self.epfd)
        if self.timerfd >= 0:
            close(self.timerfd)

    cdef Bytes hold(self, bytes data):
        """A C view of ``data``, kept alive as long as the run."""
        cdef Bytes view
        self.kept.append(data)
        view.data = <const uint8_t*>PyBytes_AS_STRING(data)
        view.len = PyBytes_GET_SIZE(data)
        return view

    # -- error bookkeeping (rare path) ------------------------------------

    cdef int lose(self, int idx, int kind, str why) except -1:
        """Drop a connection after an error; the run goes on with the others."""
        cdef Conn* c = &self.conns[idx]
        if c.state == CS_DEAD:
            return 0
        if c.state < CS_READY:
            self.fatal = LoadError(
                f"connection {idx} to {self.host_port} failed during setup: {why}")
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
        c.wbuf.len = c.woff = 0
        c.rbuf.len = 0

    # -- writing ------------------------------------------------------------

    cdef int write(self, int idx, const uint8_t* data, size_t n) except -1:
        """Send or queue ``data``; 1 when the connection is gone."""
        cdef Conn* c = &self.conns[idx]
        if c.state == CS_DEAD:
            return 1
        if self.sent(idx, conn_send(c, data, n)) != 0:
            return 1
        if c.wbuf.len > c.woff:
            set_events(self.epfd, c, idx, EPOLLIN | EPOLLOUT)
        return 0

    cdef int sent(self, int idx, SendResult result) except -1:
        """Account for a failed send (the connection is lost); 1 when it failed."""
        if result == SENT:
            return 0
        if result == SEND_NOMEM:
            raise MemoryError()
        if result == SEND_BACKLOG:
            self.lose(idx, K_SEND_BACKLOG,
                      f"more than {WBUF_LIMIT} bytes queued: the server stopped reading")
        else:
            self.lose(idx, K_RESET, f"send failed: {strerror(errno).decode()}")
        return 1

    cdef int on_writable(self, int idx) except -1:
        cdef Conn* c = &self.conns[idx]
        cdef int err = 0
        cdef unsigned int elen = sizeof(int)
        if c.state == CS_CONNECTING:
            getsockopt(c.fd, SOL_SOCKET, SO_ERROR, &err, &elen)
            if err:
                raise LoadError(f"cannot connect to {self.host_port}: {strerror(err).decode()}")
            c.state = CS_HANDSHAKE
            self.pending -= 1
            set_events(self.epfd, c, idx, EPOLLIN)
            key = new_key()
            self.keys[idx] = key
            req = build_handshake_request(self.host, self.port, self.path, key)
            return self.write(idx, <const uint8_t*>PyBytes_AS_STRING(req), len(req))
        if self.sent(idx, conn_flush(c)) == 0 and c.wbuf.len == 0:
            set_events(self.epfd, c, idx, EPOLLIN)
        return 0

    cdef int send_messages(self, int idx, uint32_t count, uint64_t stamp) except -1:
        """Write ``count`` message units in as few sends as possible (write coalescing)."""
        cdef Conn* c = &self.conns[idx]
        cdef uint32_t k, _j
        if not self.open_loop:
            for _j in range(count):
                ring_push(c, stamp)   # never full: the ring holds in_flight stamps
        while count > 0:
            k = count if count < self.copies else self.copies
            if self.write(idx, self.unit.data, k * self.unit_len) != 0:
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
        sent = ring_pop(c)
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
        if op == self.exp_op[m] and n == self.exp[m].len and memcmp(data, self.exp[m].data, n) == 0:
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

    cdef int socketio_other(self, int idx, int op, uint8_t* data, size_t n,
                            uint64_t now) except -1:
        """Engine.IO pings, session ends, and events that are not our echo."""
        cdef Conn* c = &self.conns[idx]
        cdef size_t i
        cdef int k, nattach = 0
        if op == OP_TEXT:
            if n == self.sio_ping.len and memcmp(data, self.sio_ping.data, n) == 0:
                return self.write(idx, self.sio_pong.data, self.sio_pong.len)
            for k in range(self.nended):
                if starts_with(data, n, self.sio_ended[k]):
                    self.lose(idx, K_CLOSED_BY_SERVER, "the server closed the Socket.IO session")
                    return 1
            if starts_with(data, n, self.sio_binary_event):
                i = self.sio_binary_event.len
                while i < n and 48 <= data[i] <= 57:   # ASCII digits: the attachment count
                    nattach = nattach * 10 + (data[i] - 48)
                    i += 1
                c.skip_bin = nattach
                return self.complete(idx, now, False)
            if starts_with(data, n, self.sio_event):
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
        cdef uint8_t out[MAX_HEADER + MAX_CONTROL_PAYLOAD]
        cdef size_t h = frame_header(out, 0x80 | OP_PONG, n, self.mask_key)
        memcpy(out + h, data, n)
        apply_mask(out + h, n, self.mask_key)
        return self.write(idx, out, h + n)

    cdef int setup_message(self, int idx, int op, bytes data) except -1:
        """Engine.IO open packet and namespace connect: once per connection, in Python."""
        cdef Conn* c = &self.conns[idx]
        cdef size_t n = PyBytes_GET_SIZE(data)
        if op == OP_TEXT and n == self.sio_ping.len and starts_with(
                <const uint8_t*>PyBytes_AS_STRING(data), n, self.sio_ping):
            return self.write(idx, self.sio_pong.data, self.sio_pong.len)
        message = data.decode() if op == OP_TEXT else data
        try:
            if c.state == CS_SIO_CONNECT:
                check_connect_reply(message, msgpack=self.msgpack)
                return self.now_ready(idx)
            if op != OP_TEXT:
                raise LoadError("expected the Engine.IO open packet, got a binary message")
            parse_open(message)
        except (ProtocolError, UnicodeDecodeError) as exc:
            raise LoadError(str(exc)) from None
        c.state = CS_SIO_CONNECT
        return self.write(idx, self.sio_connect.data, self.sio_connect.len)

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
        if memmem(c.rbuf.data, c.rbuf.len, b"\r\n\r\n", 4) == NULL:
            if c.rbuf.len > 65536:
                raise LoadError("handshake response header block exceeds 65536 bytes")
            return 0
        try:
            used = parse_handshake_response(
                PyBytes_FromStringAndSize(<char*>c.rbuf.data, c.rbuf.len), self.keys[idx])
        except HandshakeError as exc:
            raise LoadError(f"{self.host_port}{self.path}: {exc}") from None
        buf_consume(&c.rbuf, used)
        if self.socketio:
            c.state = CS_SIO_OPEN
        else:
            self.now_ready(idx)
        return 1

    cdef int on_readable(self, int idx) except -1:
        cdef Conn* c = &self.conns[idx]
        cdef uint8_t* buf
        cdef size_t blen, pos = 0, dlen
        cdef ssize_t r
        cdef int op, rc
        cdef uint8_t* data
        cdef uint64_t now
        if c.rbuf.len == 0 and c.state >= CS_SIO_OPEN:
            # nothing left over: read into the shared scratch and copy only a partial frame
            r = c_recv(c.fd, self.scratch, SCRATCH, 0)
            buf = self.scratch
            blen = r if r > 0 else 0
        else:
            if buf_reserve(&c.rbuf, READ_CHUNK) < 0:
                raise MemoryError()
            r = c_recv(c.fd, c.rbuf.data + c.rbuf.len, c.rbuf.cap - c.rbuf.len, 0)
            if r > 0:
                c.rbuf.len += r
            buf = c.rbuf.data
            blen = c.rbuf.len
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
            if self.handshake(idx) == 0:
                return 0
            buf = c.rbuf.data
            blen = c.rbuf.len
        while True:
            rc = ws_next(&c.p, buf, blen, &pos, &op, &data, &dlen)
            if rc == 0:
                break
            if rc < 0:
                exc = frame_error(c.p.err, c.p.err_arg, c.p.max_size)
                self.lose(idx, K_PROTOCOL, f"protocol error: {exc}")
                return 0
            if self.on_message(idx, op, data, dlen, now) != 0 or c.state == CS_DEAD:
                return 0
        if buf == self.scratch:
            if buf_append(&c.rbuf, buf + pos, blen - pos) < 0:
                raise MemoryError()
        else:
            buf_consume(&c.rbuf, pos)
        if c.to_send:
            rc = c.to_send
            c.to_send = 0
            self.send_messages(idx, rc, now)
        return 0

    # -- connecting -----------------------------------------------------------

    cdef int start_connect(self, int idx) except -1:
        cdef Conn* c = &self.conns[idx]
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
        if ev.events & (EPOLLOUT | EPOLLERR) and (c.state == CS_CONNECTING or c.wbuf.len > c.woff):
            self.on_writable(idx)
            if c.state == CS_DEAD:
                return 0
        if ev.events & (EPOLLIN | EPOLLHUP | EPOLLERR) and c.state != CS_CONNECTING:
            self.on_readable(idx)
        return 0

    # -- open loop -----------------------------------------------------------

    cdef int on_timer(self) except -1:
        """Queue every message whose intended send time has come, then send them coalesced."""
        cdef uint64_t expirations, now
        cdef int idx, j, rc
        cdef Conn* c
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
            rc = ring_push(c, self.next_send_ns)
            if rc == -2:
                raise MemoryError()
            if rc == -1:
                self.counts[K_BACKLOG_FULL] += 1
                self.next_send_ns += self.interval_ns
                continue
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
        timer_at(self.timerfd, self.next_send_ns)
        return 0

    # -- the run ------------------------------------------------------------

    cdef int wait_once(self, epoll_event* events, int timeout_ms) except -1:
        """One epoll_wait and its events; raises what a pending signal raises (Ctrl-C)."""
        cdef int nev, i
        cdef uint64_t now
        if timeout_ms > SIGNAL_CHECK_MS:
            timeout_ms = SIGNAL_CHECK_MS
        # Other Python threads (an in-process test server) may run while we wait.
        with nogil:
            nev = epoll_wait(self.epfd, events, MAX_EVENTS, timeout_ms)
        if nev < 0:
            if errno == EINTR:
                PyErr_CheckSignals()
                return 0
            raise OSError(errno, "epoll_wait failed")
        now = now_ns()
        if now >= self.next_signal_check_ns:
            self.next_signal_check_ns = now + SIGNAL_CHECK_MS * 1000000ULL
            PyErr_CheckSignals()
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
        exactly that window. A signal (Ctrl-C) raises out of the loop within
        SIGNAL_CHECK_MS; nothing is returned then.
        """
        cdef epoll_event events[MAX_EVENTS]
        cdef epoll_event ev
        cdef uint64_t now, deadline, t_load, t_end, t_next
        cdef int i, timeout_ms
        self.max_messages = (<uint64_t>max_messages if max_messages is not None
                             else 0xFFFFFFFFFFFFFFFFULL)
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
                raise LoadError(f"a connection to {self.host_port} was lost before the load "
                                f"started ({detail})")
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
            self.timerfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC)
            ev.events = EPOLLIN
            ev.data.u32 = TIMER_TOKEN
            epoll_ctl(self.epfd, EPOLL_CTL_ADD, self.timerfd, &ev)
            self.next_send_ns = t_load
            timer_at(self.timerfd, t_load)
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
            self.wait_once(events, timeout_ms if timeout_ms < SIGNAL_CHECK_MS else SIGNAL_CHECK_MS)
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
        for i in range(self.n):
            c = &self.conns[i]
            if c.state == CS_READY:
                c.to_send = 0
                if self.write(i, self.goodbye.data, self.goodbye.len) == 0:
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
