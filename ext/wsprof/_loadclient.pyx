# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""The fast-path load client: one epoll loop in C driving 1..10,000 WebSocket connections.

The client must be so cheap that a scenario measures the server, never itself.
Per message it does what the kernel makes unavoidable (one ``send`` and one
``recv``, shared by every message that fits in them) plus a few hundred
nanoseconds of C: frame parse, a ``memcmp`` against the reply contract (wsprof._reply),
one clock read per ``recv`` and a histogram increment. No Python object is made per
message; Python runs only at setup (wsprof._setup: sockets, handshakes, the
Engine.IO open packet, the namespace connect), for rare events (errors) and to
check for signals every SIGNAL_CHECK_MS. Every protocol byte comes from
wsprof.protocol.
"""
from cpython.bytes cimport PyBytes_FromStringAndSize, PyBytes_AS_STRING, PyBytes_GET_SIZE
from cpython.exc cimport PyErr_CheckSignals
from libc.errno cimport errno, EAGAIN, EINTR
from libc.stdint cimport uint8_t, uint32_t, uint64_t
from libc.stdlib cimport calloc, free
from libc.string cimport memcmp, memcpy, strerror
from posix.time cimport CLOCK_MONOTONIC
from posix.unistd cimport close, read

from wsprof._buffer cimport buf_free
from wsprof._clock cimport now_ns, thread_cpu_ns
from wsprof._frames cimport (
    OP_BINARY, OP_CLOSE, OP_PING, OP_PONG, OP_TEXT, MAX_CONTROL_PAYLOAD, MAX_HEADER,
    parser_init, write_frame, ws_next,
)
from wsprof._conn cimport (
    CS_CONNECTING, CS_CLOSING, CS_DEAD, CS_HANDSHAKE, CS_READY, SENT, SEND_BACKLOG, SEND_NOMEM,
    WBUF_LIMIT, ConnState, conn_drop, conn_flush, conn_keep, conn_recv, conn_send, outstanding,
    ring_init, ring_pop, ring_push, schedule_due, set_events, view,
)
from wsprof._histogram cimport Histogram
from wsprof._posix cimport (
    epoll_create1, epoll_ctl, epoll_event, epoll_wait, timer_at, timerfd_create, EPOLL_CLOEXEC,
    EPOLL_CTL_ADD, EPOLLERR, EPOLLHUP, EPOLLIN, EPOLLOUT, MAX_EVENTS, SIGNAL_CHECK_MS,
    TFD_CLOEXEC, TFD_NONBLOCK,
)
from wsprof._reply cimport (
    R_ACK, R_ANY, R_ECHO, ack_id_ok, acked_frames, event_match, reply_alloc, reply_free,
)
from wsprof._session cimport SIO_ENDED, SIO_EVENT, SIO_PING, sio_kind, starts_with
from wsprof._setup cimport Setup

from wsprof.client.base import LoadError
from wsprof.protocol.socketio import event_key
from wsprof.protocol.websocket import frame_error

ERROR_KINDS = (
    "closed_by_server", "connection_reset", "protocol_error", "echo_mismatch",
    "unexpected_message", "send_backlog", "schedule_backlog", "close_timeout",
    "unexpected_event", "unexpected_ack",
)
REPLIES = {"echo": R_ECHO, "any": R_ANY, "ack": R_ACK}
MAX_NOTES = 64  # unexpected events named in Python; the rest are only counted


cdef uint32_t TIMER_TOKEN = 0xFFFFFFFF


cdef class LoadRun:
    """One process's share of a load: every connection, one epoll loop, one histogram."""

    def __cinit__(self):
        self.epfd = -1
        self.timerfd = -1

    def __init__(self, *, str host, int port, str path, int connections, bint socketio,
                 list send_frames, list expect_frames, int in_flight, double rate,
                 double max_message_size, Histogram histogram, bint msgpack=False,
                 str reply="echo", bytes reply_prefix=b"", bytes ack_prefix=b"",
                 tuple ack_parts=(b"", b"")) -> None:
        cdef int i
        self.setup = Setup(host=host, port=port, path=path, connections=connections,
                           socketio=socketio, msgpack=msgpack, send_frames=send_frames)
        self.n = connections
        self.socketio = socketio
        self.msgpack = msgpack
        self.open_loop = rate > 0
        self.in_flight = in_flight
        self.sched.interval_ns = <uint64_t>(1e9 / rate) if rate > 0 else 0
        self.hist = histogram
        self.max_size = <uint64_t>max_message_size
        self.first_error = {}
        self.kept = []
        self.conns = <Conn*>calloc(connections, sizeof(Conn))
        self.sched.dirty = <int*>calloc(connections, sizeof(int))
        if self.conns == NULL or self.sched.dirty == NULL:
            raise MemoryError()
        for i in range(connections):
            self.conns[i].fd = -1
            parser_init(&self.conns[i].p, self.max_size, False)
        memcpy(self.mask_key, <char*>self.setup.mask_key, 4)
        self.copies = max(in_flight, 64 if self.open_loop else 1)
        self.unit = self.hold(self.setup.unit * self.copies)
        self.unit_len = len(self.setup.unit)
        self.nexp = len(expect_frames)
        if not 1 <= self.nexp <= 2:
            raise ValueError("expect_frames must hold one or two frames")
        for i in range(self.nexp):
            self.exp_op[i] = expect_frames[i][0]
            self.exp[i] = self.hold(bytes(expect_frames[i][1]))
        self.goodbye = self.hold(self.setup.goodbye)
        self.sio = self.setup.sio
        self.reply.kind = REPLIES[reply]
        self.reply.prefix = self.hold(reply_prefix)
        self.reply.ack_prefix = self.hold(ack_prefix)
        self.reply.ack_head = self.hold(ack_parts[0])
        self.reply.ack_tail = self.hold(ack_parts[1])
        self.seen = {}
        if reply_alloc(&self.reply, self.copies, self.mask_key) < 0:
            raise MemoryError()

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
        free(self.sched.dirty)
        reply_free(&self.reply)
        if self.epfd >= 0:
            close(self.epfd)
        if self.timerfd >= 0:
            close(self.timerfd)

    cdef Bytes hold(self, bytes data):
        """A C view of ``data``, kept alive as long as the run."""
        self.kept.append(data)
        return view(data)

    # -- error bookkeeping (rare path) ------------------------------------

    cdef int lose(self, int idx, int kind, str why) except -1:
        """Drop a connection after an error; the run goes on with the others."""
        cdef Conn* c = &self.conns[idx]
        if c.state == CS_DEAD:
            return 0
        if c.state < CS_READY:
            self.fatal = LoadError(
                f"connection {idx} to {self.setup.host_port} failed during setup: {why}")
        self.counts[kind] += 1
        name = ERROR_KINDS[kind]
        if name not in self.first_error:
            self.first_error[name] = why
        self.drop(idx)
        return 0

    cdef void drop(self, int idx) noexcept:
        cdef ConnState was = conn_drop(&self.conns[idx])
        self.closing -= was == CS_CLOSING
        self.alive -= CS_READY <= was < CS_DEAD

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
        if c.state == CS_CONNECTING:
            req = self.setup.upgrade_request(c, idx)
            self.pending -= 1
            set_events(self.epfd, c, idx, EPOLLIN)
            return self.write(idx, <const uint8_t*>PyBytes_AS_STRING(req), PyBytes_GET_SIZE(req))
        if self.sent(idx, conn_flush(c)) == 0 and c.wbuf.len == 0:
            set_events(self.epfd, c, idx, EPOLLIN)
        return 0

    cdef int send_messages(self, int idx, uint32_t count, uint64_t stamp) except -1:
        """Write ``count`` message units in as few sends as possible (write coalescing)."""
        cdef Conn* c = &self.conns[idx]
        cdef uint32_t k, _j
        cdef int rc
        if not self.open_loop:
            for _j in range(count):
                ring_push(c, stamp)   # never full: the ring holds in_flight stamps
        while count > 0:
            k = count if count < self.copies else self.copies
            if self.reply.kind != R_ACK:
                rc = self.write(idx, self.unit.data, k * self.unit_len)
            else:   # each message has its own ack id, written here
                rc = self.write(idx, self.reply.frames, acked_frames(&self.reply, c, k))
            if rc != 0:
                return 1
            count -= k
        return 0

    # -- reading ------------------------------------------------------------

    cdef int unexpected_event(self, const uint8_t* data, size_t n) except -1:
        """An event that is not the reply: named in Python when first seen, then counted in C."""
        self.counts[K_UNEXPECTED_EVENT] += 1
        if self.reply.other_event.len and starts_with(data, n, self.reply.other_event):
            self.reply.other_event_n += 1
        elif self.notes < MAX_NOTES:
            self.notes += 1
            key, prefix = event_key(PyBytes_FromStringAndSize(<char*>data, min(n, 512)))
            self.seen[key] = self.seen.get(key, 0) + 1
            if prefix is not None and not self.reply.other_event.len:
                self.other_key = key
                self.reply.other_event = self.hold(prefix)
        return 0

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
            return self.setup_message(idx, op, data, n)
        if self.reply.kind != R_ECHO:
            if op == OP_TEXT or op == OP_BINARY:
                if not self.socketio:
                    return self.complete(idx, now, True)
                if op == OP_TEXT:
                    if self.reply.kind == R_ANY and event_match(data, n, self.reply.prefix):
                        return self.complete(idx, now, True)
                    if self.reply.kind == R_ACK and starts_with(data, n, self.reply.ack_prefix):
                        return self.complete(idx, now, ack_id_ok(&self.reply, c, data, n))
            return self.socketio_other(idx, op, data, n, now)
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
        cdef int kind
        if op == OP_TEXT:
            if self.reply.kind != R_ACK and starts_with(data, n, self.reply.ack_prefix):
                self.counts[K_UNEXPECTED_ACK] += 1   # named in run()'s "seen"
                return 0
            kind = sio_kind(&self.sio, data, n, &c.skip_bin)
            if kind == SIO_PING:
                return self.write(idx, self.sio.pong.data, self.sio.pong.len)
            if kind == SIO_ENDED:
                self.lose(idx, K_CLOSED_BY_SERVER, "the server closed the Socket.IO session")
                return 1
            if kind == SIO_EVENT:
                if self.reply.kind == R_ECHO and (self.reply.prefix.len == 0
                                                  or event_match(data, n, self.reply.prefix)):
                    return self.complete(idx, now, False)
                return self.unexpected_event(data, n)
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
        return self.write(idx, out, write_frame(out, 0x80 | OP_PONG, data, n, self.mask_key))

    cdef int setup_message(self, int idx, int op, const uint8_t* data, size_t n) except -1:
        """A Socket.IO set-up message (rare: once or twice per connection)."""
        reply = self.setup.message(&self.conns[idx], op, PyBytes_FromStringAndSize(<char*>data, n))
        if self.conns[idx].state == CS_READY:
            return self.now_ready(idx)
        return self.write(idx, <const uint8_t*>PyBytes_AS_STRING(reply), PyBytes_GET_SIZE(reply))

    cdef int now_ready(self, int idx) except -1:
        """Count a connection that finished set-up and give it its ring of send times."""
        self.ready += 1
        self.alive += 1
        if ring_init(&self.conns[idx], self.in_flight if not self.open_loop else 16) < 0:
            raise MemoryError()
        return 0

    cdef int on_readable(self, int idx) except -1:
        cdef Conn* c = &self.conns[idx]
        cdef uint8_t* buf
        cdef size_t blen, pos = 0, dlen
        cdef ssize_t r = conn_recv(c, self.scratch, SCRATCH, &buf, &blen)
        cdef int op, rc
        cdef uint8_t* data
        cdef uint64_t now
        if r == -2:
            raise MemoryError()
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
            if self.setup.upgrade_response(c, idx) == 0:
                return 0
            if c.state == CS_READY:
                self.now_ready(idx)
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
        if conn_keep(c, buf, blen, pos) < 0:
            raise MemoryError()
        if c.to_send:
            rc = c.to_send
            c.to_send = 0
            self.send_messages(idx, rc, now)
        return 0

    # -- connecting ---------------------------------------------------------

    cdef int connect_all(self, double timeout, epoll_event* events) except -1:
        """Connect and set up every connection (wsprof._setup) before the load starts."""
        cdef uint64_t now, deadline = now_ns() + <uint64_t>(timeout * 1e9)
        while self.ready < self.n:
            while self.pending < MAX_PENDING_CONNECTS and self.next_connect < self.n:
                self.setup.connect_tcp(&self.conns[self.next_connect], self.epfd,
                                       self.next_connect)
                self.pending += 1
                self.next_connect += 1
            now = now_ns()
            if now >= deadline:
                raise LoadError(
                    f"{self.n - self.ready} of {self.n} connections to {self.setup.host_port} "
                    f"were not ready after {timeout:g} s"
                )
            self.wait_once(events, min(50, <int>((deadline - now) // 1000000) + 1))
            if self.alive < self.ready:
                detail = "; ".join(f"{k}: {v}" for k, v in self.first_error.items())
                raise LoadError(f"a connection to {self.setup.host_port} was lost before the "
                                f"load started ({detail})")
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
        cdef uint64_t expirations
        cdef long dropped
        cdef int idx, j
        cdef Conn* c
        cdef uint32_t k
        read(self.timerfd, &expirations, 8)
        if self.phase != PH_WARMUP and self.phase != PH_MEASURE:
            return 0
        dropped = schedule_due(&self.sched, self.conns, self.n, self.alive, now_ns())
        if dropped < 0:
            raise MemoryError()
        self.counts[K_BACKLOG_FULL] += dropped
        for j in range(self.sched.ndirty):
            idx = self.sched.dirty[j]
            c = &self.conns[idx]
            c.dirty = 0
            if c.state == CS_READY and c.to_send:
                k = c.to_send
                c.to_send = 0
                self.send_messages(idx, k, 0)
        timer_at(self.timerfd, self.sched.next_ns)
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
        cdef uint64_t now, t_load, t_end, t_next
        cdef int i, timeout_ms
        self.max_messages = (<uint64_t>max_messages if max_messages is not None
                             else 0xFFFFFFFFFFFFFFFFULL)
        self.epfd = epoll_create1(EPOLL_CLOEXEC)
        if self.epfd < 0:
            raise OSError(errno, "epoll_create1 failed")
        self.phase = PH_CONNECT
        self.connect_all(connect_timeout, events)
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
            self.sched.next_ns = t_load
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
        if self.reply.other_event_n:
            self.seen[self.other_key] += int(self.reply.other_event_n)
        self.seen["ack"] = int(self.counts[K_UNEXPECTED_ACK])
        if ended_early:
            detail = "; ".join(f"{k}: {v}" for k, v in self.first_error.items())
            when = "before any message" if self.measured == 0 else f"after {self.measured} messages"
            raise LoadError(
                f"every connection to {self.setup.host_port} was lost {when} ({detail})")
        elapsed = (self.t_window_end - self.t_window_start) / 1e9 if self.cpu_start else 0.0
        return {
            "messages": int(self.measured),
            "elapsed_s": elapsed,
            "cpu_s": (self.cpu_end - self.cpu_start) / 1e9,
            "errors": errors,
            "first_error": dict(self.first_error),
            "seen": dict(self.seen),
        }

    cdef int close_all(self, double timeout, epoll_event* events) except -1:
        """Send Close to every live connection and wait, bounded, for the server's Close."""
        cdef int i
        cdef Conn* c
        cdef uint64_t deadline = now_ns() + <uint64_t>(timeout * 1e9 / 2)
        # Let the echoes still in flight arrive first, so no server logs a send on a closed socket.
        while now_ns() < deadline and outstanding(self.conns, self.n) > 0:
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
