# The one growable byte buffer behind every buffer in ext/ (the only realloc there).
from libc.stdint cimport uint8_t
from libc.stdlib cimport free, realloc
from libc.string cimport memcpy, memmove


cdef struct Buffer:
    uint8_t* data
    size_t len
    size_t cap


cdef inline int buf_reserve(Buffer* b, size_t extra) noexcept nogil:
    """Make room for ``extra`` bytes after ``len`` (twice what is needed); -1: out of memory."""
    cdef size_t need = b.len + extra
    cdef uint8_t* grown
    if need <= b.cap:
        return 0
    grown = <uint8_t*>realloc(b.data, need * 2 + 64)
    if grown == NULL:
        return -1
    b.data = grown
    b.cap = need * 2 + 64
    return 0


cdef inline int buf_append(Buffer* b, const uint8_t* src, size_t n) noexcept nogil:
    if buf_reserve(b, n) < 0:
        return -1
    memcpy(b.data + b.len, src, n)
    b.len += n
    return 0


cdef inline void buf_consume(Buffer* b, size_t n) noexcept nogil:
    """Drop the first ``n`` bytes."""
    if n >= b.len:
        b.len = 0
        return
    if n:
        memmove(b.data, b.data + n, b.len - n)
        b.len -= n


cdef inline void buf_free(Buffer* b) noexcept nogil:
    free(b.data)
    b.data = NULL
    b.len = 0
    b.cap = 0
