"""Pure-Python twin of the C histogram in ext/wsprof/_histogram.pyx.

Same bucket layout (128 linear sub-buckets per power of two, nanosecond values
clamped at 60 s), so histograms from both clients merge and the same tests run
against both.
"""

from __future__ import annotations

from typing import Any

SUB_BITS = 7
NBUCKETS = 3840
HIST_MAX_NS = 60_000_000_000


def bucket_index(value_ns: int) -> int:
    v = min(value_ns, HIST_MAX_NS)
    if v < 256:
        return v
    e = v.bit_length() - 1 - SUB_BITS
    return e * 128 + (v >> e)


def bucket_bounds(idx: int) -> tuple[int, int]:
    """(lower value, width) of bucket ``idx``."""
    if idx < 256:
        return idx, 1
    e = idx // 128 - 1
    return (idx - e * 128) << e, 1 << e


class PyHistogram:
    def __init__(self) -> None:
        self.counts: dict[int, int] = {}
        self.total = 0
        self.min_ns = 2**64 - 1
        self.max_ns = 0

    def record(self, value_ns: int) -> None:
        if value_ns < 0:
            raise ValueError("latency cannot be negative")
        idx = bucket_index(value_ns)
        self.counts[idx] = self.counts.get(idx, 0) + 1
        self.total += 1
        self.max_ns = max(self.max_ns, value_ns)
        self.min_ns = min(self.min_ns, value_ns)

    @staticmethod
    def bucket_index(value_ns: int) -> int:
        return bucket_index(value_ns)

    def percentile_ns(self, q: float) -> float:
        """Value at percentile q (0..100): the midpoint of the bucket holding that rank."""
        if self.total == 0:
            return 0.0
        if q >= 100.0:
            return float(self.max_ns)
        rank = max(1, int(q / 100.0 * self.total))
        seen = 0
        for idx in sorted(self.counts):
            seen += self.counts[idx]
            if seen >= rank:
                lower, width = bucket_bounds(idx)
                if idx < 256:
                    return float(lower)
                return min(lower + width / 2.0, float(self.max_ns))
        return float(self.max_ns)

    def merge(self, other: Any) -> None:
        """Add another histogram (fast or pure-Python, or its dict form)."""
        data = other if isinstance(other, dict) else other.to_dict()
        for idx, n in data["counts"].items():
            self.counts[int(idx)] = self.counts.get(int(idx), 0) + n
        self.total += data["total"]
        if data["total"]:
            self.max_ns = max(self.max_ns, data["max_ns"])
            self.min_ns = min(self.min_ns, data["min_ns"])

    def to_dict(self) -> dict[str, Any]:
        """Sparse, JSON-able form used to merge results across worker processes."""
        return {
            "counts": dict(sorted(self.counts.items())),
            "total": self.total,
            "min_ns": self.min_ns if self.total else 0,
            "max_ns": self.max_ns,
        }


def latency_summary_us(hist: Any) -> dict[str, float]:
    """The percentiles every wsprof result reports, in microseconds."""
    return {
        "p50": hist.percentile_ns(50) / 1000.0,
        "p90": hist.percentile_ns(90) / 1000.0,
        "p99": hist.percentile_ns(99) / 1000.0,
        "p999": hist.percentile_ns(99.9) / 1000.0,
        "max": hist.max_ns / 1000.0,
    }
