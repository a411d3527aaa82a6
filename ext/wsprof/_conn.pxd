# One load-client connection in C: its state, buffers and FIFO of send times, and the
# operations on it that need no Python (used by _loadclient.pyx).
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE
from libc.errno cimport errno, EAGAIN, EINTR
from libc.stdint cimport uint8_t, uint32_t, uint64_t
from libc.stdlib cimport calloc, free
from posix.unistd cimport close

from wsprof._buffer cimport Buffer, buf_append, buf_consume, buf_reserve
from wsprof._frames cimport WsParser
from wsprof._posix cimport c_recv, c_send, epoll_ctl, epoll_event, EPOLL_CTL_MOD, MSG_NOSIGNAL


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
    READ_CHUNK = 65536    # the least room a recv into rbuf gets

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
    uint64_t ack_next     # the ack id of the next message sent (--ack)
    int dirty
    WsParser p

cdef struct Schedule:
    # The open loop: intended send times interval_ns apart, dealt round robin.
    uint64_t interval_ns
    uint64_t next_ns
    uint32_t rr
    int* dirty            # connections given a send since the last flush
    int ndirty


cdef inline Bytes view(bytes data):
    """A C view of ``data``; the caller keeps ``data`` alive as long as the view."""
    cdef Bytes v
    v.data = <const uint8_t*>PyBytes_AS_STRING(data)
    v.len = PyBytes_GET_SIZE(data)
    return v


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


cdef inline int ring_init(Conn* c, uint32_t cap) noexcept nogil:
    """Give a ready connection its ring of ``cap`` send times; -1 when out of memory."""
    c.ringcap = cap
    c.ring = <uint64_t*>calloc(cap, sizeof(uint64_t))
    return -1 if c.ring == NULL else 0


cdef inline ConnState conn_drop(Conn* c) noexcept nogil:
    """Close a connection (which also leaves the epoll set) and forget its buffered bytes;
    returns the state it was in."""
    cdef ConnState was = c.state
    if c.fd >= 0:
        close(c.fd)
        c.fd = -1
    c.state = CS_DEAD
    c.wbuf.len = c.woff = 0
    c.rbuf.len = 0
    return was


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


cdef inline ssize_t conn_recv(Conn* c, uint8_t* scratch, size_t scratch_len,
                              uint8_t** buf, size_t* blen) noexcept nogil:
    """One recv; ``buf``/``blen`` are then the bytes to parse. -2: rbuf cannot grow."""
    cdef ssize_t r
    if c.rbuf.len == 0 and c.state >= CS_SIO_OPEN:
        # nothing left over: read into the shared scratch and copy only a partial frame
        r = c_recv(c.fd, scratch, scratch_len, 0)
        buf[0] = scratch
        blen[0] = r if r > 0 else 0
        return r
    if buf_reserve(&c.rbuf, READ_CHUNK) < 0:
        return -2
    r = c_recv(c.fd, c.rbuf.data + c.rbuf.len, c.rbuf.cap - c.rbuf.len, 0)
    if r > 0:
        c.rbuf.len += r
    buf[0] = c.rbuf.data
    blen[0] = c.rbuf.len
    return r


cdef inline int conn_keep(Conn* c, const uint8_t* buf, size_t blen, size_t pos) noexcept nogil:
    """Keep the unparsed tail of what conn_recv read (a partial frame); -1: out of memory."""
    if buf != c.rbuf.data:
        return buf_append(&c.rbuf, buf + pos, blen - pos)
    buf_consume(&c.rbuf, pos)
    return 0


cdef inline long schedule_due(Schedule* s, Conn* conns, int n, int alive,
                              uint64_t now) noexcept nogil:
    """Give every send whose time has come to the next ready connection (round robin),
    listing in ``s.dirty`` the connections that got one. Returns how many were dropped
    because a connection's ring was full, or -1 when out of memory."""
    cdef int idx, rc
    cdef long dropped = 0
    cdef Conn* c
    s.ndirty = 0
    while s.next_ns <= now and alive > 0:
        while True:
            idx = s.rr % n
            s.rr += 1
            if conns[idx].state == CS_READY:
                break
        c = &conns[idx]
        rc = ring_push(c, s.next_ns)
        if rc == -2:
            return -1
        s.next_ns += s.interval_ns
        if rc == -1:
            dropped += 1
            continue
        c.to_send += 1
        if not c.dirty:
            c.dirty = 1
            s.dirty[s.ndirty] = idx
            s.ndirty += 1
    return dropped


cdef inline uint64_t outstanding(const Conn* conns, int n) noexcept nogil:
    """Replies still awaited on the ready connections."""
    cdef uint64_t total = 0
    cdef int i
    for i in range(n):
        if conns[i].state == CS_READY:
            total += conns[i].rcount + conns[i].match_idx
    return total
