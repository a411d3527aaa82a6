# Log-linear histogram of nanosecond values, shared by the fast-path client.
# 128 linear sub-buckets per power of two: a bucket's midpoint is within 0.4%
# of any value in it. Values above 60 s are clamped (the exact maximum is kept).
from libc.stdint cimport uint64_t

cdef extern from *:
    int __builtin_clzll(unsigned long long) nogil

cdef enum:
    HIST_SUB_BITS = 7
    HIST_NBUCKETS = 3840

cdef uint64_t HIST_MAX_NS


cdef class Histogram:
    cdef uint64_t counts[HIST_NBUCKETS]
    cdef public uint64_t total
    cdef public uint64_t min_ns
    cdef public uint64_t max_ns

    cdef inline void record_ns(self, uint64_t value) noexcept nogil:
        cdef uint64_t v = value if value < 60000000000ULL else 60000000000ULL
        cdef int e
        cdef int idx
        if v < 256:
            idx = <int>v
        else:
            e = (63 - __builtin_clzll(v)) - HIST_SUB_BITS
            idx = e * 128 + <int>(v >> e)
        self.counts[idx] += 1
        self.total += 1
        if value > self.max_ns:
            self.max_ns = value
        if value < self.min_ns:
            self.min_ns = value
