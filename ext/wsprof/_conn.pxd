# One load-client connection in C: its state, buffers and FIFO of send times, and the
# operations on it that need no Python (used by _loadclient.pyx).
from libc.errno cimport errno, EAGAIN, EINTR
from libc.stdint cimport uint8_t, uint32_t, uint64_t
from libc.stdlib cimport calloc, free
from libc.string cimport memcmp

from wsprof._buffer cimport Buffer, buf_append
from wsprof._frames cimport WsParser
from wsprof._posix cimport c_send, epoll_ctl, epoll_event, EPOLL_CTL_MOD, MSG_NOSIGNAL


cdef enum ConnState:
    # Order matters: every state before CS_READY is setup, CS_DEAD is last.
    CS_IDLE
    CS_CONNECTING
    CS_HANDSHAKE
    CS_SIO_OPEN
    CS_SIO_CONNECT
    CS_READY
    CS_CLOSING
    CS_DEAD

cdef enum SendResult:
    SENT = 0
    SEND_FAILED = -1      # errno says why
    SEND_BACKLOG = -2     # more than WBUF_LIMIT bytes queued
    SEND_NOMEM = -3

cdef enum:
    WBUF_LIMIT = 64 * 1024 * 1024
    RING_LIMIT = 1 << 20

cdef struct Bytes:
    # A view of bytes owned by a Python object that outlives every use.
    const uint8_t* data
    size_t len

cdef struct Conn:
    int fd
    ConnState state
    uint32_t events
    Buffer rbuf
    Buffer wbuf
    size_t woff           # bytes of wbuf already sent
    uint64_t* ring        # send (closed loop) or intended (open loop) times, FIFO
    uint32_t rhead
    uint32_t rcount
    uint32_t ringcap
    uint32_t to_send
    int match_idx         # Socket.IO binary event: header matched, attachment awaited
    int skip_bin          # attachments of an unmatched binary event still to skip
    int dirty
    WsParser p


cdef inline bint starts_with(const uint8_t* data, size_t n, Bytes prefix) noexcept nogil:
    return n >= prefix.len and memcmp(data, prefix.data, prefix.len) == 0


cdef inline int set_events(int epfd, Conn* c, uint32_t idx, uint32_t events) noexcept nogil:
    cdef epoll_event ev
    if c.events == events:
        return 0
    ev.events = events
    ev.data.u32 = idx
    c.events = events
    return epoll_ctl(epfd, EPOLL_CTL_MOD, c.fd, &ev)


cdef inline SendResult conn_send(Conn* c, const uint8_t* data, size_t n) noexcept nogil:
    """Send now if nothing is queued; queue what the kernel did not take."""
    cdef ssize_t r = 0
    if c.wbuf.len == c.woff:
        c.wbuf.len = c.woff = 0
        r = c_send(c.fd, data, n, MSG_NOSIGNAL)
        if r == <ssize_t>n:
            return SENT
        if r < 0:
            if errno != EAGAIN and errno != EINTR:
                return SEND_FAILED
            r = 0
    if c.wbuf.len + n - <size_t>r > WBUF_LIMIT:
        return SEND_BACKLOG
    if buf_append(&c.wbuf, data + r, n - <size_t>r) < 0:
        return SEND_NOMEM
    return SENT


cdef inline SendResult conn_flush(Conn* c) noexcept nogil:
    """Send what is queued, as much as the kernel takes."""
    cdef ssize_t r
    if c.wbuf.len > c.woff:
        r = c_send(c.fd, c.wbuf.data + c.woff, c.wbuf.len - c.woff, MSG_NOSIGNAL)
        if r < 0:
            return SENT if errno == EAGAIN or errno == EINTR else SEND_FAILED
        c.woff += r
    if c.wbuf.len == c.woff:
        c.wbuf.len = c.woff = 0
    return SENT


cdef inline int ring_push(Conn* c, uint64_t stamp) noexcept nogil:
    """Append a send time, doubling the ring when full; -1 at RING_LIMIT, -2 out of memory."""
    cdef uint64_t* grown
    cdef uint32_t k
    if c.rcount == c.ringcap:
        if c.ringcap >= RING_LIMIT:
            return -1
        grown = <uint64_t*>calloc(c.ringcap * 2, sizeof(uint64_t))
        if grown == NULL:
            return -2
        for k in range(c.rcount):
            grown[k] = c.ring[(c.rhead + k) % c.ringcap]
        free(c.ring)
        c.ring = grown
        c.rhead = 0
        c.ringcap *= 2
    c.ring[(c.rhead + c.rcount) % c.ringcap] = stamp
    c.rcount += 1
    return 0


cdef inline uint64_t ring_pop(Conn* c) noexcept nogil:
    """The oldest send time (the caller checked rcount > 0)."""
    cdef uint64_t stamp = c.ring[c.rhead]
    c.rhead = (c.rhead + 1) % c.ringcap
    c.rcount -= 1
    return stamp
