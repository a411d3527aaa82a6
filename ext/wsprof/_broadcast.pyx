# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""The fast broadcast client: one epoll loop in C, every connection a recipient, a few senders.

A fan-out server delivers recipients x broadcasts messages, so the client reads far
more than it writes: each readable connection gets one recv of everything available
and every frame in it is parsed in place (coalesced reads). A delivery costs a frame
parse, 16 hex digits, one bit test in the recipient's bitmap over broadcast ids and a
histogram increment; no Python object is made per delivery. Python runs at set-up
(wsprof._setup), for rare events and every SIGNAL_CHECK_MS for signals. The message
bytes come from wsprof.protocol.broadcast; this loop only writes the id into them.
"""
from cpython.bytes cimport PyBytes_FromStringAndSize, PyBytes_AS_STRING, PyBytes_GET_SIZE
from cpython.exc cimport PyErr_CheckSignals
from libc.errno cimport errno, EAGAIN, EINTR
from libc.stdint cimport uint8_t, uint64_t
from libc.stdlib cimport calloc, free
from libc.string cimport memcpy, strerror
from posix.time cimport CLOCK_MONOTONIC
from posix.unistd cimport close, read

from wsprof._buffer cimport buf_free, buf_reserve
from wsprof._clock cimport now_ns, thread_cpu_ns
from wsprof._frames cimport (
    OP_CLOSE, OP_PING, OP_PONG, OP_TEXT, MAX_CONTROL_PAYLOAD, MAX_HEADER, parser_init,
    write_frame, ws_next,
)
from wsprof._conn cimport (
    CS_CONNECTING, CS_CLOSING, CS_DEAD, CS_HANDSHAKE, CS_READY, SENT, SEND_BACKLOG, SEND_NOMEM,
    WBUF_LIMIT, conn_drop, conn_flush, conn_keep, conn_recv, conn_send, set_events, view,
)
from wsprof._posix cimport (
    epoll_create1, epoll_ctl, epoll_event, epoll_wait, timer_at, timerfd_create, EPOLL_CLOEXEC,
    EPOLL_CTL_ADD, EPOLLERR, EPOLLHUP, EPOLLIN, EPOLLOUT, MAX_EVENTS, SIGNAL_CHECK_MS,
    TFD_CLOEXEC, TFD_NONBLOCK,
)
from wsprof._session cimport SIO_ENDED, SIO_EVENT, SIO_PING, sio_kind, starts_with
from wsprof._setup cimport Setup

from wsprof.client.base import LoadError
from wsprof.client.broadcast_base import ERROR_KINDS
from wsprof.protocol.socketio import event_key
from wsprof.protocol.websocket import frame_error

cdef uint32_t TIMER_TOKEN = 0xFFFFFFFF
cdef const char* HEX = b"0123456789abcdef"

assert len(ERROR_KINDS) == K_COUNT


cdef class BroadcastRun:
    """One broadcast run: every connection, the id tables, one epoll loop."""

    def __cinit__(self):
        self.epfd = -1
        self.timerfd = -1

    def __init__(self, *, list endpoints, int recipients, int senders, bint socketio,
                 bytes template, int id_offset, bytes prefix, int in_flight, double rate,
                 double max_message_size, Histogram histogram, Histogram cross) -> None:
        cdef int i
        cdef Setup setup
        self.n = recipients
        self.nsenders = senders
        self.socketio = socketio
        self.in_flight = in_flight
        self.open_loop = rate > 0
        self.interval_ns = <uint64_t>(1e9 / rate) if rate > 0 else 0
        self.hist = histogram
        self.cross = cross
        self.kept = []
        self.seen = {}
        self.first_error = {}
        self.setups = [
            Setup(host=host, port=port, path=path, connections=recipients, socketio=socketio,
                  msgpack=False, send_frames=[])
            for host, port, path in endpoints
        ]
        self.conns = <Conn*>calloc(recipients, sizeof(Conn))
        self.server_of = <int*>calloc(recipients, sizeof(int))
        self.bits = <uint8_t**>calloc(recipients, sizeof(uint8_t*))
        self.dirty = <int*>calloc(recipients, sizeof(int))
        self.sessions = <Session*>calloc(len(endpoints), sizeof(Session))
        self.cap = FIRST_CAP
        self.sent_ns = <uint64_t*>calloc(self.cap, sizeof(uint64_t))
        self.remaining = <uint32_t*>calloc(self.cap, sizeof(uint32_t))
        self.sender_of = <int32_t*>calloc(self.cap, sizeof(int32_t))
        self.msg = <uint8_t*>calloc(len(template) + 1, 1)
        if (self.conns == NULL or self.server_of == NULL or self.bits == NULL
                or self.dirty == NULL or self.sessions == NULL or self.sent_ns == NULL
                or self.remaining == NULL or self.sender_of == NULL or self.msg == NULL):
            raise MemoryError()
        for i in range(len(endpoints)):
            setup = self.setups[i]
            self.sessions[i] = setup.sio
        for i in range(recipients):
            self.conns[i].fd = -1
            self.server_of[i] = i % len(endpoints)
            parser_init(&self.conns[i].p, <uint64_t>max_message_size, False)
            self.bits[i] = <uint8_t*>calloc(self.cap // 8, 1)
            if self.bits[i] == NULL:
                raise MemoryError()
        setup = self.setups[0]
        memcpy(self.mask_key, <char*>setup.mask_key, 4)
        self.tmpl = self.hold(template)
        memcpy(self.msg, self.tmpl.data, self.tmpl.len)
        self.id_off = id_offset
        self.prefix = self.hold(prefix)

    def __dealloc__(self):
        cdef int i
        if self.conns != NULL:
            for i in range(self.n):
                if self.conns[i].fd >= 0:
                    close(self.conns[i].fd)
                buf_free(&self.conns[i].rbuf)
                buf_free(&self.conns[i].wbuf)
                buf_free(&self.conns[i].p.frag)
            free(self.conns)
        if self.bits != NULL:
            for i in range(self.n):
                free(self.bits[i])
            free(self.bits)
        free(self.server_of)
        free(self.dirty)
        free(self.sessions)
        free(self.sent_ns)
        free(self.remaining)
        free(self.sender_of)
        free(self.msg)
        buf_free(&self.wout)
        if self.epfd >= 0:
            close(self.epfd)
        if self.timerfd >= 0:
            close(self.timerfd)

    cdef Bytes hold(self, bytes data):
        self.kept.append(data)
        return view(data)

    # -- errors (rare) -------------------------------------------------------

    cdef int lose(self, int idx, int kind, str why) except -1:
        cdef Conn* c = &self.conns[idx]
        if c.state == CS_DEAD:
            return 0
        if c.state < CS_READY:
            self.fatal = LoadError(f"connection {idx} failed during setup: {why}")
        self.counts[kind] += 1
        self.first_error.setdefault(ERROR_KINDS[kind], why)
        self.drop(idx)
        return 0

    cdef void drop(self, int idx) noexcept:
        cdef int was = conn_drop(&self.conns[idx])
        self.closing -= was == CS_CLOSING
        self.alive -= CS_READY <= was < CS_DEAD

    cdef int note(self, int kind, str what) except -1:
        """Something that is not a broadcast arrived: counted in C, named (bounded) here."""
        self.counts[kind] += 1
        if self.notes < MAX_NOTES:
            self.notes += 1
            self.seen[what] = self.seen.get(what, 0) + 1
        return 0

    # -- writing -------------------------------------------------------------

    cdef int sent(self, int idx, SendResult result) except -1:
        if result == SENT:
            return 0
        if result == SEND_NOMEM:
            raise MemoryError()
        if result == SEND_BACKLOG:
            self.lose(idx, K_SEND_BACKLOG, f"more than {WBUF_LIMIT} bytes queued")
        else:
            self.lose(idx, K_RESET, f"send failed: {strerror(errno).decode()}")
        return 1

    cdef int write(self, int idx, const uint8_t* data, size_t n) except -1:
        cdef Conn* c = &self.conns[idx]
        if c.state == CS_DEAD:
            return 1
        if self.sent(idx, conn_send(c, data, n)) != 0:
            return 1
        if c.wbuf.len > c.woff:
            set_events(self.epfd, c, idx, EPOLLIN | EPOLLOUT)
        return 0

    cdef int grow(self) except -1:
        """Double the id tables and every recipient's bitmap."""
        if self.cap * 2 > MAX_IDS:
            raise LoadError(f"more than {MAX_IDS} broadcasts in one run: shorten it")
        if grow_ids(self.cap, &self.sent_ns, &self.remaining, &self.sender_of,
                    self.bits, self.n) < 0:
            raise MemoryError()
        self.cap *= 2
        return 0

    cdef int stage(self, int s, uint64_t stamp) except -1:
        """Queue the next broadcast on sender ``s`` (sent by flush_dirty, coalesced)."""
        cdef Conn* c = &self.conns[s]
        cdef uint64_t bid = self.next_id
        cdef int k
        cdef size_t n = self.tmpl.len
        if c.state != CS_READY:
            return 0
        if bid == self.cap:
            self.grow()
        self.next_id += 1
        self.sent_ns[bid] = stamp
        self.remaining[bid] = self.n
        self.sender_of[bid] = s
        for k in range(ID_DIGITS):
            self.msg[self.id_off + k] = HEX[(bid >> (60 - 4 * k)) & 15]
        if c.wbuf.len - c.woff + n > WBUF_LIMIT:
            self.counts[K_SCHEDULE_BACKLOG] += 1
            self.lose(s, K_SEND_BACKLOG, f"more than {WBUF_LIMIT} bytes queued")
            return 0
        if buf_reserve(&c.wbuf, n + MAX_HEADER) < 0:
            raise MemoryError()
        c.wbuf.len += write_frame(c.wbuf.data + c.wbuf.len, 0x80 | OP_TEXT, self.msg, n,
                                  self.mask_key)
        if not c.dirty:
            c.dirty = 1
            self.dirty[self.ndirty] = s
            self.ndirty += 1
        return 0

    cdef int flush_dirty(self) except -1:
        cdef int j, idx
        cdef Conn* c
        for j in range(self.ndirty):
            idx = self.dirty[j]
            c = &self.conns[idx]
            c.dirty = 0
            if c.state == CS_DEAD:
                continue
            if self.sent(idx, conn_flush(c)) == 0 and c.wbuf.len > c.woff:
                set_events(self.epfd, c, idx, EPOLLIN | EPOLLOUT)
        self.ndirty = 0
        return 0

    # -- reading -------------------------------------------------------------

    cdef int delivered(self, int idx, uint64_t bid, uint64_t now) except -1:
        """One broadcast reached recipient ``idx`` (the per-delivery path: C only)."""
        cdef uint8_t* byte
        cdef uint8_t bit
        cdef uint64_t latency
        cdef int s
        if bid >= self.next_id:
            self.counts[K_UNKNOWN_ID] += 1
            return 0
        byte = &self.bits[idx][bid >> 3]
        bit = <uint8_t>(1 << (bid & 7))
        if byte[0] & bit:
            self.duplicates += 1
            return 0
        byte[0] |= bit
        s = self.sender_of[bid]
        if self.first_id <= bid < self.last_id:
            self.deliveries += 1
            latency = now - self.sent_ns[bid] if now > self.sent_ns[bid] else 0
            self.hist.record_ns(latency)
            if self.server_of[idx] != self.server_of[s]:
                self.cross.record_ns(latency)
        self.remaining[bid] -= 1
        if self.remaining[bid] == 0:
            if self.phase == PH_DRAIN and self.first_id <= bid < self.last_id:
                self.window_left -= 1
            elif not self.open_loop and (self.phase == PH_WARMUP or self.phase == PH_MEASURE):
                return self.stage(s, now)
        return 0

    cdef int on_message(self, int idx, int op, uint8_t* data, size_t n,
                        uint64_t now) except -1:
        cdef Conn* c = &self.conns[idx]
        cdef uint64_t bid
        cdef uint8_t out[MAX_HEADER + MAX_CONTROL_PAYLOAD]
        cdef const Session* sio
        cdef int kind
        if op == OP_PING:
            return self.write(idx, out, write_frame(out, 0x80 | OP_PONG, data, n, self.mask_key))
        if op == OP_PONG:
            return 0
        if op == OP_CLOSE:
            if c.state == CS_CLOSING:
                self.drop(idx)
            else:
                self.lose(idx, K_CLOSED_BY_SERVER, "the server sent a Close frame")
            return 1
        if c.state == CS_CLOSING:
            return 0
        if c.state < CS_READY:
            return self.setup_message(idx, op, data, n)
        if not self.socketio:
            if op == OP_TEXT and n >= ID_DIGITS and parse_id(data, &bid) == 0:
                self.delivered(idx, bid, now)
            else:
                self.counts[K_MALFORMED] += 1
            return 0
        if op != OP_TEXT:
            if c.skip_bin > 0:
                c.skip_bin -= 1
                return 0
            return self.note(K_UNEXPECTED, "binary messages")
        if starts_with(data, n, self.prefix):
            if n >= self.prefix.len + ID_DIGITS and parse_id(data + self.prefix.len, &bid) == 0:
                self.delivered(idx, bid, now)
            else:
                self.counts[K_MALFORMED] += 1
            return 0
        sio = &self.sessions[self.server_of[idx]]
        kind = sio_kind(sio, data, n, &c.skip_bin)
        if kind == SIO_PING:
            return self.write(idx, sio.pong.data, sio.pong.len)
        if kind == SIO_ENDED:
            self.lose(idx, K_CLOSED_BY_SERVER, "the server closed the Socket.IO session")
            return 1
        if kind == SIO_EVENT:
            if self.notes >= MAX_NOTES:
                self.counts[K_UNEXPECTED_EVENT] += 1
                return 0
            key, _ = event_key(PyBytes_FromStringAndSize(<char*>data, min(n, 512)))
            return self.note(K_UNEXPECTED_EVENT, f"{key} events")
        return self.note(K_UNEXPECTED, "other messages")

    cdef int setup_message(self, int idx, int op, const uint8_t* data, size_t n) except -1:
        cdef Setup setup = self.setups[self.server_of[idx]]
        reply = setup.message(&self.conns[idx], op, PyBytes_FromStringAndSize(<char*>data, n))
        if self.conns[idx].state == CS_READY:
            self.ready += 1
            self.alive += 1
        if reply is None:
            return 0
        return self.write(idx, <const uint8_t*>PyBytes_AS_STRING(reply), PyBytes_GET_SIZE(reply))

    cdef int on_readable(self, int idx) except -1:
        cdef Conn* c = &self.conns[idx]
        cdef uint8_t* buf
        cdef size_t blen, pos = 0, dlen
        cdef ssize_t r = conn_recv(c, self.scratch, SCRATCH, &buf, &blen)
        cdef int op, rc
        cdef uint8_t* data
        cdef uint64_t now
        cdef Setup setup
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
            setup = self.setups[self.server_of[idx]]
            if setup.upgrade_response(c, idx) == 0:
                return 0
            if c.state == CS_READY:
                self.ready += 1
                self.alive += 1
            buf = c.rbuf.data
            blen = c.rbuf.len
        while True:
            rc = ws_next(&c.p, buf, blen, &pos, &op, &data, &dlen)
            if rc == 0:
                break
            if rc < 0:
                self.lose(idx, K_PROTOCOL,
                          f"protocol error: {frame_error(c.p.err, c.p.err_arg, c.p.max_size)}")
                return 0
            if self.on_message(idx, op, data, dlen, now) != 0 or c.state == CS_DEAD:
                return 0
        if conn_keep(c, buf, blen, pos) < 0:
            raise MemoryError()
        return 0

    cdef int on_writable(self, int idx) except -1:
        cdef Conn* c = &self.conns[idx]
        cdef Setup setup
        if c.state == CS_CONNECTING:
            setup = self.setups[self.server_of[idx]]
            req = setup.upgrade_request(c, idx)
            self.pending -= 1
            set_events(self.epfd, c, idx, EPOLLIN)
            return self.write(idx, <const uint8_t*>PyBytes_AS_STRING(req), PyBytes_GET_SIZE(req))
        if self.sent(idx, conn_flush(c)) == 0 and c.wbuf.len == 0:
            set_events(self.epfd, c, idx, EPOLLIN)
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

    cdef int on_timer(self) except -1:
        """Open loop: stage every broadcast whose intended time has come, round robin."""
        cdef uint64_t expirations, now
        cdef int s, tries
        read(self.timerfd, &expirations, 8)
        if self.phase != PH_WARMUP and self.phase != PH_MEASURE:
            return 0
        now = now_ns()
        while self.next_due_ns <= now and self.alive > 0:
            tries = 0
            while tries < self.nsenders:
                s = self.rr % self.nsenders
                self.rr += 1
                tries += 1
                if self.conns[s].state == CS_READY:
                    break
            if self.conns[s].state != CS_READY:
                break
            self.stage(s, self.next_due_ns)
            self.next_due_ns += self.interval_ns
        timer_at(self.timerfd, self.next_due_ns)
        return 0

    # -- the run -------------------------------------------------------------

    cdef int wait_once(self, epoll_event* events, int timeout_ms) except -1:
        cdef int nev, i
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
        if now >= self.next_signal_check_ns:
            self.next_signal_check_ns = now + SIGNAL_CHECK_MS * 1000000ULL
            PyErr_CheckSignals()
        for i in range(nev):
            self.dispatch(&events[i])
            if self.fatal is not None:
                raise self.fatal
        self.flush_dirty()
        return nev

    cdef int connect_all(self, double timeout, epoll_event* events) except -1:
        cdef uint64_t now, deadline = now_ns() + <uint64_t>(timeout * 1e9)
        cdef Setup setup
        while self.ready < self.n:
            while self.pending < MAX_PENDING_CONNECTS and self.next_connect < self.n:
                setup = self.setups[self.server_of[self.next_connect]]
                setup.connect_tcp(&self.conns[self.next_connect], self.epfd, self.next_connect)
                self.pending += 1
                self.next_connect += 1
            now = now_ns()
            if now >= deadline:
                raise LoadError(f"{self.n - self.ready} of {self.n} connections were not "
                                f"ready after {timeout:g} s")
            self.wait_once(events, min(50, <int>((deadline - now) // 1000000) + 1))
            if self.alive < self.ready:
                detail = "; ".join(f"{k}: {v}" for k, v in self.first_error.items())
                raise LoadError(f"a connection was lost before the load started ({detail})")
        return 0

    cdef int start_window(self) except -1:
        self.phase = PH_MEASURE
        if self.on_window is not None:
            self.on_window("start")
        self.first_id = self.next_id
        self.t_start = now_ns()
        self.cpu_start = thread_cpu_ns()
        return 0

    cdef int end_window(self) except -1:
        cdef uint64_t bid
        self.t_end = now_ns()
        self.cpu_end = thread_cpu_ns()
        self.last_id = self.next_id
        self.phase = PH_DRAIN
        self.window_left = 0
        for bid in range(self.first_id, self.last_id):
            self.window_left += self.remaining[bid] > 0
        if self.on_window is not None:
            self.on_window("end")
        return 0

    def run(self, *, double warmup, double duration, double drain, double connect_timeout,
            double close_timeout=2.0, on_window=None) -> dict:
        """Connect, warm up, measure, drain, close; the window's raw figures."""
        cdef epoll_event events[MAX_EVENTS]
        cdef epoll_event ev
        cdef uint64_t now, t_next, t_window, t_stop = 0
        cdef int s, _k, timeout_ms
        self.on_window = on_window
        self.first_id = self.last_id = 0xFFFFFFFFFFFFFFFFULL
        self.epfd = epoll_create1(EPOLL_CLOEXEC)
        if self.epfd < 0:
            raise OSError(errno, "epoll_create1 failed")
        self.phase = PH_CONNECT
        self.connect_all(connect_timeout, events)
        now = now_ns()
        t_window = now + <uint64_t>(warmup * 1e9)
        self.phase = PH_WARMUP
        if warmup <= 0:
            self.start_window()
            now = self.t_start
            t_window = now + <uint64_t>(duration * 1e9)
        if self.open_loop:
            self.timerfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC)
            ev.events = EPOLLIN
            ev.data.u32 = TIMER_TOKEN
            epoll_ctl(self.epfd, EPOLL_CTL_ADD, self.timerfd, &ev)
            self.next_due_ns = now
            timer_at(self.timerfd, now)
        else:
            for s in range(self.nsenders):
                for _k in range(self.in_flight):
                    self.stage(s, now)
            self.flush_dirty()
        while True:
            now = now_ns()
            if self.phase == PH_WARMUP and now >= t_window:
                self.start_window()
                now = self.t_start
                t_window = now + <uint64_t>(duration * 1e9)
            if self.phase == PH_MEASURE and now >= t_window:
                self.end_window()
                t_stop = now_ns() + <uint64_t>(drain * 1e9)
            if self.phase == PH_DRAIN and (self.window_left == 0 or now >= t_stop):
                break
            if self.alive == 0:
                break
            t_next = t_stop if self.phase == PH_DRAIN else t_window
            timeout_ms = <int>((t_next - now) // 1000000) + 1 if t_next > now else 0
            self.wait_once(events, timeout_ms)
        ended_early = self.phase != PH_DRAIN
        if ended_early:
            if self.phase == PH_WARMUP:
                self.start_window()
            self.end_window()
        self.phase = PH_DONE
        self.close_all(close_timeout, events)
        errors = {ERROR_KINDS[i]: int(self.counts[i]) for i in range(K_COUNT) if self.counts[i]}
        if ended_early:
            detail = "; ".join(f"{k}: {v}" for k, v in self.first_error.items())
            raise LoadError(f"every connection was lost during the run ({detail})")
        return {
            "broadcasts": int(self.last_id - self.first_id),
            "deliveries": int(self.deliveries),
            "duplicates": int(self.duplicates),
            "elapsed_s": (self.t_end - self.t_start) / 1e9,
            "cpu_s": (self.cpu_end - self.cpu_start) / 1e9,
            "errors": errors,
            "seen": dict(self.seen),
        }

    cdef int close_all(self, double timeout, epoll_event* events) except -1:
        """Send (Socket.IO disconnect +) Close everywhere and wait, bounded, for the server."""
        cdef int i
        cdef Conn* c
        cdef Setup setup
        cdef uint64_t deadline
        for i in range(self.n):
            c = &self.conns[i]
            if c.state == CS_READY:
                setup = self.setups[self.server_of[i]]
                if self.write(i, <const uint8_t*>PyBytes_AS_STRING(setup.goodbye),
                              PyBytes_GET_SIZE(setup.goodbye)) == 0:
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
