# Declarations of the broadcast loop (implemented in _broadcast.pyx).
cimport cython
from libc.stdint cimport int32_t, uint8_t, uint32_t, uint64_t
from libc.stdlib cimport realloc
from libc.string cimport memset

from wsprof._buffer cimport Buffer
from wsprof._conn cimport Bytes, Conn, SendResult
from wsprof._histogram cimport Histogram
from wsprof._posix cimport epoll_event
from wsprof._session cimport Session


cdef enum:
    K_CLOSED_BY_SERVER
    K_RESET
    K_PROTOCOL
    K_MALFORMED
    K_UNKNOWN_ID
    K_UNEXPECTED
    K_UNEXPECTED_EVENT
    K_SEND_BACKLOG
    K_SCHEDULE_BACKLOG
    K_CLOSE_TIMEOUT
    K_COUNT

cdef enum Phase:
    PH_CONNECT
    PH_WARMUP
    PH_MEASURE
    PH_DRAIN
    PH_DONE

cdef enum:
    SCRATCH = 262144
    MAX_PENDING_CONNECTS = 256
    ID_DIGITS = 16
    MAX_NOTES = 64
    FIRST_CAP = 4096
    MAX_IDS = 1 << 28      # more ids would make the bitmaps too large to be a measurement


cdef inline int parse_id(const uint8_t* p, uint64_t* out) noexcept nogil:
    """The 16 lowercase hex digits at ``p``; -1 when they are not."""
    cdef uint64_t v = 0
    cdef int k
    cdef uint8_t ch
    for k in range(ID_DIGITS):
        ch = p[k]
        if 48 <= ch <= 57:
            v = (v << 4) | (ch - 48)
        elif 97 <= ch <= 102:
            v = (v << 4) | (ch - 87)
        else:
            return -1
    out[0] = v
    return 0


cdef inline int grow_ids(uint64_t cap, uint64_t** sent_ns, uint32_t** remaining,
                         int32_t** sender_of, uint8_t** bits, int n) noexcept nogil:
    """Double the per-id tables (``cap`` ids now) and every recipient's bitmap, whose new
    half is zeroed; -1 when out of memory (the old tables stay valid)."""
    cdef uint64_t grown = cap * 2
    cdef void* p
    cdef int i
    p = realloc(sent_ns[0], grown * sizeof(uint64_t))
    if p == NULL:
        return -1
    sent_ns[0] = <uint64_t*>p
    p = realloc(remaining[0], grown * sizeof(uint32_t))
    if p == NULL:
        return -1
    remaining[0] = <uint32_t*>p
    p = realloc(sender_of[0], grown * sizeof(int32_t))
    if p == NULL:
        return -1
    sender_of[0] = <int32_t*>p
    for i in range(n):
        p = realloc(bits[i], grown // 8)
        if p == NULL:
            return -1
        bits[i] = <uint8_t*>p
        memset(bits[i] + cap // 8, 0, (grown - cap) // 8)
    return 0


@cython.final
cdef class BroadcastRun:
    cdef Conn* conns
    cdef int n
    cdef int nsenders
    cdef int* server_of          # which URL each connection went to
    cdef uint8_t** bits          # per recipient: one bit per broadcast id received
    cdef Session* sessions       # per URL: the Socket.IO text recognised in C
    cdef list setups
    cdef list kept
    cdef bint socketio
    cdef bint open_loop
    cdef uint32_t in_flight
    cdef uint64_t interval_ns
    cdef uint64_t next_due_ns
    cdef uint32_t rr
    cdef int epfd
    cdef int timerfd
    cdef Phase phase
    cdef int next_connect, pending, ready, alive, closing
    # the message, unmasked, with id 0 at id_off; sent frames are built in wout
    cdef Bytes tmpl
    cdef size_t id_off
    cdef Bytes prefix            # Socket.IO: what a broadcast event starts with
    cdef uint8_t* msg
    cdef Buffer wout
    cdef uint8_t mask_key[4]
    cdef uint8_t scratch[SCRATCH]
    # per broadcast id
    cdef uint64_t cap
    cdef uint64_t next_id
    cdef uint64_t* sent_ns
    cdef uint32_t* remaining
    cdef int32_t* sender_of
    cdef uint64_t first_id, last_id, window_left
    cdef uint64_t deliveries, duplicates
    cdef Histogram hist
    cdef Histogram cross
    cdef int* dirty
    cdef int ndirty
    cdef uint64_t counts[K_COUNT]
    cdef uint64_t t_start, t_end, cpu_start, cpu_end, next_signal_check_ns
    cdef uint32_t notes
    cdef dict seen
    cdef dict first_error
    cdef object fatal
    cdef object on_window

    cdef Bytes hold(self, bytes data)
    cdef int lose(self, int idx, int kind, str why) except -1
    cdef void drop(self, int idx) noexcept
    cdef int note(self, int kind, str what) except -1
    cdef int sent(self, int idx, SendResult result) except -1
    cdef int write(self, int idx, const uint8_t* data, size_t n) except -1
    cdef int grow(self) except -1
    cdef int stage(self, int s, uint64_t stamp) except -1
    cdef int flush_dirty(self) except -1
    cdef int delivered(self, int idx, uint64_t bid, uint64_t now) except -1
    cdef int setup_message(self, int idx, int op, const uint8_t* data, size_t n) except -1
    cdef int on_readable(self, int idx) except -1
    cdef int on_writable(self, int idx) except -1
    cdef int dispatch(self, epoll_event* ev) except -1
    cdef int on_timer(self) except -1
    cdef int wait_once(self, epoll_event* events, int timeout_ms) except -1
    cdef int connect_all(self, double timeout, epoll_event* events) except -1
    cdef int start_window(self) except -1
    cdef int end_window(self) except -1
    cdef int close_all(self, double timeout, epoll_event* events) except -1
    cdef int on_message(self, int idx, int op, uint8_t* data, size_t n,
                        uint64_t now) except -1
