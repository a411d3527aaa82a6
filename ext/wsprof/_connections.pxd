# Declarations of the idle and connect workloads' epoll loop (implemented in _connections.pyx).
cimport cython
from libc.stdint cimport uint8_t, uint64_t

from wsprof._conn cimport Bytes, Conn
from wsprof._histogram cimport Histogram
from wsprof._posix cimport epoll_event
from wsprof._setup cimport Setup


cdef enum:
    # Error kinds, counted in C; named by ERROR_KINDS in the same order.
    K_CONNECT_FAILED
    K_HANDSHAKE_FAILED
    K_CLOSED_BY_SERVER
    K_RESET
    K_PROTOCOL
    K_TIMEOUT
    K_CLOSE_TIMEOUT
    K_UNEXPECTED
    K_COUNT

cdef enum:
    CONN_SCRATCH = 65536


@cython.final
cdef class ConnectionsRun:
    cdef Conn* conns
    cdef uint64_t* started       # when each slot's connect (or close) began
    cdef int* free_slots         # a stack of slots with no socket
    cdef int nfree
    cdef int n
    cdef int epfd
    cdef Setup setup
    cdef Bytes goodbye           # (Socket.IO disconnect +) WebSocket Close, masked
    cdef bytes goodbye_owner
    cdef uint8_t mask_key[4]
    cdef uint8_t scratch[CONN_SCRATCH]
    cdef bint socketio
    cdef bint measuring
    cdef bint connect_mode
    cdef Histogram hist
    cdef uint64_t step_timeout_ns
    cdef uint64_t t_last         # when the last epoll_wait returned
    cdef uint64_t t_prev         # when the one before it returned
    cdef uint64_t next_check_ns
    cdef readonly int pending    # connections in set-up
    cdef readonly int ready      # connections open (idle) / connects completed (connect)
    cdef readonly int closing
    cdef readonly int failed
    cdef uint64_t measured
    cdef uint64_t heartbeats
    cdef uint64_t late
    cdef uint64_t dropped_in_window
    cdef uint64_t counts[K_COUNT]
    cdef dict first_error

    cdef int start_connect(self) except -1
    cdef int fail(self, int idx, int kind, str why) except -1
    cdef void release(self, int idx, bint reset) noexcept
    cdef int write(self, int idx, const uint8_t* data, size_t n) except -1
    cdef int on_writable(self, int idx) except -1
    cdef int on_readable(self, int idx) except -1
    cdef int on_message(self, int idx, int op, uint8_t* data, size_t n,
                        uint64_t now) except -1
    cdef int now_open(self, int idx, uint64_t now) except -1
    cdef int start_close(self, int idx, uint64_t now) except -1
    cdef int check_timeouts(self, uint64_t now) except -1
    cdef int wait_once(self, epoll_event* events, int timeout_ms) except -1
    cdef int close_all(self, double timeout, epoll_event* events) except -1
