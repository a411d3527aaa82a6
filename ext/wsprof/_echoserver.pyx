# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""The cheap echo server of ``wsprof client-bench``: WebSocket echo in C, one epoll loop.

In broadcast mode every data message goes to every connection instead (the fan-out
ceiling of the broadcast client), each read's messages in one send per member."""
from cpython.bytes cimport PyBytes_FromStringAndSize
from cpython.exc cimport PyErr_CheckSignals
from libc.errno cimport errno, EAGAIN, EINTR
from libc.stdint cimport uint8_t, uint64_t
from libc.stdlib cimport calloc, free
from posix.unistd cimport close

from wsprof._buffer cimport Buffer, buf_append, buf_consume, buf_free, buf_reserve
from wsprof._clock cimport now_ns
from wsprof._frames cimport (
    OP_CLOSE, OP_PING, OP_PONG, MAX_HEADER, WsParser, parser_init, write_frame, ws_next,
)
from wsprof._posix cimport (
    accept4, c_recv, c_send, epoll_create1, epoll_ctl, epoll_event, epoll_wait, memmem,
    setsockopt, EPOLL_CLOEXEC, EPOLL_CTL_ADD, EPOLL_CTL_MOD, EPOLLERR, EPOLLHUP, EPOLLIN,
    EPOLLOUT, IPPROTO_TCP, MAX_EVENTS, MSG_NOSIGNAL, SIGNAL_CHECK_MS, SOCK_CLOEXEC,
    SOCK_NONBLOCK, TCP_NODELAY,
)

from wsprof.protocol.websocket import (
    BAD_REQUEST_RESPONSE,
    MAX_HANDSHAKE_BYTES,
    build_handshake_response,
    request_key,
)

cdef enum:
    READ_CHUNK = 65536
    # The echo server accepts larger messages than a client would (4 x MAX_MESSAGE_SIZE).
    ECHO_MAX_MESSAGE = 64 * 1024 * 1024


cdef struct EchoConn:
    int fd
    int upgraded
    int closing
    Buffer rbuf
    Buffer wbuf
    WsParser p


cdef class _EchoServer:
    cdef EchoConn* conns
    cdef int cap
    cdef int epfd
    cdef Buffer out
    cdef uint64_t messages
    cdef bint fanout
    cdef Buffer fan              # broadcast mode: this read's data frames, for every member
    cdef int* members
    cdef int nmembers

    def __cinit__(self, int cap, bint fanout=False):
        self.cap = cap
        self.fanout = fanout
        self.conns = <EchoConn*>calloc(cap, sizeof(EchoConn))
        self.members = <int*>calloc(cap, sizeof(int))
        self.epfd = -1
        if self.conns == NULL or self.members == NULL:
            raise MemoryError()

    def __dealloc__(self):
        cdef int i
        for i in range(self.cap):
            if self.conns[i].fd > 0:
                close(self.conns[i].fd)
            buf_free(&self.conns[i].rbuf)
            buf_free(&self.conns[i].wbuf)
            buf_free(&self.conns[i].p.frag)
        free(self.conns)
        free(self.members)
        buf_free(&self.out)
        buf_free(&self.fan)
        if self.epfd >= 0:
            close(self.epfd)

    cdef void drop(self, int fd) noexcept:
        cdef EchoConn* c = &self.conns[fd]
        cdef int j
        if c.upgraded:
            for j in range(self.nmembers):
                if self.members[j] == fd:
                    self.nmembers -= 1
                    self.members[j] = self.members[self.nmembers]
                    break
        close(fd)
        c.fd = 0
        c.rbuf.len = c.wbuf.len = 0
        c.upgraded = c.closing = 0
        parser_init(&c.p, ECHO_MAX_MESSAGE, True)

    cdef int flush(self, int fd, const uint8_t* data, size_t n) noexcept:
        cdef EchoConn* c = &self.conns[fd]
        cdef ssize_t r = 0
        cdef epoll_event ev
        if c.wbuf.len == 0:
            r = c_send(fd, data, n, MSG_NOSIGNAL)
            if r < 0:
                if errno != EAGAIN:
                    self.drop(fd)
                    return -1
                r = 0
            if <size_t>r == n:
                return 0
        if buf_append(&c.wbuf, data + r, n - r) < 0:
            self.drop(fd)
            return -1
        ev.events = EPOLLIN | EPOLLOUT
        ev.data.fd = fd
        epoll_ctl(self.epfd, EPOLL_CTL_MOD, fd, &ev)
        return 0

    cdef int upgrade(self, int fd) except -1:
        """Answer the opening handshake once its header block is in; 0 while it is not."""
        cdef EchoConn* c = &self.conns[fd]
        cdef size_t end
        cdef const uint8_t* found = <const uint8_t*>memmem(c.rbuf.data, c.rbuf.len, b"\r\n\r\n", 4)
        if found == NULL:
            if c.rbuf.len > MAX_HANDSHAKE_BYTES:
                self.drop(fd)
            return 0
        end = found - c.rbuf.data + 4
        key = request_key(PyBytes_FromStringAndSize(<char*>c.rbuf.data, end))
        if key is None:
            resp = BAD_REQUEST_RESPONSE
            self.flush(fd, resp, len(resp))
            self.drop(fd)
            return 0
        resp = build_handshake_response(key)
        if self.flush(fd, resp, len(resp)) < 0:
            return 0
        c.upgraded = 1
        self.members[self.nmembers] = fd
        self.nmembers += 1
        buf_consume(&c.rbuf, end)
        return 1

    cdef int echo(self, int fd) except -1:
        """Read what is there, echo every complete message unmasked in one send."""
        cdef EchoConn* c = &self.conns[fd]
        cdef ssize_t r
        cdef size_t pos = 0, dlen
        cdef int op, rc = 0
        cdef uint8_t* data
        if buf_reserve(&c.rbuf, READ_CHUNK) < 0:
            raise MemoryError()
        r = c_recv(fd, c.rbuf.data + c.rbuf.len, c.rbuf.cap - c.rbuf.len, 0)
        if r <= 0:
            if r < 0 and (errno == EAGAIN or errno == EINTR):
                return 0
            self.drop(fd)
            return 0
        c.rbuf.len += r
        if not c.upgraded and self.upgrade(fd) == 0:
            return 0
        self.out.len = 0
        self.fan.len = 0
        while True:
            rc = ws_next(&c.p, c.rbuf.data, c.rbuf.len, &pos, &op, &data, &dlen)
            if rc <= 0:
                break
            if op == OP_PONG:
                continue
            if self.fanout and op < OP_CLOSE:
                if buf_reserve(&self.fan, dlen + MAX_HEADER) < 0:
                    raise MemoryError()
                self.fan.len += write_frame(self.fan.data + self.fan.len, 0x80 | op, data, dlen,
                                            NULL)
                self.messages += 1
                continue
            if buf_reserve(&self.out, dlen + MAX_HEADER) < 0:
                raise MemoryError()
            self.out.len += write_frame(self.out.data + self.out.len,
                                        0x80 | (OP_PONG if op == OP_PING else op), data, dlen, NULL)
            self.messages += op < OP_CLOSE
            if op == OP_CLOSE:
                c.closing = 1
                break
        if self.fan.len:
            self.fan_out()
        if c.fd <= 0 or self.out.len and self.flush(fd, self.out.data, self.out.len) < 0:
            return 0
        if rc < 0 or c.closing:
            self.drop(fd)
            return 0
        buf_consume(&c.rbuf, pos)
        return 0

    cdef void fan_out(self) noexcept:
        """Send this read's broadcast frames to every member (backwards: drop swaps in the last)."""
        cdef int j = self.nmembers - 1
        while j >= 0:
            if j < self.nmembers:
                self.flush(self.members[j], self.fan.data, self.fan.len)
            j -= 1

    cdef int accept_all(self, int listen_fd) noexcept:
        cdef int fd, one = 1
        cdef epoll_event ev
        while True:
            fd = accept4(listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC)
            if fd < 0:
                return 0
            if fd >= self.cap:
                close(fd)
                continue
            setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(int))
            self.conns[fd].fd = fd
            parser_init(&self.conns[fd].p, ECHO_MAX_MESSAGE, True)
            ev.events = EPOLLIN
            ev.data.fd = fd
            epoll_ctl(self.epfd, EPOLL_CTL_ADD, fd, &ev)

    cdef int writable(self, int fd) noexcept:
        cdef EchoConn* c = &self.conns[fd]
        cdef ssize_t r = c_send(fd, c.wbuf.data, c.wbuf.len, MSG_NOSIGNAL)
        cdef epoll_event ev
        if r > 0:
            buf_consume(&c.wbuf, r)
        elif errno != EAGAIN:
            self.drop(fd)
            return -1
        if c.wbuf.len == 0:
            ev.events = EPOLLIN
            ev.data.fd = fd
            epoll_ctl(self.epfd, EPOLL_CTL_MOD, fd, &ev)
        return 0

    def serve(self, int listen_fd, int stop_fd, double max_seconds) -> int:
        """Serve until ``stop_fd`` is readable or at EOF, or ``max_seconds`` have passed."""
        cdef epoll_event events[MAX_EVENTS]
        cdef epoll_event ev
        cdef int nev, i, fd
        cdef uint64_t deadline = now_ns() + <uint64_t>(max_seconds * 1e9)
        cdef EchoConn* c
        self.epfd = epoll_create1(EPOLL_CLOEXEC)
        ev.events = EPOLLIN
        ev.data.fd = listen_fd
        epoll_ctl(self.epfd, EPOLL_CTL_ADD, listen_fd, &ev)
        ev.data.fd = stop_fd
        epoll_ctl(self.epfd, EPOLL_CTL_ADD, stop_fd, &ev)
        while now_ns() < deadline:
            nev = epoll_wait(self.epfd, events, MAX_EVENTS, SIGNAL_CHECK_MS)
            PyErr_CheckSignals()   # Ctrl-C / SIGTERM end the server within SIGNAL_CHECK_MS
            for i in range(nev):
                fd = events[i].data.fd
                if fd == stop_fd:
                    return self.messages
                if fd == listen_fd:
                    self.accept_all(listen_fd)
                    continue
                c = &self.conns[fd]
                if c.fd <= 0:
                    continue
                if events[i].events & EPOLLOUT and c.wbuf.len and self.writable(fd) < 0:
                    continue
                if events[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR):
                    self.echo(fd)
        return self.messages


def serve_echo(int listen_fd, int stop_fd, double max_seconds, int max_fds = 65536,
               bint broadcast = False) -> int:
    """Echo WebSocket messages on ``listen_fd`` (non-blocking, listening) until told to stop.

    The server side of client-bench: it unmasks in C and echoes each message as
    one unmasked frame, every reply of a read in one send, so that its own cost
    stays near the kernel floor. It stops when ``stop_fd`` becomes readable
    (the parent closed the pipe or died) or after ``max_seconds``; a signal
    (Ctrl-C) raises out of it within SIGNAL_CHECK_MS.
    With ``broadcast`` every data message goes to every connection instead.
    Returns the number of data messages echoed (or broadcast).
    """
    return _EchoServer(max_fds, broadcast).serve(listen_fd, stop_fd, max_seconds)
