# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""The idle and connect workloads: one epoll loop in C over many connections' set-up and life.

idle: open N connections (bounded concurrency), hold them for a window answering
Engine.IO pings in C, close them. connect: a closed loop of connects (TCP, upgrade,
Engine.IO open, namespace connect), each timed then closed. A connection's set-up steps
are the load client's (wsprof._setup, Python once per connection); while a connection is
open nothing but C runs for it. Ctrl-C ends a run within SIGNAL_CHECK_MS.

Closing a connect's connection: the client sends Close (after the Socket.IO disconnect)
and waits for the server to close TCP first, then closes its own socket. The side that
closes first holds TIME_WAIT; left to the server, TIME_WAIT never pins one of the client's
ephemeral ports, so thousands of connects per second do not exhaust the port range.
A server that has not closed within CLOSE_WAIT gets a reset (SO_LINGER 0), counted as
close_timeout; the same reset ends every connection left at exit.
"""
from cpython.bytes cimport PyBytes_FromStringAndSize, PyBytes_AS_STRING, PyBytes_GET_SIZE
from cpython.exc cimport PyErr_CheckSignals
from libc.errno cimport errno, EAGAIN, EINTR
from libc.stdint cimport uint8_t, uint32_t, uint64_t
from libc.stdlib cimport calloc, free
from libc.string cimport memcpy, strerror
from posix.unistd cimport close

from wsprof._buffer cimport buf_free
from wsprof._clock cimport now_ns, thread_cpu_ns
from wsprof._conn cimport (
    CS_CLOSING, CS_CONNECTING, CS_DEAD, CS_HANDSHAKE, CS_READY, SENT, SEND_NOMEM,
    conn_flush, conn_keep, conn_recv, conn_send, set_events, view,
)
from wsprof._frames cimport (
    OP_CLOSE, OP_PING, OP_PONG, OP_TEXT, MAX_CONTROL_PAYLOAD, MAX_HEADER, parser_init,
    write_frame, ws_next,
)
from wsprof._posix cimport (
    epoll_create1, epoll_ctl, epoll_event, epoll_wait, setsockopt, EPOLL_CLOEXEC,
    EPOLL_CTL_ADD, EPOLLERR, EPOLLHUP, EPOLLIN, EPOLLOUT, MAX_EVENTS, SIGNAL_CHECK_MS,
    SOL_SOCKET,
)
from wsprof._session cimport SIO_ENDED, SIO_PING, sio_kind

import errno as errnos
import os
import socket

from wsprof.client.base import LoadError
from wsprof.protocol.websocket import MAX_MESSAGE_SIZE, frame_error

cdef extern from "sys/socket.h" nogil:
    struct linger:
        int l_onoff
        int l_linger
    enum: SO_LINGER

ERROR_KINDS = (
    "connect_failed", "handshake_failed", "closed_by_server", "connection_reset",
    "protocol_error", "timeout", "close_timeout", "unexpected_message",
)
# A ping answered later than this after it could have arrived is late.
cdef uint64_t LATE_NS = 1000000000ULL
# How long a server may take to close TCP after our Close before it gets a reset.
cdef uint64_t CLOSE_WAIT_NS = 1000000000ULL
# Set-up and close deadlines are checked this often.
cdef uint64_t CHECK_EVERY_NS = 100000000ULL


cdef void reset_close(int fd) noexcept nogil:
    """Close with a reset: no TIME_WAIT left on this side."""
    cdef linger lg
    lg.l_onoff = 1
    lg.l_linger = 0
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg))
    close(fd)


cdef class ConnectionsRun:
    """``slots`` connection slots to one server; run_idle or run_connect, once."""

    def __cinit__(self):
        self.epfd = -1

    def __init__(self, *, str host, int port, str path, int slots, bint socketio,
                 bint msgpack) -> None:
        cdef int i
        self.setup = Setup(host=host, port=port, path=path, connections=slots,
                           socketio=socketio, msgpack=msgpack, send_frames=[])
        self.n = slots
        self.socketio = socketio
        self.first_error = {}
        self.goodbye_owner = self.setup.goodbye
        self.goodbye = view(self.goodbye_owner)
        memcpy(self.mask_key, <char*>self.setup.mask_key, 4)
        self.conns = <Conn*>calloc(slots, sizeof(Conn))
        self.started = <uint64_t*>calloc(slots, sizeof(uint64_t))
        self.free_slots = <int*>calloc(slots, sizeof(int))
        if self.conns == NULL or self.started == NULL or self.free_slots == NULL:
            raise MemoryError()
        for i in range(slots):
            self.conns[i].fd = -1
            self.conns[i].state = CS_DEAD
            self.free_slots[i] = slots - 1 - i
        self.nfree = slots
        self.epfd = epoll_create1(EPOLL_CLOEXEC)
        if self.epfd < 0:
            raise OSError(errno, "epoll_create1 failed")

    def __dealloc__(self):
        cdef int i
        if self.conns != NULL:
            for i in range(self.n):
                if self.conns[i].fd >= 0:
                    reset_close(self.conns[i].fd)
                buf_free(&self.conns[i].rbuf)
                buf_free(&self.conns[i].wbuf)
                buf_free(&self.conns[i].p.frag)
            free(self.conns)
        free(self.started)
        free(self.free_slots)
        if self.epfd >= 0:
            close(self.epfd)

    # -- slots ----------------------------------------------------------------

    cdef int start_connect(self) except -1:
        """Start a non-blocking connect in a free slot. The OS's refusals that are limits
        (EMFILE, ENFILE, EADDRNOTAVAIL) raise OSError; other failures are counted."""
        cdef epoll_event ev
        cdef int idx = self.free_slots[self.nfree - 1]
        cdef Conn* c = &self.conns[idx]
        sock = socket.socket(self.setup.family, socket.SOCK_STREAM)
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        err = sock.connect_ex(self.setup.addr)
        if err not in (0, errnos.EINPROGRESS):
            sock.close()
            if err == errnos.EADDRNOTAVAIL:
                raise OSError(err, os.strerror(err))
            self.counts[K_CONNECT_FAILED] += 1
            self.failed += 1
            self.first_error.setdefault(
                "connect_failed", f"cannot connect to {self.setup.host_port}: {os.strerror(err)}")
            return 0
        self.nfree -= 1
        c.fd = sock.detach()
        c.state = CS_CONNECTING
        c.events = EPOLLOUT
        c.rbuf.len = c.wbuf.len = c.woff = 0
        c.skip_bin = 0
        parser_init(&c.p, MAX_MESSAGE_SIZE, False)
        ev.events = EPOLLOUT
        ev.data.u32 = <uint32_t>idx
        if epoll_ctl(self.epfd, EPOLL_CTL_ADD, c.fd, &ev) < 0:
            raise OSError(errno, "epoll_ctl failed")
        self.started[idx] = now_ns()
        self.pending += 1
        return 0

    cdef void release(self, int idx, bint reset) noexcept:
        """Close a slot's socket (leaving the epoll set) and make the slot free."""
        cdef Conn* c = &self.conns[idx]
        if c.fd >= 0:
            if reset:
                reset_close(c.fd)
            else:
                close(c.fd)
            c.fd = -1
        c.state = CS_DEAD
        c.rbuf.len = c.wbuf.len = c.woff = 0
        self.free_slots[self.nfree] = idx
        self.nfree += 1

    cdef int fail(self, int idx, int kind, str why) except -1:
        """Count a connection lost (in set-up, while open, or while closing) and free it."""
        cdef Conn* c = &self.conns[idx]
        if c.state == CS_DEAD:
            return 0
        self.counts[kind] += 1
        self.first_error.setdefault(ERROR_KINDS[kind], why)
        if c.state < CS_READY:
            self.pending -= 1
            self.failed += 1
        elif c.state == CS_READY and not self.connect_mode:
            self.ready -= 1
            self.failed += 1
        elif c.state == CS_CLOSING:
            self.closing -= 1
        self.release(idx, True)
        return 0

    # -- writing --------------------------------------------------------------

    cdef int write(self, int idx, const uint8_t* data, size_t n) except -1:
        """Send or queue ``data``; 1 when the connection is gone."""
        cdef Conn* c = &self.conns[idx]
        cdef int r = conn_send(c, data, n)
        if r == SEND_NOMEM:
            raise MemoryError()
        if r != SENT:
            self.fail(idx, K_RESET, f"send failed: {strerror(errno).decode()}")
            return 1
        if c.wbuf.len > c.woff:
            set_events(self.epfd, c, idx, EPOLLIN | EPOLLOUT)
        return 0

    cdef int on_writable(self, int idx) except -1:
        cdef Conn* c = &self.conns[idx]
        if c.state == CS_CONNECTING:
            try:
                req = self.setup.upgrade_request(c, idx)
            except LoadError as exc:
                return self.fail(idx, K_CONNECT_FAILED, str(exc))
            set_events(self.epfd, c, idx, EPOLLIN)
            return self.write(idx, <const uint8_t*>PyBytes_AS_STRING(req), PyBytes_GET_SIZE(req))
        if conn_flush(c) != SENT:
            return self.fail(idx, K_RESET, f"send failed: {strerror(errno).decode()}")
        if c.wbuf.len == 0:
            set_events(self.epfd, c, idx, EPOLLIN)
        return 0

    # -- reading --------------------------------------------------------------

    cdef int on_readable(self, int idx) except -1:
        cdef Conn* c = &self.conns[idx]
        cdef uint8_t* buf
        cdef size_t blen, pos = 0, dlen
        cdef ssize_t r = conn_recv(c, self.scratch, CONN_SCRATCH, &buf, &blen)
        cdef int op, rc
        cdef uint8_t* data
        cdef uint64_t now
        if r == -2:
            raise MemoryError()
        if r <= 0:
            if r < 0 and (errno == EAGAIN or errno == EINTR):
                return 0
            if c.state == CS_CLOSING:
                # the server closed first, as it should after the close handshake
                self.closing -= 1
                self.release(idx, False)
            elif r == 0:
                self.fail(idx, K_CLOSED_BY_SERVER, "the server closed the connection")
            else:
                self.fail(idx, K_RESET, f"recv failed: {strerror(errno).decode()}")
            return 0
        now = now_ns()
        if c.state == CS_HANDSHAKE:
            try:
                if self.setup.upgrade_response(c, idx) == 0:
                    return 0
            except LoadError as exc:
                return self.fail(idx, K_HANDSHAKE_FAILED, str(exc))
            if c.state == CS_READY:
                self.now_open(idx, now)
                if c.state == CS_DEAD:
                    return 0
            buf = c.rbuf.data
            blen = c.rbuf.len
        while True:
            rc = ws_next(&c.p, buf, blen, &pos, &op, &data, &dlen)
            if rc == 0:
                break
            if rc < 0:
                exc = frame_error(c.p.err, c.p.err_arg, c.p.max_size)
                return self.fail(idx, K_PROTOCOL, f"protocol error: {exc}")
            if self.on_message(idx, op, data, dlen, now) != 0 or c.state == CS_DEAD:
                return 0
        if conn_keep(c, buf, blen, pos) < 0:
            raise MemoryError()
        if c.rbuf.len == 0 and c.state == CS_READY and not self.connect_mode:
            buf_free(&c.rbuf)   # an idle connection keeps no read buffer
        return 0

    cdef int on_message(self, int idx, int op, uint8_t* data, size_t n,
                        uint64_t now) except -1:
        """Returns 1 when the connection is gone."""
        cdef Conn* c = &self.conns[idx]
        cdef uint8_t out[MAX_HEADER + MAX_CONTROL_PAYLOAD]
        cdef int kind
        if op == OP_PING:
            return self.write(idx, out, write_frame(out, 0x80 | OP_PONG, data, n, self.mask_key))
        if op == OP_PONG:
            return 0
        if op == OP_CLOSE:
            if c.state == CS_CLOSING:
                return 0   # the server's TCP close follows
            self.fail(idx, K_CLOSED_BY_SERVER, "the server sent a Close frame")
            return 1
        if c.state == CS_CLOSING:
            return 0
        if c.state < CS_READY:
            try:
                reply = self.setup.message(c, op, PyBytes_FromStringAndSize(<char*>data, n))
            except LoadError as exc:
                self.fail(idx, K_HANDSHAKE_FAILED, str(exc))
                return 1
            if c.state == CS_READY:
                return self.now_open(idx, now)
            return self.write(idx, <const uint8_t*>PyBytes_AS_STRING(reply),
                              PyBytes_GET_SIZE(reply))
        if self.socketio and op == OP_TEXT:
            kind = sio_kind(&self.setup.sio, data, n, &c.skip_bin)
            if kind == SIO_PING:
                if self.measuring:
                    self.heartbeats += 1
                    # it arrived after the previous epoll_wait returned: an upper bound
                    if now - self.t_prev > LATE_NS:
                        self.late += 1
                return self.write(idx, self.setup.sio.pong.data, self.setup.sio.pong.len)
            if kind == SIO_ENDED:
                self.fail(idx, K_CLOSED_BY_SERVER, "the server closed the Socket.IO session")
                return 1
        self.counts[K_UNEXPECTED] += 1
        return 0

    # -- a connection's life -----------------------------------------------------

    cdef int now_open(self, int idx, uint64_t now) except -1:
        """Set-up finished: idle keeps it open; connect times it and closes it."""
        self.pending -= 1
        self.ready += 1
        if not self.connect_mode:
            return 0
        if self.measuring:
            self.hist.record_ns(now - self.started[idx])
            self.measured += 1
        return self.start_close(idx, now)

    cdef int start_close(self, int idx, uint64_t now) except -1:
        cdef Conn* c = &self.conns[idx]
        if self.write(idx, self.goodbye.data, self.goodbye.len) != 0:
            return 1
        c.state = CS_CLOSING
        self.closing += 1
        self.started[idx] = now
        return 0

    cdef int check_timeouts(self, uint64_t now) except -1:
        """Fail set-ups past their deadline; reset closes the server did not finish."""
        cdef int i
        cdef Conn* c
        for i in range(self.n):
            c = &self.conns[i]
            if c.state == CS_DEAD:
                continue
            if c.state < CS_READY and now - self.started[i] > self.step_timeout_ns:
                self.fail(i, K_TIMEOUT, f"not open after {self.step_timeout_ns / 1e9:g} s")
            elif c.state == CS_CLOSING and now - self.started[i] > CLOSE_WAIT_NS:
                self.counts[K_CLOSE_TIMEOUT] += 1
                self.closing -= 1
                self.release(i, True)
        return 0

    # -- the loop ---------------------------------------------------------------

    cdef int wait_once(self, epoll_event* events, int timeout_ms) except -1:
        """One epoll_wait and its events; raises what a pending signal raises (Ctrl-C)."""
        cdef int nev, i, idx
        cdef Conn* c
        cdef uint64_t now
        if timeout_ms > SIGNAL_CHECK_MS:
            timeout_ms = SIGNAL_CHECK_MS
        if timeout_ms < 0:
            timeout_ms = 0
        with nogil:
            nev = epoll_wait(self.epfd, events, MAX_EVENTS, timeout_ms)
        if nev < 0:
            if errno == EINTR:
                PyErr_CheckSignals()
                return 0
            raise OSError(errno, "epoll_wait failed")
        now = now_ns()
        self.t_prev = self.t_last if self.t_last else now
        self.t_last = now
        if now >= self.next_check_ns:
            self.next_check_ns = now + CHECK_EVERY_NS
            PyErr_CheckSignals()
            self.check_timeouts(now)
        for i in range(nev):
            idx = <int>events[i].data.u32
            c = &self.conns[idx]
            if c.state == CS_DEAD:
                continue
            if events[i].events & (EPOLLOUT | EPOLLERR) and (
                    c.state == CS_CONNECTING or c.wbuf.len > c.woff):
                self.on_writable(idx)
                if c.state == CS_DEAD:
                    continue
            if events[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR) and c.state != CS_CONNECTING:
                self.on_readable(idx)
        return nev

    cdef int close_all(self, double timeout, epoll_event* events) except -1:
        """Let set-ups in progress finish, close every open connection, wait (bounded)."""
        cdef int i
        cdef uint64_t deadline = now_ns() + <uint64_t>(timeout * 1e9)
        while self.pending > 0 and now_ns() < deadline:
            self.wait_once(events, 20)
        for i in range(self.n):
            if self.conns[i].state == CS_READY:
                self.start_close(i, now_ns())
        while self.closing > 0 and now_ns() < deadline:
            self.wait_once(events, 20)
        for i in range(self.n):
            if self.conns[i].state == CS_CLOSING:
                self.counts[K_CLOSE_TIMEOUT] += 1
            if self.conns[i].state != CS_DEAD:
                self.release(i, True)
        self.pending = self.closing = 0
        return 0

    def abort(self) -> None:
        """Reset every connection still open (a run that raised)."""
        cdef int i
        for i in range(self.n):
            if self.conns[i].state != CS_DEAD:
                self.release(i, True)
        self.pending = self.ready = self.closing = 0

    def errors(self) -> dict:
        return {ERROR_KINDS[i]: int(self.counts[i]) for i in range(K_COUNT) if self.counts[i]}

    def first_errors(self) -> dict:
        return dict(self.first_error)

    def run_idle(self, *, int connections, int open_concurrency, double duration,
                 double open_timeout, double close_timeout, on_window=None) -> dict:
        """Open ``connections`` (``open_concurrency`` set-ups at once), hold them for
        ``duration`` s answering pings, close them (waiting at most ``close_timeout``).
        ``on_window`` gets "start" once all are open (or failed), then "end"; the errors
        returned are those of the set-up and the window."""
        cdef epoll_event events[MAX_EVENTS]
        cdef uint64_t t0, t_start, t_end, now, cpu0, cpu1
        cdef int attempted = 0
        if connections > self.n:
            raise ValueError("more connections than slots")
        self.step_timeout_ns = <uint64_t>(open_timeout * 1e9)
        t0 = now_ns()
        while attempted < connections or self.pending > 0:
            while self.pending < open_concurrency and attempted < connections:
                self.start_connect()
                attempted += 1
            self.wait_once(events, 20)
        open_s = (now_ns() - t0) / 1e9
        if self.ready == 0:
            return {"connections": 0, "failed": self.failed, "open_s": open_s}
        if on_window is not None:
            on_window("start")
        self.measuring = True
        cpu0 = thread_cpu_ns()
        t_start = now_ns()
        t_end = t_start + <uint64_t>(duration * 1e9)
        now = t_start
        while now < t_end and self.ready > 0:
            self.wait_once(events, <int>((t_end - now) // 1000000) + 1)
            now = now_ns()
        cpu1 = thread_cpu_ns()
        self.measuring = False
        held = self.ready
        # what the window saw: closing afterwards is not measured (a server still
        # closing at the deadline gets resets)
        errors = self.errors()
        if on_window is not None:
            on_window("end")
        self.close_all(close_timeout, events)
        return {
            "errors": errors,
            "connections": held,
            "failed": connections - held,
            "heartbeats": int(self.heartbeats),
            "heartbeats_late": int(self.late),
            "open_s": open_s,
            "elapsed_s": (now - t_start) / 1e9,
            "cpu_s": (cpu1 - cpu0) / 1e9,
        }

    def run_connect(self, *, int concurrency, double warmup, double duration,
                    double connect_timeout, double close_timeout, histogram,
                    on_window=None) -> dict:
        """Keep ``concurrency`` connects in set-up until the window ends; each one is timed
        (inside the window) and closed as soon as it is open."""
        cdef epoll_event events[MAX_EVENTS]
        cdef uint64_t t_start, t_end, now, cpu0 = 0, cpu1 = 0
        self.connect_mode = True
        self.hist = histogram
        self.step_timeout_ns = <uint64_t>(connect_timeout * 1e9)
        now = now_ns()
        t_start = now + <uint64_t>(warmup * 1e9)
        t_end = t_start + <uint64_t>(duration * 1e9)
        while True:
            if not self.measuring and now >= t_start:
                if on_window is not None:
                    on_window("start")
                now = now_ns()
                t_start = now
                t_end = now + <uint64_t>(duration * 1e9)
                self.measuring = True
                cpu0 = thread_cpu_ns()
            if self.measuring and now >= t_end:
                break
            while self.pending < concurrency and self.nfree > 0:
                self.start_connect()
            self.wait_once(events, <int>(((t_end if self.measuring else t_start) - now)
                                         // 1000000) + 1)
            now = now_ns()
        cpu1 = thread_cpu_ns()
        self.measuring = False
        if on_window is not None:
            on_window("end")
        self.close_all(close_timeout, events)
        return {
            "connects": int(self.measured),
            "elapsed_s": (now - t_start) / 1e9,
            "cpu_s": (cpu1 - cpu0) / 1e9,
        }
