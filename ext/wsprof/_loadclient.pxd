# Declarations of the load loop (implemented in _loadclient.pyx).
cimport cython
from libc.stdint cimport uint8_t, uint32_t, uint64_t

from wsprof._conn cimport Bytes, Conn, Schedule, SendResult
from wsprof._histogram cimport Histogram
from wsprof._posix cimport epoll_event
from wsprof._reply cimport Reply
from wsprof._session cimport Session
from wsprof._setup cimport Setup


cdef enum Phase:
    PH_CONNECT
    PH_WARMUP
    PH_MEASURE
    PH_DONE

cdef enum:
    # Error kinds, counted in C; named by ERROR_KINDS in the same order.
    K_CLOSED_BY_SERVER
    K_RESET
    K_PROTOCOL
    K_MISMATCH
    K_UNEXPECTED
    K_SEND_BACKLOG
    K_BACKLOG_FULL
    K_CLOSE_TIMEOUT
    K_UNEXPECTED_EVENT
    K_UNEXPECTED_ACK
    K_COUNT

cdef enum:
    SCRATCH = 262144
    MAX_PENDING_CONNECTS = 256


@cython.final
cdef class LoadRun:
    cdef Conn* conns
    cdef int n
    cdef int epfd
    cdef int timerfd
    cdef bint socketio
    cdef bint msgpack
    cdef Phase phase
    cdef bint open_loop
    cdef uint32_t in_flight
    cdef int next_connect
    cdef int pending
    cdef int ready
    cdef int alive
    cdef int closing
    cdef uint8_t scratch[SCRATCH]
    # one message unit (1 or 2 masked frames) repeated `copies` times
    cdef Bytes unit
    cdef size_t unit_len
    cdef uint32_t copies
    # what the echo must be: up to 2 (opcode, bytes) frames
    cdef int nexp
    cdef int exp_op[2]
    cdef Bytes exp[2]
    cdef Session sio             # Socket.IO text recognised per message
    cdef Reply reply             # the reply contract (wsprof._reply)
    cdef str other_key
    cdef uint32_t notes          # unexpected things described in Python (bounded)
    cdef dict seen
    cdef Bytes goodbye           # (Socket.IO disconnect +) WebSocket Close, masked
    cdef uint8_t mask_key[4]
    cdef Histogram hist
    cdef uint64_t measured
    cdef uint64_t max_messages
    cdef Schedule sched          # open loop only
    cdef uint64_t next_signal_check_ns
    cdef uint64_t t_window_start
    cdef uint64_t t_window_end
    cdef uint64_t cpu_start
    cdef uint64_t cpu_end
    cdef uint64_t counts[K_COUNT]
    cdef uint64_t max_size
    # Python-side setup state
    cdef list kept               # the bytes objects the Bytes views point into
    cdef Setup setup
    cdef dict first_error
    cdef object fatal
    cdef object on_window

    cdef Bytes hold(self, bytes data)
    cdef int lose(self, int idx, int kind, str why) except -1
    cdef int sent(self, int idx, SendResult result) except -1
    cdef void drop(self, int idx) noexcept
    cdef int write(self, int idx, const uint8_t* data, size_t n) except -1
    cdef int on_writable(self, int idx) except -1
    cdef int send_messages(self, int idx, uint32_t count, uint64_t stamp) except -1
    cdef int complete(self, int idx, uint64_t now, bint ok) except -1
    cdef int mark_window(self, str mark) except -1
    cdef void end_window(self, uint64_t now) noexcept
    cdef int on_message(self, int idx, int op, uint8_t* data, size_t n, uint64_t now) except -1
    cdef int socketio_other(self, int idx, int op, uint8_t* data, size_t n,
                            uint64_t now) except -1
    cdef int unexpected_event(self, const uint8_t* data, size_t n) except -1
    cdef int pong(self, int idx, const uint8_t* data, size_t n) except -1
    cdef int setup_message(self, int idx, int op, const uint8_t* data, size_t n) except -1
    cdef int now_ready(self, int idx) except -1
    cdef int on_readable(self, int idx) except -1
    cdef int connect_all(self, double timeout, epoll_event* events) except -1
    cdef int dispatch(self, epoll_event* ev) except -1
    cdef int on_timer(self) except -1
    cdef int wait_once(self, epoll_event* events, int timeout_ms) except -1
    cdef int close_all(self, double timeout, epoll_event* events) except -1
