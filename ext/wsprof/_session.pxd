# The Socket.IO session text the load loop recognises in C, as views of the bytes that
# wsprof.protocol.socketio.session_bytes builds (used by _loadclient.pyx).
from libc.stdint cimport uint8_t
from libc.string cimport memcmp

from wsprof._conn cimport Bytes


cdef enum:
    MAX_PREFIXES = 4

cdef enum SioKind:
    SIO_PING             # an Engine.IO ping: answer with the pong
    SIO_ENDED            # the server ended the session
    SIO_EVENT            # an event that is not the expected echo
    SIO_UNKNOWN

cdef struct Session:
    Bytes ping
    Bytes pong           # masked frame
    int nended
    Bytes ended[MAX_PREFIXES]
    Bytes event
    Bytes binary_event


cdef inline bint starts_with(const uint8_t* data, size_t n, Bytes prefix) noexcept nogil:
    return n >= prefix.len and memcmp(data, prefix.data, prefix.len) == 0


cdef inline SioKind sio_kind(const Session* s, const uint8_t* data, size_t n,
                             int* attachments) noexcept nogil:
    """Classify a text message that is not the expected echo; a binary event also sets
    ``attachments`` to how many binary messages follow it."""
    cdef size_t i
    cdef int k, count = 0
    if n == s.ping.len and memcmp(data, s.ping.data, n) == 0:
        return SIO_PING
    for k in range(s.nended):
        if starts_with(data, n, s.ended[k]):
            return SIO_ENDED
    if starts_with(data, n, s.binary_event):
        i = s.binary_event.len
        while i < n and 48 <= data[i] <= 57:   # ASCII digits: the attachment count
            count = count * 10 + (data[i] - 48)
            i += 1
        attachments[0] = count
        return SIO_EVENT
    if starts_with(data, n, s.event):
        return SIO_EVENT
    return SIO_UNKNOWN
