# cython: language_level=3
"""C-level latency histogram (see _histogram.pxd for the bucket layout).

Recording from Python through hdrh costs ~0.9 us per value, too slow to call per
message; the fast client calls ``record_ns`` from C. The pure-Python twin is
``wsprof.client.histogram.PyHistogram``; both share one test class.
"""
from libc.stdint cimport uint64_t
from libc.string cimport memset

from wsprof._clock cimport now_ns

HIST_MAX_NS = 60_000_000_000
NBUCKETS = HIST_NBUCKETS


def monotonic_ns() -> int:
    """The clock the fast client stamps messages with (CLOCK_MONOTONIC)."""
    return now_ns()


cdef uint64_t bucket_lower(int idx):
    cdef int e
    if idx < 256:
        return idx
    e = idx // 128 - 1
    return (<uint64_t>(idx - e * 128)) << e


cdef uint64_t bucket_width(int idx):
    if idx < 256:
        return 1
    return (<uint64_t>1) << (idx // 128 - 1)


cdef class Histogram:
    def __cinit__(self):
        memset(self.counts, 0, sizeof(self.counts))
        self.total = 0
        self.min_ns = 0xFFFFFFFFFFFFFFFFULL
        self.max_ns = 0

    def record(self, value_ns: int) -> None:
        if value_ns < 0:
            raise ValueError("latency cannot be negative")
        self.record_ns(<uint64_t>value_ns)

    @staticmethod
    def bucket_index(value_ns: int) -> int:
        cdef Histogram h = Histogram()
        h.record_ns(<uint64_t>value_ns)
        for i in range(HIST_NBUCKETS):
            if h.counts[i]:
                return i
        return -1

    def percentile_ns(self, double q) -> float:
        """Value at percentile q (0..100): the midpoint of the bucket holding that rank."""
        cdef uint64_t rank, seen = 0
        cdef int i
        if self.total == 0:
            return 0.0
        if q >= 100.0:
            return float(self.max_ns)
        rank = <uint64_t>(q / 100.0 * self.total)
        if rank < 1:
            rank = 1
        for i in range(HIST_NBUCKETS):
            seen += self.counts[i]
            if seen >= rank:
                if i < 256:
                    return float(i)
                return min(bucket_lower(i) + bucket_width(i) / 2.0, float(self.max_ns))
        return float(self.max_ns)

    def merge(self, other) -> None:
        """Add another histogram (fast or pure-Python, or its dict form)."""
        data = other if isinstance(other, dict) else other.to_dict()
        for idx, n in data["counts"].items():
            self.counts[int(idx)] += n
        self.total += data["total"]
        if data["total"]:
            self.max_ns = max(self.max_ns, data["max_ns"])
            self.min_ns = min(self.min_ns, data["min_ns"])

    def to_dict(self) -> dict:
        """Sparse, JSON-able form used to merge results across worker processes."""
        return {
            "counts": {i: self.counts[i] for i in range(HIST_NBUCKETS) if self.counts[i]},
            "total": self.total,
            "min_ns": self.min_ns if self.total else 0,
            "max_ns": self.max_ns,
        }
