# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""The kernel floor: CPU cost of one loopback ``send`` plus the ``recv`` that reads it."""
from libc.stdint cimport uint8_t, uint64_t
from libc.stdlib cimport calloc, free

from wsprof._clock cimport now_ns, thread_cpu_ns
from wsprof._frames cimport OP_TEXT, frame_header
from wsprof._posix cimport c_recv, c_send

import socket


cdef int send_recv(int a, int b, const uint8_t* buf, uint8_t* rb, size_t n) noexcept nogil:
    """Send ``n`` bytes on ``a`` and read them back on ``b``."""
    cdef ssize_t r, got = 0
    c_send(a, buf, n, 0)
    while got < <ssize_t>n:
        r = c_recv(b, rb + got, n - got, 0)
        if r <= 0:
            return -1
        got += r
    return 0


def measure_floor(int payload_len=128, int iterations=200000, double max_seconds=2.0) -> dict:
    """CPU cost of one loopback TCP ``send`` of a small frame plus the ``recv`` that reads it.

    "The floor" is what the kernel charges for the two syscalls every unbatched
    message pays on each side of an echo: the sender's ``send`` (which on
    loopback also runs the TCP receive path into the peer's socket) and the
    receiver's ``recv``. It is measured on one thread over a connected pair of
    127.0.0.1 TCP sockets with TCP_NODELAY: send ``payload_len`` bytes plus a
    2-byte frame header, then recv them, repeated; CPU time (thread CPU clock)
    divided by the pairs done. No sleep or wakeup is included, so it is a true
    lower bound: a client that needs one send and one recv per message cannot
    go below it except by putting several messages in one call.
    """
    cdef uint8_t* buf
    cdef uint8_t* rb
    cdef size_t n = payload_len + 2
    cdef int a, b, _i, done = 0
    cdef uint64_t c0, c1, t0, deadline
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    left = socket.create_connection(listener.getsockname())
    right, _ = listener.accept()
    listener.close()
    try:
        for s in (left, right):
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        a = left.fileno()
        b = right.fileno()
        buf = <uint8_t*>calloc(n, 1)
        rb = <uint8_t*>calloc(n, 1)
        if buf == NULL or rb == NULL:
            free(buf)
            free(rb)
            raise MemoryError()
        frame_header(buf, 0x80 | OP_TEXT, payload_len, NULL)
        try:
            with nogil:
                for _i in range(2000):
                    send_recv(a, b, buf, rb, n)
                t0 = now_ns()
                deadline = t0 + <uint64_t>(max_seconds * 1e9)
                c0 = thread_cpu_ns()
                while done < iterations:
                    for _i in range(256):
                        send_recv(a, b, buf, rb, n)
                    done += 256
                    if now_ns() >= deadline:
                        break
                c1 = thread_cpu_ns()
                t0 = now_ns() - t0
        finally:
            free(buf)
            free(rb)
    finally:
        left.close()
        right.close()
    return {
        "us_per_pair": (c1 - c0) / 1000.0 / done,
        "pairs": done,
        "cpu_s": (c1 - c0) / 1e9,
        "wall_s": t0 / 1e9,
        "payload_bytes": payload_len,
    }
