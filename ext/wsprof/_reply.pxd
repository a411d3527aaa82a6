# The reply contract as the load loop checks it, in C (used by _loadclient.pyx): an echo
# compared whole, a reply event by its prefix, an ack by an outstanding id. The prefixes
# come from wsprof.protocol.socketio (event_prefix, ack_prefix, event_with_ack_parts).
from libc.stdint cimport uint8_t, uint32_t, uint64_t
from libc.stdlib cimport free, malloc
from libc.string cimport memcmp, memcpy

from wsprof._conn cimport Bytes, Conn
from wsprof._frames cimport MAX_HEADER, OP_TEXT, write_frame


cdef enum ReplyKind:
    R_ECHO               # the expected frames, byte for byte
    R_ANY                # raw: any data message; Socket.IO: the reply event's prefix
    R_ACK                # an ack whose id is outstanding

cdef struct Reply:
    ReplyKind kind
    Bytes prefix         # R_ANY in Socket.IO mode: 42["name"
    Bytes ack_prefix     # 43
    Bytes ack_head       # R_ACK: a message is ack_head + id digits + ack_tail
    Bytes ack_tail
    uint8_t* text        # one message's text
    uint8_t* frames      # up to `copies` masked frames
    const uint8_t* mask  # the run's masking key
    Bytes other_event    # prefix of the first unexpected event, counted in C
    uint64_t other_event_n


cdef inline int reply_alloc(Reply* r, uint32_t copies, const uint8_t* mask) noexcept nogil:
    """The ack buffers (R_ACK only); -1 when out of memory."""
    cdef size_t size = r.ack_head.len + 20 + r.ack_tail.len
    r.mask = mask
    if r.kind != R_ACK:
        return 0
    r.text = <uint8_t*>malloc(size)
    r.frames = <uint8_t*>malloc(copies * (MAX_HEADER + size))
    if r.text == NULL or r.frames == NULL:
        return -1
    memcpy(r.text, r.ack_head.data, r.ack_head.len)
    return 0


cdef inline void reply_free(Reply* r) noexcept nogil:
    free(r.text)
    free(r.frames)
    r.text = r.frames = NULL


cdef inline bint event_match(const uint8_t* data, size_t n, Bytes prefix) noexcept nogil:
    """``data`` is an event named by ``prefix`` (42["name"), followed by , or ]."""
    return (n > prefix.len and memcmp(data, prefix.data, prefix.len) == 0
            and (data[prefix.len] == 44 or data[prefix.len] == 93))


cdef inline size_t put_digits(uint8_t* out, uint64_t v) noexcept nogil:
    """Write ``v`` in ASCII decimal; its length."""
    cdef uint8_t tmp[20]
    cdef size_t k = 0, i
    while True:
        tmp[k] = 48 + v % 10
        k += 1
        v //= 10
        if v == 0:
            break
    for i in range(k):
        out[i] = tmp[k - 1 - i]
    return k


cdef inline bint ack_id_ok(const Reply* r, const Conn* c, const uint8_t* data,
                           size_t n) noexcept nogil:
    """An ack (43<id>[...) whose id is one of the connection's outstanding ids (they are
    consecutive: the newest ``rcount`` below ``ack_next``)."""
    cdef size_t i = r.ack_prefix.len
    cdef uint64_t ack_id = 0
    if i >= n or not 48 <= data[i] <= 57:
        return False
    while i < n and 48 <= data[i] <= 57:
        ack_id = ack_id * 10 + (data[i] - 48)
        i += 1
    return i < n and data[i] == 91 and c.ack_next - c.rcount <= ack_id < c.ack_next


cdef inline size_t acked_frames(Reply* r, Conn* c, uint32_t k) noexcept nogil:
    """Write ``k`` masked messages with consecutive ack ids into ``r.frames``; their length."""
    cdef size_t pos = 0, tlen
    cdef uint32_t _j
    for _j in range(k):
        tlen = r.ack_head.len
        tlen += put_digits(r.text + tlen, c.ack_next)
        memcpy(r.text + tlen, r.ack_tail.data, r.ack_tail.len)
        tlen += r.ack_tail.len
        pos += write_frame(r.frames + pos, 0x80 | OP_TEXT, r.text, tlen, r.mask)
        c.ack_next += 1
    return pos
