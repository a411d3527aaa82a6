# The socket, epoll and timerfd calls the extensions make, declared once.
from libc.stdint cimport uint32_t, uint64_t
from posix.time cimport timespec

cdef extern from "string.h" nogil:
    void* memmem(const void* haystack, size_t hlen, const void* needle, size_t nlen)

cdef extern from "sys/socket.h" nogil:
    ssize_t c_send "send"(int fd, const void* buf, size_t n, int flags)
    ssize_t c_recv "recv"(int fd, void* buf, size_t n, int flags)
    int getsockopt(int fd, int level, int name, void* val, unsigned int* vlen)
    int setsockopt(int fd, int level, int name, const void* val, unsigned int vlen)
    int accept4(int fd, void* addr, void* alen, int flags)
    enum: MSG_NOSIGNAL, SOL_SOCKET, SO_ERROR, SOCK_NONBLOCK, SOCK_CLOEXEC

cdef extern from "netinet/in.h" nogil:
    enum: IPPROTO_TCP

cdef extern from "netinet/tcp.h" nogil:
    enum: TCP_NODELAY

cdef extern from "sys/epoll.h" nogil:
    ctypedef union epoll_data_t:
        void* ptr
        int fd
        uint32_t u32
        uint64_t u64
    struct epoll_event:
        uint32_t events
        epoll_data_t data
    int epoll_create1(int flags)
    int epoll_ctl(int epfd, int op, int fd, epoll_event* event)
    int epoll_wait(int epfd, epoll_event* events, int maxevents, int timeout)
    enum: EPOLLIN, EPOLLOUT, EPOLLERR, EPOLLHUP, EPOLL_CTL_ADD, EPOLL_CTL_MOD, EPOLL_CTL_DEL
    enum: EPOLL_CLOEXEC

cdef extern from "sys/timerfd.h" nogil:
    struct itimerspec:
        timespec it_interval
        timespec it_value
    int timerfd_create(int clockid, int flags)
    int timerfd_settime(int fd, int flags, const itimerspec* new, itimerspec* old)
    enum: TFD_NONBLOCK, TFD_CLOEXEC, TFD_TIMER_ABSTIME

cdef enum:
    # Events per epoll_wait, and the longest wait between two checks for signals (Ctrl-C).
    MAX_EVENTS = 1024
    SIGNAL_CHECK_MS = 100


cdef inline int timer_at(int fd, uint64_t at_ns) noexcept nogil:
    """Arm the timerfd ``fd`` for the absolute CLOCK_MONOTONIC time ``at_ns``."""
    cdef itimerspec spec
    spec.it_interval.tv_sec = 0
    spec.it_interval.tv_nsec = 0
    spec.it_value.tv_sec = at_ns // 1000000000ULL
    spec.it_value.tv_nsec = at_ns % 1000000000ULL
    return timerfd_settime(fd, TFD_TIMER_ABSTIME, &spec, NULL)
