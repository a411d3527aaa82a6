"""Summaries of repeated windows: medians and their spread, nothing cleverer."""

from __future__ import annotations

import statistics
from collections.abc import Sequence


def median(values: Sequence[float]) -> float:
    """The median, 0.0 for no values (a variant with no finished window)."""
    return float(statistics.median(values)) if values else 0.0


def mad(values: Sequence[float]) -> float:
    """Median absolute deviation: a spread that one noisy window cannot blow up."""
    if len(values) < 2:
        return 0.0
    m = statistics.median(values)
    return float(statistics.median(abs(v - m) for v in values))


def summary(values: Sequence[float]) -> dict[str, float | int | list[float]]:
    """Median, MAD, count and the values themselves, as results report them."""
    return {"median": median(values), "mad": mad(values), "n": len(values), "values": list(values)}
